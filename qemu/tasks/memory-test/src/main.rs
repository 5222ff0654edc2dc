//! Test task for machine `high-memory` (6 GiB): the kernel boots on it and uses the RAM above 4 GiB.
//!
//! The kernel hands tasks' frames out from the top of RAM down, so the
//! first frame this task allocates lies above 4 GiB; the control
//! capability's DMA right reveals where (`DmaPin`). The frame must come
//! zeroed (the kernel clears it through its direct map), hold what is
//! written to it, and come back when deleted, again and again.
#![no_std]
#![no_main]

use capabilities::abi::PAGE_SIZE;
use userlib::testkit::prelude::*;

userlib::cap_slot!(CONTROL: Control = "control");
userlib::entry!(main);

/// The first address above 4 GiB.
const FOUR_GIB: u64 = 1 << 32;
/// Slot of the frame, where it is mapped, and its size (2 MiB).
const FRAME: u32 = 64;
const VIRT: u64 = 0x2000_0000;
const PAGES: u64 = 512;

fn main() -> u64 {
    testkit::run(userlib::cases![
        the_kernel_booted_and_hands_out_memory_above_4_gib,
        memory_above_4_gib_holds_what_is_written,
        frames_above_4_gib_come_back_when_deleted
    ])
}

/// Allocates the frame and returns its physical address (pinned and
/// unpinned at once).
fn frame_address() -> Result<u64, ErrorCode> {
    let frame = objects::alloc_frame(FRAME, PAGES)?;
    let pin = CONTROL.get().pin(frame, true)?;
    CONTROL.get().unpin(pin.handle)?;
    Ok(pin.physical)
}

fn the_kernel_booted_and_hands_out_memory_above_4_gib(_: &mut userlib::ipc::Buffer) -> Outcome {
    let physical = check_ok!(frame_address());
    defmt::info!("  a {=u64}-page frame at physical {=u64:#x}", PAGES, physical);
    check!(physical >= FOUR_GIB, "the frame lies above 4 GiB");
    check_ok!(Cap::<Frame>::at(FRAME).delete());
    Ok(())
}

fn memory_above_4_gib_holds_what_is_written(_: &mut userlib::ipc::Buffer) -> Outcome {
    let physical = check_ok!(frame_address());
    check!(physical >= FOUR_GIB);
    let mapping = check_ok!(Mapping::map(own::SPACE, Cap::<Frame>::at(FRAME), VIRT, true));
    let word = |page: u64| physical ^ page.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for page in 0..PAGES {
        let last = page * PAGE_SIZE + PAGE_SIZE - 8;
        check_eq!(mapping.read64(last), Some(0), "the kernel zeroed it through its direct map");
        check!(mapping.write64(page * PAGE_SIZE, word(page)).is_some());
    }
    for page in 0..PAGES {
        check_eq!(mapping.read64(page * PAGE_SIZE), Some(word(page)), "every page keeps its word");
    }
    check_ok!(mapping.unmap());
    check_ok!(Cap::<Frame>::at(FRAME).delete());
    Ok(())
}

fn frames_above_4_gib_come_back_when_deleted(_: &mut userlib::ipc::Buffer) -> Outcome {
    let first = check_ok!(frame_address());
    check_ok!(Cap::<Frame>::at(FRAME).delete());
    for _ in 0..16 {
        check_eq!(frame_address(), Ok(first), "the same frame each time: nothing leaked");
        check_ok!(Cap::<Frame>::at(FRAME).delete());
    }
    Ok(())
}
