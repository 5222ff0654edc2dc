//! Kernel panics: the message in plain text on the console, then exit.

use core::fmt::Write;

use crate::{console, qemu_exit};

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
    qemu_exit::exit(STATUS_PANIC)
}
