//! A client of the nvme driver's block protocol, granted only geometry and read.
//!
//! The driver's own cases wrote a pattern to block 77 before it began
//! serving; this task reads it back through the protocol, is refused a
//! write by its badge, and sends requests that break each limit, getting
//! a typed error for each while the driver keeps serving.
#![no_std]
#![no_main]

use block_api::{Geometry, Invalid, PAGE, Reply, Request};
use capabilities::ErrorCode;
use userlib::cap::{Cap, Frame, own};
use userlib::ipc::Buffer;
use userlib::mmio::Mapping;
use userlib::testkit::{self, Outcome};
use userlib::{check, check_eq, check_ok, objects};

userlib::cap_slot!(BLOCK: Endpoint = "block");
userlib::entry!(main);

/// The slots of the task's two frames: one page, and two.
const ONE_PAGE: u32 = 64;
const TWO_PAGES: u32 = 65;
/// Where the one-page frame is mapped to read what the driver put there.
const FRAME_VIRT: u64 = 0x2000_0000;
/// The block the nvme driver's cases wrote their pattern to, and the
/// blocks of one page from it.
const TEST_BLOCK: u64 = 77;
const PAGE_BLOCKS: u32 = 8;
/// Namespace 1 of machine `nvme`: a 16 MiB image in 512-byte blocks,
/// and the two pages the driver moves at most.
const DISK: Geometry = Geometry { blocks: 32768, block_bytes: 512, max_blocks: 16 };

fn main() -> u64 {
    testkit::run(userlib::cases![
        the_geometry_is_namespace_1s,
        a_write_without_the_right_is_refused_by_the_badge,
        a_read_returns_the_pattern_the_driver_wrote,
        bad_requests_get_typed_errors_naming_the_limit,
        the_driver_keeps_serving_after_bad_requests
    ])
}

/// The nvme driver's pattern byte at `index` (its `pattern`).
fn pattern(index: u64) -> u8 {
    (index as u8).wrapping_mul(13) ^ (index >> 8) as u8 ^ 0xa5
}

fn ask(buffer: &mut Buffer, request: Request, frame: &[u32]) -> Result<Reply, testkit::Failure> {
    Ok(check_ok!(BLOCK.get().ask(buffer, &request, frame, 0)))
}

fn the_geometry_is_namespace_1s(buffer: &mut Buffer) -> Outcome {
    check_ok!(objects::alloc_frame(ONE_PAGE, 1));
    check_ok!(objects::alloc_frame(TWO_PAGES, 2));
    check_eq!(ask(buffer, Request::Geometry, &[])?, Reply::Geometry(DISK));
    Ok(())
}

fn a_write_without_the_right_is_refused_by_the_badge(buffer: &mut Buffer) -> Outcome {
    let reply = ask(buffer, Request::Write { block: TEST_BLOCK, count: PAGE_BLOCKS }, &[ONE_PAGE])?;
    check_eq!(testkit::refusal(&reply), Some(ErrorCode::PermissionDenied));
    let flush = ask(buffer, Request::Flush, &[])?;
    check_eq!(testkit::refusal(&flush), Some(ErrorCode::PermissionDenied));
    Ok(())
}

/// Reads the test blocks into the one-page frame and checks the pattern.
fn reads_the_pattern(buffer: &mut Buffer) -> Outcome {
    let memory = check_ok!(Mapping::map(own::SPACE, Cap::<Frame>::at(ONE_PAGE), FRAME_VIRT, true));
    let cleared = (0..PAGE).all(|at| memory.write8(at, 0).is_some());
    check!(cleared, "the frame is cleared first");
    check_eq!(ask(buffer, Request::Read { block: TEST_BLOCK, count: PAGE_BLOCKS }, &[ONE_PAGE])?, Reply::Done);
    let same = (0..PAGE).all(|at| memory.read8(at) == Some(pattern(at)));
    check_ok!(memory.unmap());
    check!(same, "the frame holds the pattern the driver wrote");
    Ok(())
}

fn a_read_returns_the_pattern_the_driver_wrote(buffer: &mut Buffer) -> Outcome {
    reads_the_pattern(buffer)
}

fn bad_requests_get_typed_errors_naming_the_limit(buffer: &mut Buffer) -> Outcome {
    let past = ask(buffer, Request::Read { block: DISK.blocks, count: 1 }, &[ONE_PAGE])?;
    check_eq!(past, Reply::Invalid(Invalid::OutOfRange { blocks: DISK.blocks }));
    let straddling = ask(buffer, Request::Read { block: DISK.blocks - 1, count: 2 }, &[ONE_PAGE])?;
    check_eq!(straddling, Reply::Invalid(Invalid::OutOfRange { blocks: DISK.blocks }));
    check_eq!(ask(buffer, Request::Read { block: 0, count: 0 }, &[ONE_PAGE])?, Reply::Invalid(Invalid::ZeroCount));
    let long = ask(buffer, Request::Read { block: 0, count: DISK.max_blocks + 1 }, &[TWO_PAGES])?;
    check_eq!(long, Reply::Invalid(Invalid::TooLong { max_blocks: DISK.max_blocks }));
    let small = ask(buffer, Request::Read { block: 0, count: DISK.max_blocks }, &[ONE_PAGE])?;
    check_eq!(small, Reply::Invalid(Invalid::FrameTooSmall { needed: 2 * PAGE, frame: PAGE }));
    let large = ask(buffer, Request::Read { block: 0, count: 1 }, &[TWO_PAGES])?;
    check_eq!(large, Reply::Invalid(Invalid::FrameTooLarge { pages: 1, frame: 2 }));
    check_eq!(ask(buffer, Request::Read { block: 0, count: 1 }, &[])?, Reply::Invalid(Invalid::NoFrame));
    Ok(())
}

fn the_driver_keeps_serving_after_bad_requests(buffer: &mut Buffer) -> Outcome {
    check_eq!(ask(buffer, Request::Geometry, &[])?, Reply::Geometry(DISK));
    reads_the_pattern(buffer)
}
