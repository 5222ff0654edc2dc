//! A panicking task logs the message and its backtrace, then exits with
//! [`crate::EXIT_PANIC`].

use capabilities::abi::layout;
use capabilities::backtrace;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    defmt::error!("panic: {}", defmt::Display2Format(info));
    let (rbp, rsp): (u64, u64);
    // SAFETY: reads two registers into locals; nothing else is touched.
    unsafe { core::arch::asm!("mov {}, rbp", "mov {}, rsp", out(reg) rbp, out(reg) rsp, options(nomem, nostack)) };
    // Everything from the stack pointer up to the stack's top is mapped
    // stack, and the walk reads nothing outside the bounds it is given.
    let stack = rsp..layout::STACK_TOP;
    let walked = backtrace::walk(rbp, core::slice::from_ref(&stack), |at| {
        // SAFETY: `walk` only asks for 8-byte-aligned words with their
        // whole record inside `stack`, which is mapped and readable.
        Some(unsafe { (at as *const u64).read_volatile() })
    });
    // The host looks up each return address, innermost first.
    match walked.end.note() {
        None => defmt::info!("panic backtrace: {=[?]:#x}", walked.returns.as_slice()),
        Some(note) => defmt::info!(
            "panic backtrace: {=[?]:#x} ({=str} at {=u64:#x})",
            walked.returns.as_slice(),
            note,
            walked.end.frame_pointer()
        ),
    }
    crate::exit(crate::EXIT_PANIC)
}
