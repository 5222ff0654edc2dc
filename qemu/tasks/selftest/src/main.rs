//! Foundation test task: the kernel's checks on system-call arguments, and
//! one case that must fail, which proves the harness reports failures.
#![no_std]
#![no_main]

use capabilities::abi::LOG_FRAME_MAX;
use userlib::testkit::prelude::*;

userlib::entry!(main);

fn main() -> u64 {
    testkit::run(userlib::cases![
        log_rejects_null_and_kernel_pointers,
        log_rejects_oversized_frames,
        unknown_syscall_is_an_error,
        wrong_value_is_caught
    ])
}

fn log_rejects_null_and_kernel_pointers(_: &mut Buffer) -> Outcome {
    check_eq!(syscall::log_write_raw(0, 8), Err(ErrorCode::BadAddress));
    check_eq!(syscall::log_write_raw(0xffff_ffff_8010_0000, 8), Err(ErrorCode::BadAddress));
    check_eq!(syscall::log_write_raw(u64::MAX - 3, 8), Err(ErrorCode::BadAddress));
    check_eq!(syscall::log_write_raw(0x0000_7fff_ffff_fffc, 8), Err(ErrorCode::BadAddress));
    Ok(())
}

fn log_rejects_oversized_frames(_: &mut Buffer) -> Outcome {
    let frame = [0u8; 16];
    check_eq!(syscall::log_write_raw(frame.as_ptr() as u64, LOG_FRAME_MAX as u64 + 1), Err(ErrorCode::TooLarge));
    check_eq!(syscall::log_write_raw(frame.as_ptr() as u64, u64::MAX), Err(ErrorCode::TooLarge));
    Ok(())
}

fn unknown_syscall_is_an_error(_: &mut Buffer) -> Outcome {
    check_eq!(syscall::raw_number(0xdead, [0; 6]), Err(ErrorCode::NoSuchCall));
    check_eq!(syscall::raw_number(u64::MAX, [u64::MAX; 6]), Err(ErrorCode::NoSuchCall));
    Ok(())
}

/// Deliberately wrong: the scenario expects this case to be reported failed.
fn wrong_value_is_caught(_: &mut Buffer) -> Outcome {
    check_eq!(1 + 1, 3);
    Ok(())
}
