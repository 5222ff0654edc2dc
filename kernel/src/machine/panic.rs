//! Kernel panics: the message and a backtrace in plain text on the
//! console, then exit.

use core::fmt::Write;

use capabilities::backtrace;

use crate::{console, qemu_exit, stacks};

/// System status of a kernel panic.
const STATUS_PANIC: u8 = 127;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    x86_64::instructions::interrupts::disable();
    // Plain text: readable even when no log frame can be decoded.
    let _ = write!(console::Text, "\n!!! KERNEL PANIC: {}", info.message());
    if let Some(location) = info.location() {
        let _ = write!(console::Text, " at {}:{}", location.file(), location.line());
    }
    let _ = writeln!(console::Text);
    write_backtrace();
    qemu_exit::exit(STATUS_PANIC)
}

/// Writes the return addresses of this handler's callers, innermost first,
/// as `!!! backtrace: [...]`; the host turns them into functions and lines.
fn write_backtrace() {
    let rbp: u64;
    // SAFETY: reads one register into a local; nothing else is touched.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) };
    let walked = backtrace::walk(rbp, &stacks::mapped(), |at| {
        // SAFETY: `walk` reads only 8-byte-aligned words inside the ranges
        // it is given, which are the stacks' mapped pages (their guard
        // pages left out), always mapped and readable in the kernel.
        Some(unsafe { (at as *const u64).read_volatile() })
    });
    let _ = write!(console::Text, "!!! backtrace: [");
    for (index, address) in walked.returns.iter().enumerate() {
        let _ = write!(console::Text, "{}{address:#x}", if index == 0 { "" } else { ", " });
    }
    let _ = write!(console::Text, "]");
    if let Some(note) = walked.end.note() {
        let _ = write!(console::Text, " ({note} at {:#x})", walked.end.frame_pointer());
    }
    let _ = writeln!(console::Text);
}
