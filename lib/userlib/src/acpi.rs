//! One ACPI table read out of the kernel's snapshot, and the granted region it must describe.
//!
//! The IOMMU server checks its remapping-unit capability against DMAR and
//! the PCI server its ECAM capability against MCFG and reads the DSDT's
//! host bridges: each maps the snapshot the kernel made at boot in place
//! (a DSDT may be large), finds one table in it, and compares the region
//! the capability grants with the table's.

use core::fmt::Debug;

use acpi_tables::{RootTable, SNAPSHOT_MAX, SnapshotMemory};

use crate::cap::{Cap, DeviceMemory, Frame, own};
use crate::mmio::Mapping;

/// Where the snapshot is mapped while a [`TableReader`] reads it.
const SNAPSHOT_VIRT: u64 = 0x2000_0000;
/// Bytes kept for the root table (RSDT or XSDT).
const ROOT_MAX: usize = 1024;
/// Bytes kept for the table read.
const TABLE_MAX: usize = 4096;

/// What a table lookup reads: the snapshot, mapped read-only in place (it
/// may hold a large DSDT), and buffers for the root table and the table
/// found, which borrows them.
pub struct TableReader {
    snapshot: Option<Mapping<Frame>>,
    root: [u8; ROOT_MAX],
    table: [u8; TABLE_MAX],
}

impl TableReader {
    /// Nothing mapped yet.
    pub const fn new() -> Self {
        Self { snapshot: None, root: [0; ROOT_MAX], table: [0; TABLE_MAX] }
    }

    /// Table `name` of the snapshot in `acpi`, found and checked by `find`
    /// (such as `Dmar::find`); `None` with the reason logged, and
    /// `consequence` said of it.
    pub fn read<'s, T, E: Debug>(
        &'s mut self,
        acpi: Cap<Frame>,
        name: &'static str,
        consequence: &str,
        find: impl FnOnce(&SnapshotMemory<'s>, &RootTable<'_>, &'s mut [u8]) -> Result<Option<T>, E>,
    ) -> Option<T> {
        if self.snapshot.is_none() {
            match Mapping::map(own::SPACE, acpi, SNAPSHOT_VIRT, false) {
                Ok(mapping) => self.snapshot = Some(mapping),
                Err(code) => {
                    defmt::error!("the ACPI snapshot cannot be mapped: {}", code);
                    return None;
                }
            }
        }
        let Self { snapshot, root, table } = self;
        let length = snapshot.as_ref().map_or(0, Mapping::len).min(SNAPSHOT_MAX as u64) as usize;
        // SAFETY: the frame is mapped read-only at SNAPSHOT_VIRT for at
        // least `length` bytes while `self.snapshot` holds the mapping, and
        // the slice lives for 's, a borrow of `self`, so it ends before the
        // unmap in `drop`. Nothing writes the frame: the kernel filled it
        // before any task ran, and every capability to it carries READ
        // alone (`BootObject::AcpiTables`; copies never gain rights), so no
        // task maps it writable and no device may write it (a DMA pin for
        // device writes needs WRITE).
        let bytes: &'s [u8] = unsafe { core::slice::from_raw_parts(SNAPSHOT_VIRT as *const u8, length) };
        acpi_tables::find_table(bytes, root, name, |tables, root| find(tables, root, table))
            .map_err(|error| defmt::error!("{}: {=str}", defmt::Display2Format(&error), consequence))
            .ok()
    }
}

impl Drop for TableReader {
    fn drop(&mut self) {
        if let Some(mapping) = self.snapshot.take() {
            let _ = mapping.unmap();
        }
    }
}

impl Default for TableReader {
    fn default() -> Self {
        Self::new()
    }
}

/// The base and length in pages of the region `memory` grants; `None`
/// with the reason logged, naming it `what`.
pub fn granted_region(memory: Cap<DeviceMemory>, what: &str) -> Option<(u64, u64)> {
    match memory.info() {
        Ok(info) => Some((info.badge_or_base, info.extent)),
        Err(code) => {
            defmt::error!("no {=str} capability: {}", what, code);
            None
        }
    }
}
