//! Physical memory: the direct map, the kernel's own page tables, and the
//! [`PhysMem`] the kernel logic reaches RAM through.
//!
//! Layout of the kernel half, shared by every address space:
//!
//! * `PHYS_OFFSET + p` maps physical address `p` for all RAM below 4 GiB
//!   (2 MiB pages, no-execute), and the local/IO APIC window uncached.
//! * `KERNEL_OFFSET + p` maps the kernel image with per-section rights;
//!   the kernel stack's bottom page stays unmapped as a guard.

use core::ops::Range;

use kernel::bootinfo::{BootInfo, Module, PhysRead, RegionKind};
use kernel::kernel::{Frames, Kernel};
use kernel::paging::{self, HUGE_PAGE_SIZE, TableFrames, flags};
use kernel::phys::{Frame, PAGE_SIZE, PhysMem};
use x86_64::PhysAddr;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;

use crate::cpu::Features;
use crate::stacks;

/// Where the direct map of physical memory starts.
pub const PHYS_OFFSET: u64 = 0xffff_8000_0000_0000;
/// Where the kernel image is linked (physical address + this).
pub const KERNEL_OFFSET: u64 = 0xffff_ffff_8000_0000;
/// What the boot page tables map at `PHYS_OFFSET`.
const BOOT_WINDOW: u64 = 1 << 30;
/// Physical range of the IO APIC, HPET, VT-d and local APIC registers.
const DEVICE_WINDOW: Range<u64> = 0xfec0_0000..0xff00_0000;

unsafe extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
    static __boot_start: u8;
}

fn symbol(address: *const u8) -> u64 {
    address as u64
}

/// Physical range of the loaded kernel image (boot section included).
fn kernel_image() -> Range<u64> {
    let start = symbol(&raw const __boot_start);
    let end = symbol(&raw const __data_end) - KERNEL_OFFSET;
    start..end
}

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

/// Physical memory as the kernel logic reaches it: RAM through the direct
/// map, and nothing else.
pub struct Physical {
    /// RAM below this physical address is direct-mapped.
    limit: u64,
    /// Frames the logic must never be handed (kernel image, boot image).
    forbidden: [Range<u64>; 2],
}

impl Physical {
    /// Before `init`: nothing is mapped yet.
    pub const fn new() -> Self {
        Self { limit: 0, forbidden: [0..0, 0..0] }
    }

    fn pointer(&self, frame: Frame) -> *mut [u8; PAGE_SIZE] {
        if !self.manages(frame) {
            panic!("kernel logic asked for frame {:#x}, which is not RAM it manages", frame.address());
        }
        (PHYS_OFFSET + frame.address()) as *mut [u8; PAGE_SIZE]
    }
}

impl PhysMem for Physical {
    fn manages(&self, frame: Frame) -> bool {
        let address = frame.address();
        let managed = address.checked_add(PAGE_SIZE as u64).is_some_and(|end| end <= self.limit);
        managed && !self.forbidden.iter().any(|range| range.contains(&address))
    }

    fn page(&self, frame: Frame) -> &[u8; PAGE_SIZE] {
        // SAFETY: `pointer` checked the frame is direct-mapped RAM outside
        // the kernel and boot images; the only way to reach it is through
        // this `Physical`, and the borrow of `self` keeps it exclusive of
        // `page_mut`.
        unsafe { &*self.pointer(frame) }
    }

    fn page_mut(&mut self, frame: Frame) -> &mut [u8; PAGE_SIZE] {
        // SAFETY: as in `page`, and `&mut self` makes this the only
        // reference into physical memory alive.
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
pub struct FirmwareMemory {
    limit: u64,
}

impl acpi_tables::TableMemory for FirmwareMemory {
    fn read(&self, physical: u64, buffer: &mut [u8]) -> bool {
        let Some(end) = physical.checked_add(buffer.len() as u64) else { return false };
        if end > self.limit {
            return false;
        }
        // SAFETY: `[physical, end)` lies inside the direct map (checked
        // against its end); the bytes are copied out, no reference into
        // firmware memory is kept, and nothing writes that memory.
        unsafe {
            core::ptr::copy_nonoverlapping((PHYS_OFFSET + physical) as *const u8, buffer.as_mut_ptr(), buffer.len());
        }
        true
    }
}

/// The firmware memory reachable through the direct map.
pub fn firmware() -> FirmwareMemory {
    FirmwareMemory { limit: DIRECT_END.load(core::sync::atomic::Ordering::Relaxed) }
}

static DIRECT_END: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Page-table frames for the kernel half, taken from the free frames.
struct KernelTables<'a>(&'a mut Frames);

impl TableFrames for KernelTables<'_> {
    fn alloc_table(&mut self) -> Option<Frame> {
        self.0.alloc()
    }

    fn free_table(&mut self, frame: Frame) {
        let _ = self.0.free(frame);
    }
}

/// Fills the frame allocator from the memory map and replaces the boot page
/// tables with the kernel's own.
pub fn init(kernel: &mut Kernel, memory: &mut Physical, info: &BootInfo, module: Module, features: Features) {
    let image = kernel_image();
    let module_range = module.start..module.start + module.size;
    let frames = kernel.frames();
    let mut limit = 0;
    for region in info.regions.iter().filter(|region| region.kind == RegionKind::Ram) {
        let end = region.start.saturating_add(region.size);
        frames.add_free(region.start, end);
        limit = limit.max(end.min(Frames::limit()));
    }
    frames.reserve(0, 1 << 20);
    frames.reserve(image.start, image.end);
    frames.reserve(module_range.start, module_range.end);
    // QEMU's PVH loader ends the boot image a fixed 160 KiB below the top of
    // low RAM, but SeaBIOS reserves a top zone that grows with its drivers
    // (two NVMe controllers take it past 160 KiB), so the image's tail can
    // lie in memory the map calls reserved. It is RAM the firmware is done
    // with, and the image must be readable: the direct map covers it (its
    // frames stay reserved above, never handed out).
    if module_range.start < limit {
        limit = limit.max(module_range.end);
    }
    if module_range.end > limit {
        panic!("boot image at {:#x}..{:#x} lies outside RAM", module_range.start, module_range.end);
    }

    // While the boot tables are live only the first GiB is reachable.
    memory.limit = limit.min(BOOT_WINDOW);
    memory.forbidden = [image.clone(), module_range];
    let root = frames.alloc().unwrap_or_else(|| panic!("no memory for the kernel page table"));
    memory.page_mut(root).fill(0);
    let no_execute = if features.no_execute { flags::NO_EXECUTE } else { 0 };
    let global = if features.global_pages { flags::GLOBAL } else { 0 };
    let mut tables = KernelTables(frames);

    let data = flags::PRESENT | flags::WRITABLE | global | no_execute;
    let direct_end = limit.next_multiple_of(HUGE_PAGE_SIZE);
    DIRECT_END.store(direct_end, core::sync::atomic::Ordering::Relaxed);
    let uncached = flags::WRITE_THROUGH | flags::NO_CACHE;
    let huge_pages = (0..direct_end)
        .step_by(HUGE_PAGE_SIZE as usize)
        .map(|physical| (physical, data))
        .chain(DEVICE_WINDOW.step_by(HUGE_PAGE_SIZE as usize).map(|physical| (physical, data | uncached)));
    for (physical, leaf) in huge_pages {
        paging::map_huge(memory, &mut tables, root, PHYS_OFFSET + physical, physical, leaf)
            .unwrap_or_else(|error| panic!("direct map at {physical:#x}: {error:?}"));
    }

    let sections = [
        (symbol(&raw const __text_start), symbol(&raw const __text_end), flags::PRESENT | global),
        (symbol(&raw const __rodata_start), symbol(&raw const __rodata_end), flags::PRESENT | global | no_execute),
        (symbol(&raw const __data_start), symbol(&raw const __data_end), data),
    ];
    let guard = stacks::kernel_stack_guard();
    for (start, end, leaf) in sections {
        for virt in (start..end).step_by(PAGE_SIZE) {
            if guard.contains(&virt) {
                continue;
            }
            let frame = Frame::containing(virt - KERNEL_OFFSET);
            paging::map(memory, &mut tables, root, virt, frame, leaf)
                .unwrap_or_else(|error| panic!("kernel image at {virt:#x}: {error:?}"));
        }
    }

    let cr3 = PhysFrame::containing_address(PhysAddr::new(root.address()));
    // SAFETY: the new tables map the kernel image (code, data, this stack)
    // at the addresses it runs at and the direct map; the identity map of
    // low memory, which nothing uses after boot, is dropped.
    unsafe { Cr3::write(cr3, Cr3Flags::empty()) };
    KERNEL_ROOT.store(root.address(), core::sync::atomic::Ordering::Relaxed);
    memory.limit = limit;
    kernel.set_kernel_space(root, features.no_execute);
    let ram: heapless::Vec<(u64, u64), 64> = info
        .regions
        .iter()
        .filter(|region| region.kind == RegionKind::Ram)
        .map(|region| (region.start, region.start.saturating_add(region.size)))
        .collect();
    kernel.set_ram(&ram);
}

static KERNEL_ROOT: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The boot image, through the direct map.
pub fn module_bytes(module: Module) -> &'static [u8] {
    // SAFETY: `init` checked the module lies in direct-mapped RAM and
    // reserved its frames, so nothing writes them; the slice is read-only.
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
    let root = KERNEL_ROOT.load(core::sync::atomic::Ordering::Relaxed);
    switch_to(Frame::containing(root));
}
