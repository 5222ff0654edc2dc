//! System calls: the raw `syscall` instruction and a typed wrapper per call.
//!
//! The register convention is documented in `capabilities::abi`. The raw
//! stub declares every caller-saved register clobbered (the C ABI's set,
//! vector registers included), which is what lets the kernel skip saving
//! them on this path.

use capabilities::ErrorCode;
use capabilities::abi::Syscall;

/// Result words of a successful call.
pub type Results = [u64; 3];

/// Makes system call `call` with `args`.
pub(crate) fn raw(call: Syscall, args: [u64; 6]) -> Result<Results, ErrorCode> {
    raw_number(call as u64, args)
}

/// Makes a system call by number, for tests of the kernel's checks.
pub fn raw_number(number: u64, args: [u64; 6]) -> Result<Results, ErrorCode> {
    let status: u64;
    let (r0, r1, r2): (u64, u64, u64);
    // SAFETY: `syscall` transfers to the kernel, which reads only the
    // argument registers, writes only rax/rdi/rsi/rdx (declared outputs),
    // clobbers rcx and r11 and the vector registers (covered by
    // `clobber_abi`), and touches no memory of ours except through the
    // addresses the wrappers pass, each documented there. An unknown number
    // only returns an error.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") number => status,
            inlateout("rdi") args[0] => r0,
            inlateout("rsi") args[1] => r1,
            inlateout("rdx") args[2] => r2,
            inlateout("r10") args[3] => _,
            inlateout("r8") args[4] => _,
            inlateout("r9") args[5] => _,
            clobber_abi("C"),
            options(nostack),
        );
    }
    match status {
        0 => Ok([r0, r1, r2]),
        code => Err(ErrorCode::from_code(code).unwrap_or(ErrorCode::NoSuchCall)),
    }
}

/// Hands one encoded log frame to the kernel.
pub fn log_write(frame: &[u8]) -> Result<(), ErrorCode> {
    log_write_raw(frame.as_ptr() as u64, frame.len() as u64)
}

/// [`log_write`] with an arbitrary address and length, for tests of the
/// kernel's pointer checks. The kernel only reads the range.
pub fn log_write_raw(address: u64, len: u64) -> Result<(), ErrorCode> {
    raw(Syscall::LogWrite, [address, len, 0, 0, 0, 0]).map(|_| ())
}

/// Ends the task with `code`.
pub fn exit(code: u64) -> ! {
    let _ = raw(Syscall::Exit, [code, 0, 0, 0, 0, 0]);
    // The kernel never returns from exit; if it did, spin rather than run on.
    loop {
        core::hint::spin_loop();
    }
}

/// Gives up the rest of the time slice.
pub fn yield_now() {
    let _ = raw(Syscall::Yield, [0; 6]);
}

/// Microseconds since the machine started.
pub fn now() -> u64 {
    raw(Syscall::Time, [0; 6]).map_or(0, |[micros, _, _]| micros)
}
