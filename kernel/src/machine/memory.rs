//! Physical memory: the [`PhysMem`] the kernel logic reaches RAM through,
//! firmware reads, and address-space switches.
//!
//! Layout of the kernel half, shared by every address space (built by
//! `kernel_space`):
//!
//! * `PHYS_OFFSET + p` maps physical address `p` for the RAM of the memory
//!   map, in 2 MiB pages (no-execute), on both sides of the PCI hole, and
//!   the local/IO APIC window uncached. The rest of the hole is unmapped.
//! * `KERNEL_OFFSET + p` maps the kernel image with per-section rights;
//!   the kernel stack's bottom page stays unmapped as a guard.

use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use heapless::Vec;
use kernel::bootinfo::{MAX_REGIONS, Module, PhysRead};
use kernel::phys::{Frame, PAGE_SIZE, PhysMem};
use x86_64::PhysAddr;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;

/// Where the direct map of physical memory starts.
pub const PHYS_OFFSET: u64 = 0xffff_8000_0000_0000;
/// Where the kernel image is linked (physical address + this).
pub const KERNEL_OFFSET: u64 = 0xffff_ffff_8000_0000;
/// What the boot page tables map at `PHYS_OFFSET`.
pub const BOOT_WINDOW: u64 = 1 << 30;

/// Ranges the direct map covers: each RAM range rounded out to 2 MiB,
/// the boot image, and one more where the device window splits a range.
pub const MAX_MAPPED: usize = MAX_REGIONS + 2;

/// Reads physical memory through the boot page tables' direct map.
pub struct BootWindow;

impl PhysRead for BootWindow {
    fn read(&self, address: u64, buffer: &mut [u8]) -> bool {
        let Some(end) = address.checked_add(buffer.len() as u64) else { return false };
        if end > BOOT_WINDOW {
            return false;
        }
        let source = (PHYS_OFFSET + address) as *const u8;
        // SAFETY: the boot tables map [0, BOOT_WINDOW) at PHYS_OFFSET, and
        // the range was checked to lie inside it; bytes are copied, no
        // reference into the memory outlives this call.
        unsafe { core::ptr::copy_nonoverlapping(source, buffer.as_mut_ptr(), buffer.len()) };
        true
    }
}

/// Physical memory as the kernel logic reaches it: the RAM the frame
/// allocator manages, through the direct map, and nothing else.
pub struct Physical {
    /// RAM ranges of the memory map (below `kernel::kernel::MAX_PHYSICAL`).
    ram: Vec<Range<u64>, MAX_REGIONS>,
    /// Frames at or above this are not mapped yet (the boot tables map
    /// only [`BOOT_WINDOW`]).
    reach: u64,
    /// Frames the logic must never be handed (kernel image, boot image).
    forbidden: [Range<u64>; 2],
    /// Physical ranges the direct map covers (once built).
    mapped: Vec<Range<u64>, MAX_MAPPED>,
}

impl Physical {
    /// Before `kernel_space::init`: nothing is known or mapped yet.
    pub const fn new() -> Self {
        Self { ram: Vec::new(), reach: 0, forbidden: [0..0, 0..0], mapped: Vec::new() }
    }

    /// Records the RAM the logic may be handed, what it may never be
    /// handed, and how far the page tables in use reach.
    pub fn set_ram(&mut self, ram: Vec<Range<u64>, MAX_REGIONS>, forbidden: [Range<u64>; 2], reach: u64) {
        self.ram = ram;
        self.forbidden = forbidden;
        self.reach = reach;
    }

    /// Records what the direct map covers, now that it is the one in use.
    pub fn set_mapped(&mut self, mapped: Vec<Range<u64>, MAX_MAPPED>) {
        self.mapped = mapped;
        self.reach = u64::MAX;
    }

    /// The RAM ranges the logic may be handed frames of.
    pub fn ram(&self) -> &[Range<u64>] {
        &self.ram
    }

    /// Whether `[start, end)` lies in one range of the direct map.
    fn is_mapped(&self, start: u64, end: u64) -> bool {
        self.mapped.iter().any(|range| range.start <= start && end <= range.end)
    }

    fn pointer(&self, frame: Frame) -> *mut [u8; PAGE_SIZE] {
        if !self.manages(frame) {
            panic!("kernel logic asked for frame {:#x}, which is not RAM it manages", frame.address());
        }
        (PHYS_OFFSET + frame.address()) as *mut [u8; PAGE_SIZE]
    }

    /// Firmware memory (ACPI tables), read through the direct map.
    pub fn firmware(&self) -> FirmwareMemory<'_> {
        FirmwareMemory { memory: self }
    }
}

impl PhysMem for Physical {
    fn manages(&self, frame: Frame) -> bool {
        let start = frame.address();
        let Some(end) = start.checked_add(PAGE_SIZE as u64) else { return false };
        let ram = self.ram.iter().any(|range| range.start <= start && end <= range.end);
        ram && end <= self.reach && !self.forbidden.iter().any(|range| range.contains(&start))
    }

    fn page(&self, frame: Frame) -> &[u8; PAGE_SIZE] {
        // SAFETY: `pointer` checked that the frame is RAM the logic
        // manages: RAM of the memory map that the tables in use map at
        // PHYS_OFFSET, outside the kernel and boot images, so no Rust
        // object of the kernel lives there. Within the kernel only this
        // `Physical` reaches such frames, and the borrow of `self` keeps
        // the reference exclusive of `page_mut`'s. Others reach them too:
        // tasks through their mappings, which do not run while the kernel
        // does (one CPU, interrupts off in the kernel), and devices by DMA
        // into frames a task pinned, at any time. The logic takes a
        // task's frames only as the task's input, copying the bytes out
        // (`LogWrite`, a message) and deciding nothing from reading one
        // twice, so a device writing meanwhile tears that input, no
        // kernel state; page tables and the kernel's own frames are never
        // pinned.
        unsafe { &*self.pointer(frame) }
    }

    fn page_mut(&mut self, frame: Frame) -> &mut [u8; PAGE_SIZE] {
        // SAFETY: as in `page`; `&mut self` makes this the only reference
        // the kernel holds into physical memory. A device may still write
        // a pinned frame meanwhile: the logic writes a task's frames only
        // to hand the task data (a message, zeroes for a new frame), which
        // such a write can only spoil for that task.
        unsafe { &mut *self.pointer(frame) }
    }

    fn copy(&mut self, src: Frame, src_offset: usize, dst: Frame, dst_offset: usize, len: usize) {
        let fits = |offset: usize| offset.checked_add(len).is_some_and(|end| end <= PAGE_SIZE);
        if !fits(src_offset) || !fits(dst_offset) {
            panic!("kernel logic copied {len} bytes past a page");
        }
        let (from, to) = (self.pointer(src) as *const u8, self.pointer(dst) as *mut u8);
        // SAFETY: both ranges lie inside direct-mapped frames the logic
        // manages (checked by `pointer` and above); `copy` allows overlap
        // (a task sending to itself), and `&mut self` excludes other
        // references into physical memory.
        unsafe { core::ptr::copy(from.add(src_offset), to.add(dst_offset), len) };
    }
}

/// Reads firmware memory (ACPI tables) through the direct map.
pub struct FirmwareMemory<'a> {
    memory: &'a Physical,
}

impl acpi_tables::TableMemory for FirmwareMemory<'_> {
    fn read(&self, physical: u64, buffer: &mut [u8]) -> bool {
        let Some(end) = physical.checked_add(buffer.len() as u64) else { return false };
        if !self.memory.is_mapped(physical, end) {
            return false;
        }
        // SAFETY: `[physical, end)` lies inside one range of the direct map
        // (checked above); the bytes are copied out, no reference into
        // firmware memory is kept, and nothing writes that memory.
        unsafe {
            core::ptr::copy_nonoverlapping((PHYS_OFFSET + physical) as *const u8, buffer.as_mut_ptr(), buffer.len());
        }
        true
    }
}

/// The kernel's own top-level table, once `kernel_space::init` made it.
static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);

/// Records the kernel's own top-level table (loaded while idle).
pub fn set_kernel_root(root: Frame) {
    KERNEL_ROOT.store(root.address(), Ordering::Relaxed);
}

/// The boot image, through the direct map.
pub fn module_bytes(module: Module) -> &'static [u8] {
    // SAFETY: `kernel_space::init` checked the module lies in the direct
    // map and reserved its frames, so nothing writes them; the slice is
    // read-only.
    unsafe { core::slice::from_raw_parts((PHYS_OFFSET + module.start) as *const u8, module.size as usize) }
}

/// Loads `root` into CR3 unless it is already there.
#[unsafe(link_section = ".text.hot.switch_to")]
pub fn switch_to(root: Frame) {
    let (current, _) = Cr3::read();
    if current.start_address().as_u64() != root.address() {
        let frame = PhysFrame::containing_address(PhysAddr::new(root.address()));
        // SAFETY: every address space shares the kernel half of the kernel
        // root (copied when it was created), so the kernel keeps running.
        unsafe { Cr3::write(frame, Cr3Flags::empty()) };
    }
}

/// Loads the kernel's own page table (used while idle, so that dead
/// tasks' tables can be freed).
pub fn switch_to_kernel() {
    switch_to(Frame::containing(KERNEL_ROOT.load(Ordering::Relaxed)));
}
