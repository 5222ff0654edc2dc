//! Frames, mappings and DMA pins.

use capabilities::ErrorCode;
use capabilities::abi::{Syscall, rights, slots};
use capabilities::manifest::BootObject;

use super::sim::{Sim, cap, task};
use crate::paging::{self, flags};
use crate::task::Death;

const SPACE: u64 = slots::SELF_SPACE as u64;

#[test]
fn frames_map_once_unmap_and_deleting_the_capability_unmaps() {
    let mut sim = Sim::boot(&[task("user", 1, &[])], None, 0, 0);
    let id = sim.expect_running("user");
    sim.sys(Syscall::FrameAlloc, [8, 2, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::Map, [SPACE, 8, 0x2000_0000, u64::from(rights::WRITE), 0, 0]).ok();
    let root = sim.kernel.root(id);
    let page = paging::translate(&sim.m, root, 0x2000_1000).expect("mapped");
    assert_eq!(page.flags & flags::WRITABLE, flags::WRITABLE);
    assert_eq!(sim.sys(Syscall::Map, [SPACE, 8, 0x3000_0000, 0, 0, 0]).error(), ErrorCode::AlreadyMapped);
    sim.sys(Syscall::CapCopy, [8, 9, u64::from(rights::READ), 0, 0, 0]).ok();
    assert_eq!(
        sim.sys(Syscall::Map, [SPACE, 9, 0x3000_0000, u64::from(rights::WRITE), 0, 0]).error(),
        ErrorCode::PermissionDenied
    );
    assert_eq!(sim.sys(Syscall::Map, [SPACE, 9, 0x2000_1000, 0, 0, 0]).error(), ErrorCode::AlreadyMapped);
    assert!(paging::translate(&sim.m, root, 0x2000_1000).is_some(), "a failed map leaves the old one");
    sim.sys(Syscall::Map, [SPACE, 9, 0x3000_0000, 0, 0, 0]).ok();
    sim.sys(Syscall::Unmap, [8, 0, 0, 0, 0, 0]).ok();
    assert!(paging::translate(&sim.m, root, 0x2000_0000).is_none());
    assert_eq!(sim.sys(Syscall::Unmap, [8, 0, 0, 0, 0, 0]).error(), ErrorCode::NotMapped);
    sim.sys(Syscall::CapDelete, [9, 0, 0, 0, 0, 0]).ok();
    assert!(paging::translate(&sim.m, root, 0x3000_0000).is_none(), "deleting the capability unmapped it");
    assert!(sim.m.flushes.contains(&(0x3000_0000, 2)));
}

#[test]
fn bad_addresses_and_sizes_are_refused() {
    let mut sim = Sim::boot(&[task("user", 1, &[])], None, 0, 0);
    sim.schedule();
    for pages in [0, 3, 1024, u64::MAX] {
        assert_eq!(sim.sys(Syscall::FrameAlloc, [8, pages, 0, 0, 0, 0]).error(), ErrorCode::InvalidArgument);
    }
    sim.sys(Syscall::FrameAlloc, [8, 1, 0, 0, 0, 0]).ok();
    for virt in [0, 0x40_0000, 0x2000_0001, 0x0000_7fff_ffff_f000 + 0x1000, u64::MAX - 0xfff] {
        assert_eq!(sim.sys(Syscall::Map, [SPACE, 8, virt, 0, 0, 0]).error(), ErrorCode::BadAddress, "{virt:#x}");
    }
    assert_eq!(sim.sys(Syscall::Map, [SPACE, 8, 0x2000_0000, 1 << 20, 0, 0]).error(), ErrorCode::PermissionDenied);
    assert_eq!(sim.sys(Syscall::Map, [8, 8, 0x2000_0000, 0, 0, 0]).error(), ErrorCode::WrongKind);
}

#[test]
fn memory_and_object_quotas_bound_allocation() {
    let mut sim = Sim::boot(&[task("greedy", 1, &[])], None, 0, 0);
    let id = sim.expect_running("greedy");
    let used = sim.kernel.tasks()[id.index()].memory.used;
    let room = 64 - used;
    assert_eq!(sim.sys(Syscall::FrameAlloc, [8, 64, 0, 0, 0, 0]).error(), ErrorCode::QuotaExceeded);
    sim.sys(Syscall::FrameAlloc, [8, u64::from(room.next_power_of_two() / 2), 0, 0, 0, 0]).ok();
    for slot in 9..16 {
        let _ = sim.sys(Syscall::EndpointCreate, [slot, 0, 0, 0, 0, 0]);
    }
    assert_eq!(sim.sys(Syscall::NotificationCreate, [20, 0, 0, 0, 0, 0]).error(), ErrorCode::QuotaExceeded);
    sim.sys(Syscall::CapDelete, [9, 0, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::NotificationCreate, [20, 0, 0, 0, 0, 0]).ok();
}

#[test]
fn device_memory_maps_uncached_and_never_executable() {
    let regs = cap(8, BootObject::DeviceMemory { base: 0xfed9_0000, pages: 1 }, rights::READ | rights::WRITE, 0);
    let mut sim = Sim::boot(&[task("driver", 1, &[regs])], None, 0, 0);
    let id = sim.expect_running("driver");
    assert_eq!(
        sim.sys(Syscall::Map, [SPACE, 8, 0x2000_0000, u64::from(rights::EXECUTE), 0, 0]).error(),
        ErrorCode::PermissionDenied
    );
    sim.sys(Syscall::Map, [SPACE, 8, 0x2000_0000, u64::from(rights::WRITE), 0, 0]).ok();
    let page = paging::translate(&sim.m, sim.kernel.root(id), 0x2000_0000).expect("mapped");
    assert_eq!(page.physical, 0xfed9_0000);
    assert_eq!(page.flags & (flags::NO_CACHE | flags::WRITE_THROUGH), flags::NO_CACHE | flags::WRITE_THROUGH);
}

#[test]
fn a_pinned_frame_outlives_its_owner_until_unpinned() {
    let tasks = [
        task("iommu", 2, &[cap(8, BootObject::Control, rights::DMA, 0), super::sim::serve(9, 0)]),
        task("user", 1, &[super::sim::client(8, 0, 1)]),
    ];
    let mut sim = Sim::boot(&tasks, None, 1, 0);
    let (user, iommu) = (sim.id("user"), sim.id("iommu"));
    sim.expect_running("iommu");
    sim.window(iommu, 40, 1);
    sim.sys(Syscall::Recv, [9, 0, 0, 0, 0, 0]);
    sim.expect_running("user");
    sim.sys(Syscall::FrameAlloc, [20, 1, 0, 0, 0, 0]).ok();
    let free_with_frame = sim.kernel.frames().free_frames();
    sim.send_caps(user, &[20]);
    sim.sys(Syscall::Call, [8, 0, 0, 0, 0, 0]);
    sim.expect_running("iommu");
    assert_eq!(sim.sys(Syscall::DmaPin, [9, 40, 0, 0, 0, 0]).error(), ErrorCode::WrongKind);
    assert_eq!(sim.sys(Syscall::DmaPin, [8, 40, 1, 0, 0, 0]).error(), ErrorCode::InvalidArgument, "only WRITE");
    sim.sys(Syscall::CapCopy, [40, 41, u64::from(rights::READ | rights::GRANT), 0, 0, 0]).ok();
    let write = u64::from(rights::WRITE);
    assert_eq!(sim.sys(Syscall::DmaPin, [8, 41, write, 0, 0, 0]).error(), ErrorCode::PermissionDenied, "read-only");
    let [read_only, ..] = sim.sys(Syscall::DmaPin, [8, 41, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::DmaUnpin, [8, read_only, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::CapDelete, [41, 0, 0, 0, 0, 0]).ok();
    let [pin, physical, pages] = sim.sys(Syscall::DmaPin, [8, 40, 0, 0, 0, 0]).ok();
    assert_eq!(pages, 1);
    assert_eq!(physical % 4096, 0);
    sim.kernel.end_task(&mut sim.m, user, Death::Exited(0));
    sim.sys(Syscall::CapDelete, [40, 0, 0, 0, 0, 0]).ok();
    assert_eq!(sim.kernel.frames().free_frames(), free_with_frame, "still pinned");
    sim.sys(Syscall::DmaUnpin, [8, pin, 0, 0, 0, 0]).ok();
    assert_eq!(sim.kernel.frames().free_frames(), free_with_frame + 1);
    assert_eq!(sim.sys(Syscall::DmaUnpin, [8, pin, 0, 0, 0, 0]).error(), ErrorCode::InvalidArgument);
}

#[test]
fn the_top_user_page_never_maps_so_a_system_call_returns_to_a_canonical_address() {
    // A `syscall` in the last two bytes of the page below 1 << 47 would
    // leave RCX non-canonical, and `sysretq` faults in ring 0 on that.
    let mut sim = Sim::boot(&[task("edge", 1, &[])], None, 0, 0);
    sim.schedule();
    sim.sys(Syscall::FrameAlloc, [8, 1, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::FrameAlloc, [9, 2, 0, 0, 0, 0]).ok();
    let top_page = capabilities::abi::layout::USER_END - 0x1000;
    assert_eq!(sim.sys(Syscall::Map, [SPACE, 8, top_page, 0, 0, 0]).error(), ErrorCode::BadAddress);
    assert_eq!(sim.sys(Syscall::Map, [SPACE, 9, top_page - 0x1000, 0, 0, 0]).error(), ErrorCode::BadAddress);
    sim.sys(Syscall::Map, [SPACE, 8, top_page - 0x1000, 0, 0, 0]).ok();
}

#[test]
fn a_pin_belongs_to_the_task_that_made_it() {
    let tasks = [
        task("iommu", 2, &[cap(8, BootObject::Control, rights::DMA, 0), super::sim::serve(9, 0)]),
        task("rogue", 3, &[cap(8, BootObject::Control, rights::DMA, 0)]),
        task("user", 1, &[super::sim::client(8, 0, 1)]),
    ];
    let mut sim = Sim::boot(&tasks, None, 1, 0);
    let (user, iommu) = (sim.id("user"), sim.id("iommu"));
    sim.run("iommu");
    sim.window(iommu, 40, 1);
    sim.sys(Syscall::Recv, [9, 0, 0, 0, 0, 0]);
    sim.run("user");
    sim.sys(Syscall::FrameAlloc, [20, 1, 0, 0, 0, 0]).ok();
    sim.send_caps(user, &[20]);
    sim.sys(Syscall::Call, [8, 0, 0, 0, 0, 0]);
    sim.run("iommu");
    let [pin, ..] = sim.sys(Syscall::DmaPin, [8, 40, 0, 0, 0, 0]).ok();
    sim.run("rogue");
    for guess in [pin, pin ^ 1 << 16, pin + 1] {
        assert_eq!(
            sim.sys(Syscall::DmaUnpin, [8, guess, 0, 0, 0, 0]).error(),
            ErrorCode::InvalidArgument,
            "{guess:#x}"
        );
    }
    sim.kernel.end_task(&mut sim.m, user, Death::Exited(0));
    sim.run("iommu");
    sim.sys(Syscall::CapDelete, [40, 0, 0, 0, 0, 0]).ok();
    let free = sim.kernel.frames().free_frames();
    sim.sys(Syscall::DmaUnpin, [8, pin, 0, 0, 0, 0]).ok();
    assert_eq!(sim.kernel.frames().free_frames(), free + 1, "the pin held the frame until its maker let go");
}

#[test]
fn no_mapping_is_ever_writable_and_executable() {
    let mut sim = Sim::boot(&[task("jit", 1, &[])], None, 0, 0);
    sim.schedule();
    sim.sys(Syscall::FrameAlloc, [8, 1, 0, 0, 0, 0]).ok();
    let [kind_rights, ..] = sim.sys(Syscall::CapInfo, [8, 0, 0, 0, 0, 0]).ok();
    assert_eq!((kind_rights >> 8) as u32 & rights::EXECUTE, 0, "a frame a task allocates is not executable");
    let write_execute = u64::from(rights::WRITE | rights::EXECUTE);
    for access in [u64::from(rights::EXECUTE), write_execute] {
        assert_eq!(
            sim.sys(Syscall::Map, [SPACE, 8, 0x2000_0000, access, 0, 0]).error(),
            ErrorCode::PermissionDenied,
            "{access:#x}"
        );
    }
    sim.sys(Syscall::Map, [SPACE, 8, 0x2000_0000, u64::from(rights::WRITE), 0, 0]).ok();
}

/// Mapping walks the page tables once per page with interrupts off, and a
/// mapping's tables stay charged after an `Unmap`, so map-and-unmap could
/// be repeated at no further cost to the task: one call may map at most
/// `MAX_MAP_PAGES` pages (a whole PCI segment's configuration space, the
/// largest mapping the system makes), and a larger range is `TooLarge`
/// before a page is touched (split it first).
#[test]
fn one_map_covers_at_most_max_map_pages() {
    use crate::kernel::memory::MAX_MAP_PAGES;
    let base = 0x1_0000_0000;
    let pages = MAX_MAP_PAGES as u32;
    let mut image = task("mapper", 1, &[cap(8, BootObject::DeviceMemory { base, pages: pages + 1 }, rights::READ, 0)]);
    image.memory_pages = 200;
    let mut sim = Sim::boot(&[image], None, 0, 0);
    let id = sim.expect_running("mapper");
    let used = sim.kernel.tasks()[id.index()].memory.used;
    assert_eq!(sim.sys(Syscall::Map, [SPACE, 8, 0x4000_0000, 0, 0, 0]).error(), ErrorCode::TooLarge);
    assert_eq!(sim.kernel.tasks()[id.index()].memory.used, used, "no table was made");
    assert!(paging::translate(&sim.m, sim.kernel.root(id), 0x4000_0000).is_none());
    sim.sys(Syscall::CapSplit, [8, 9, 0, MAX_MAP_PAGES, 0, 0]).ok();
    sim.sys(Syscall::Map, [SPACE, 9, 0x4000_0000, 0, 0, 0]).ok();
    let last = 0x4000_0000 + (MAX_MAP_PAGES - 1) * 4096;
    assert_eq!(
        paging::translate(&sim.m, sim.kernel.root(id), last).map(|t| t.physical),
        Some(base + (MAX_MAP_PAGES - 1) * 4096)
    );
    sim.sys(Syscall::Unmap, [9, 0, 0, 0, 0, 0]).ok();
}
