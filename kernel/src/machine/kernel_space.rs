//! The kernel half of every address space, built once at boot: the frame
//! allocator filled from the memory map, the direct map of RAM, and the
//! kernel image mapped section by section (see `memory` for the layout).

use core::ops::Range;

use heapless::Vec;
use kernel::bootinfo::{BootInfo, MAX_REGIONS, Module, RegionKind};
use kernel::kernel::{Frames, Kernel};
use kernel::paging::{self, HUGE_PAGE_SIZE, TableFrames, flags};
use kernel::phys::{Frame, PAGE_SIZE, PhysMem};
use x86_64::PhysAddr;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;

use crate::cpu::Features;
use crate::memory::{self, BOOT_WINDOW, KERNEL_OFFSET, MAX_MAPPED, PHYS_OFFSET, Physical};
use crate::stacks;

/// Physical range of the IO APIC, HPET, VT-d and local APIC registers.
const DEVICE_WINDOW: Range<u64> = 0xfec0_0000..0xff00_0000;
/// The first address above 4 GiB.
const FOUR_GIB: u64 = 1 << 32;

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

/// Physical range of the part of the image that never changes once the
/// kernel runs on its own tables: the boot section, code and read-only
/// data (the boot tables' accessed bits are set before then).
pub fn read_only_image() -> Range<u64> {
    symbol(&raw const __boot_start)..symbol(&raw const __rodata_end) - KERNEL_OFFSET
}

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
    let ram = managed_ram(info);
    fill_frames(kernel.frames(), &ram, &image, &module_range);
    let mapped = direct_map_ranges(&ram, &module_range);
    // While the boot tables are live only the first GiB is reachable.
    memory.set_ram(ram.clone(), [image, module_range], BOOT_WINDOW);
    let root = kernel.frames().alloc().unwrap_or_else(|| panic!("no memory for the kernel page table"));
    memory.page_mut(root).fill(0);
    let leaves = Leaves::new(features);
    let mut tables = KernelTables(kernel.frames());
    map_direct(memory, &mut tables, root, &mapped, leaves);
    map_image(memory, &mut tables, root, leaves);

    let cr3 = PhysFrame::containing_address(PhysAddr::new(root.address()));
    // SAFETY: the new tables map the kernel image (code, data, this stack)
    // at the addresses it runs at and the direct map; the identity map of
    // low memory, which nothing uses after boot, is dropped.
    unsafe { Cr3::write(cr3, Cr3Flags::empty()) };
    memory::set_kernel_root(root);
    memory.set_mapped(mapped);
    kernel.set_kernel_space(root, true);
    let all_ram: Vec<(u64, u64), MAX_REGIONS> = info
        .regions
        .iter()
        .filter(|region| region.kind == RegionKind::Ram)
        .map(|region| (region.start, region.start.saturating_add(region.size)))
        .collect();
    // As many as the memory map has entries, which is what the kernel keeps.
    if kernel.set_ram(&all_ram).is_err() {
        panic!("more RAM ranges than the kernel keeps");
    }
    let (below, above) = ram.iter().fold((0, 0), |(below, above), range| {
        let low = range.end.min(FOUR_GIB).saturating_sub(range.start);
        (below + low, above + (range.end - range.start - low))
    });
    defmt::info!("direct map: {=u64} MiB of RAM below 4 GiB, {=u64} MiB above", below >> 20, above >> 20);
}

/// The RAM ranges of the memory map that the frame allocator can manage.
fn managed_ram(info: &BootInfo) -> Vec<Range<u64>, MAX_REGIONS> {
    let mut ram = Vec::new();
    for region in info.regions.iter().filter(|region| region.kind == RegionKind::Ram) {
        let end = region.start.saturating_add(region.size);
        if end > Frames::limit() {
            defmt::warn!(
                "RAM at {=u64:#x}..{=u64:#x} beyond {=u64:#x} is not used",
                region.start,
                end,
                Frames::limit()
            );
        }
        let range = region.start..end.min(Frames::limit());
        // The map has at most MAX_REGIONS entries, so this always fits.
        if !range.is_empty() && ram.push(range).is_err() {
            panic!("more RAM ranges than the memory map holds");
        }
    }
    ram
}

/// Marks the RAM free, less the first MiB, the kernel and the boot image.
fn fill_frames(frames: &mut Frames, ram: &[Range<u64>], image: &Range<u64>, module: &Range<u64>) {
    for range in ram {
        frames.add_free(range.start, range.end);
    }
    frames.reserve(0, 1 << 20);
    frames.reserve(image.start, image.end);
    frames.reserve(module.start, module.end);
}

/// What the direct map covers: each RAM range rounded out to 2 MiB pages,
/// and the boot image, less the device window.
///
/// QEMU's PVH loader ends the boot image a fixed 160 KiB below the top of
/// low RAM, but SeaBIOS reserves a top zone that grows with its drivers
/// (two NVMe controllers take it past 160 KiB), so the image's tail can
/// lie in memory the map calls reserved. It is RAM the firmware is done
/// with, and the image must be readable: the direct map covers it (its
/// frames stay reserved, never handed out).
fn direct_map_ranges(ram: &[Range<u64>], module: &Range<u64>) -> Vec<Range<u64>, MAX_MAPPED> {
    let rounded =
        |range: &Range<u64>| range.start / HUGE_PAGE_SIZE * HUGE_PAGE_SIZE..range.end.next_multiple_of(HUGE_PAGE_SIZE);
    let mut mapped: Vec<Range<u64>, MAX_MAPPED> = Vec::new();
    for range in ram {
        add_range(&mut mapped, rounded(range));
    }
    if !mapped.iter().any(|range| range.contains(&module.start)) {
        panic!("boot image at {:#x}..{:#x} lies outside RAM", module.start, module.end);
    }
    add_range(&mut mapped, rounded(module));
    let mut outside: Vec<Range<u64>, MAX_MAPPED> = Vec::new();
    for range in mapped {
        let pieces = [range.start..range.end.min(DEVICE_WINDOW.start), range.start.max(DEVICE_WINDOW.end)..range.end];
        for piece in pieces.into_iter().filter(|piece| !piece.is_empty()) {
            add_range(&mut outside, piece);
        }
    }
    outside
}

/// Adds `range` to the sorted, disjoint `ranges`, merging what it touches.
fn add_range(ranges: &mut Vec<Range<u64>, MAX_MAPPED>, mut range: Range<u64>) {
    let mut index = 0;
    while index < ranges.len() {
        let other = ranges[index].clone();
        if other.end < range.start {
            index += 1;
        } else if range.end < other.start {
            break;
        } else {
            range = other.start.min(range.start)..other.end.max(range.end);
            ranges.remove(index);
        }
    }
    // At most one range per RAM range, the boot image and one split.
    if ranges.insert(index, range).is_err() {
        panic!("the direct map needs more than {MAX_MAPPED} ranges");
    }
}

/// The leaf flags of the kernel half.
#[derive(Clone, Copy)]
struct Leaves {
    global: u64,
    no_execute: u64,
}

impl Leaves {
    fn new(features: Features) -> Self {
        // `cpu::init` refused to boot without the no-execute bit.
        Self { global: if features.global_pages { flags::GLOBAL } else { 0 }, no_execute: flags::NO_EXECUTE }
    }

    fn data(self) -> u64 {
        flags::PRESENT | flags::WRITABLE | self.global | self.no_execute
    }
}

/// Maps the `mapped` ranges and the device window (uncached) at
/// `PHYS_OFFSET` in 2 MiB pages.
fn map_direct(
    memory: &mut Physical,
    tables: &mut KernelTables<'_>,
    root: Frame,
    mapped: &[Range<u64>],
    leaves: Leaves,
) {
    let uncached = leaves.data() | flags::WRITE_THROUGH | flags::NO_CACHE;
    let ram = mapped.iter().flat_map(|range| range.clone().step_by(HUGE_PAGE_SIZE as usize));
    let huge_pages = ram
        .map(|physical| (physical, leaves.data()))
        .chain(DEVICE_WINDOW.step_by(HUGE_PAGE_SIZE as usize).map(|physical| (physical, uncached)));
    for (physical, leaf) in huge_pages {
        paging::map_huge(memory, tables, root, PHYS_OFFSET + physical, physical, leaf)
            .unwrap_or_else(|error| panic!("direct map at {physical:#x}: {error:?}"));
    }
}

/// Maps the kernel image at `KERNEL_OFFSET`, each section with its rights,
/// leaving the stacks' guard pages out.
fn map_image(memory: &mut Physical, tables: &mut KernelTables<'_>, root: Frame, leaves: Leaves) {
    let sections = [
        (symbol(&raw const __text_start), symbol(&raw const __text_end), flags::PRESENT | leaves.global),
        (
            symbol(&raw const __rodata_start),
            symbol(&raw const __rodata_end),
            flags::PRESENT | leaves.global | leaves.no_execute,
        ),
        (symbol(&raw const __data_start), symbol(&raw const __data_end), leaves.data()),
    ];
    let guards = stacks::guards();
    for (start, end, leaf) in sections {
        for virt in (start..end).step_by(PAGE_SIZE) {
            if guards.iter().any(|guard| guard.contains(&virt)) {
                continue;
            }
            let frame = Frame::containing(virt - KERNEL_OFFSET);
            paging::map(memory, tables, root, virt, frame, leaf)
                .unwrap_or_else(|error| panic!("kernel image at {virt:#x}: {error:?}"));
        }
    }
}
