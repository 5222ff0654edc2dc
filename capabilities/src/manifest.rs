//! The boot image: a manifest of tasks followed by their loadable segments.
//!
//! The build tool writes the image; QEMU passes it to the kernel as the
//! `-initrd` module. Layout, all offsets from the start of the image:
//!
//! ```text
//! 0      MAGIC (8 bytes)
//! 8      ManifestHeader      postcard
//! ...    TaskImage × task_count, postcard, one after another
//! ...    segment bytes, each segment's file bytes at its `offset`
//! ```
//!
//! Tasks are decoded one at a time so the kernel never holds the whole
//! manifest on its stack. The kernel checks everything it reads: the image
//! comes from the build tool, but a damaged image must fail with a message
//! naming the task and field, not crash the kernel.

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

/// First eight bytes of every boot image.
pub const MAGIC: [u8; 8] = *b"IOMMUK01";

/// Version of the manifest layout this crate reads and writes.
pub const VERSION: u16 = 1;

/// Most tasks one image may hold.
pub const MAX_TASKS: usize = 32;

/// Longest task name, in bytes.
pub const NAME_MAX: usize = 24;

/// Most loadable segments per task image.
pub const MAX_SEGMENTS: usize = 6;

/// Most capabilities the policy gives one task at boot.
pub const MAX_BOOT_CAPS: usize = 24;

/// Largest configuration blob a task receives in its boot-information page.
pub const CONFIG_MAX: usize = 3072;

/// What precedes the task list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestHeader {
    /// Must equal [`VERSION`].
    pub version: u16,
    /// Number of [`TaskImage`] records that follow.
    pub task_count: u16,
    /// Index of the *init* task: when it ends, the system ends with its
    /// exit status. Without one, the system ends when every task has.
    pub init_task: Option<u16>,
    /// Endpoints the kernel creates at boot, named by index in [`BootObject`].
    pub endpoints: u16,
    /// Notifications the kernel creates at boot.
    pub notifications: u16,
}

/// One task: its identity, scheduling, memory and program image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskImage {
    /// Name used in logs and fault reports.
    pub name: String<NAME_MAX>,
    /// Scheduling priority; larger runs first.
    pub priority: u8,
    /// Entry point (user virtual address).
    pub entry: u64,
    /// Stack size in pages.
    pub stack_pages: u16,
    /// Pages of physical memory the task may use in all, page tables,
    /// stack, IPC buffer and image included.
    pub memory_pages: u32,
    /// Kernel objects (endpoints, notifications, frames) it may create.
    pub object_quota: u16,
    /// Loadable segments of the task's ELF image.
    pub segments: Vec<Segment, MAX_SEGMENTS>,
    /// Capabilities installed in its capability space at boot.
    pub caps: Vec<BootCap, MAX_BOOT_CAPS>,
    /// Its part of the policy, postcard-encoded, for the task to read from
    /// its boot-information page (servers: bindings, assignments, quotas).
    pub config: Vec<u8, CONFIG_MAX>,
}

/// One capability the policy installs at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootCap {
    /// Slot in the task's capability space (at least `slots::FIRST_POLICY`).
    pub slot: u16,
    /// The object it names.
    pub object: BootObject,
    /// Its rights (`abi::rights`).
    pub rights: u32,
    /// Its badge (0: unbadged).
    pub badge: u64,
}

/// An object a boot capability names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BootObject {
    /// Boot endpoint number `n` (below `ManifestHeader::endpoints`).
    Endpoint(u16),
    /// Boot notification number `n`.
    Notification(u16),
    /// The task with manifest index `n`.
    Task(u16),
    /// Device registers `[base, base + pages * 4096)`. (Fields rather than
    /// a `range::RegisterRange`: the discriminant then fits the variant's
    /// padding, and the kernel decodes task images on its boot stack.)
    DeviceMemory {
        /// Page-aligned physical address.
        base: u64,
        /// Length in pages.
        pages: u32,
    },
    /// I/O ports `[base, base + count)`.
    IoPorts {
        /// First port.
        base: u16,
        /// Number of ports.
        count: u16,
    },
    /// IO APIC input `gsi`.
    Interrupt {
        /// Global system interrupt number.
        gsi: u8,
        /// Level-triggered, active-low (PCI style) rather than edge, active-high.
        level: bool,
    },
    /// The control object (privileged operations by right).
    Control,
    /// A read-only copy of the firmware's ACPI tables (a frame holding an
    /// `acpi_tables::snapshot`).
    AcpiTables,
    /// The PCI configuration space (ECAM) region `n` of the ACPI MCFG table.
    Ecam(u8),
    /// The register page(s) of remapping unit `n` of the ACPI DMAR table.
    RemappingUnit(u8),
}

impl BootObject {
    /// The kind of the capability the kernel installs for it.
    pub const fn kind(&self) -> crate::abi::ObjectKind {
        use crate::abi::ObjectKind;
        match self {
            BootObject::Endpoint(_) => ObjectKind::Endpoint,
            BootObject::Notification(_) => ObjectKind::Notification,
            BootObject::Task(_) => ObjectKind::Task,
            BootObject::DeviceMemory { .. } | BootObject::Ecam(_) | BootObject::RemappingUnit(_) => {
                ObjectKind::DeviceMemory
            }
            BootObject::IoPorts { .. } => ObjectKind::IoPorts,
            BootObject::Interrupt { .. } => ObjectKind::Interrupt,
            BootObject::Control => ObjectKind::Control,
            BootObject::AcpiTables => ObjectKind::Frame,
        }
    }
}

/// One loadable segment: `file_size` bytes at `offset` in the image, padded
/// with zeros to `mem_size`, mapped at `vaddr` with `flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Page-aligned user virtual address.
    pub vaddr: u64,
    /// Offset of the segment's bytes in the boot image.
    pub offset: u32,
    /// Bytes present in the image.
    pub file_size: u32,
    /// Bytes in memory; at least `file_size`.
    pub mem_size: u32,
    /// Access the mapping allows.
    pub flags: SegmentFlags,
}

/// Access rights of a loaded segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentFlags {
    /// Writable mapping.
    pub write: bool,
    /// Executable mapping.
    pub execute: bool,
}
