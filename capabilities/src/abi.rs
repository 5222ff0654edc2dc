//! The system-call ABI: numbers, registers and the user address-space layout.
//!
//! # Calling convention
//!
//! A task enters the kernel with the `syscall` instruction. The call number is
//! in `rax`; arguments are in `rdi`, `rsi`, `rdx`, `r10`, `r8`, `r9` in that
//! order. On return `rax` holds `0` for success or an [`ErrorCode`] value, and
//! the call's results are in `rdi`, `rsi` and `rdx`. The kernel clobbers `rcx`,
//! `r11` and every vector register (the user stub declares them clobbered, so
//! the kernel need not save them on this path); every other register is kept.
//!
//! The full table with what each call may return is in `docs/syscalls.md`.
//!
//! [`ErrorCode`]: crate::ErrorCode

/// System-call numbers (`rax` on entry).
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Syscall {
    /// Write one encoded `defmt` frame to the log: `rdi` = address, `rsi` = length
    /// (at most [`LOG_FRAME_MAX`] bytes). The kernel tags it with the caller.
    LogWrite = 0,
    /// End the calling task: `rdi` = exit code. Never returns.
    Exit = 1,
}

impl Syscall {
    /// Decodes a call number, or `None` for a number no call has.
    pub fn from_number(number: u64) -> Option<Self> {
        Some(match number {
            0 => Self::LogWrite,
            1 => Self::Exit,
            _ => return None,
        })
    }
}

/// Largest `defmt` frame a task may hand to [`Syscall::LogWrite`].
pub const LOG_FRAME_MAX: usize = 512;

/// Size of a page, the unit of every mapping.
pub const PAGE_SIZE: u64 = 4096;

/// Fixed places in every task's address space.
///
/// The build tool links task images at [`layout::IMAGE_BASE`]; the kernel maps
/// the stack, the IPC buffer and the boot-information page at the addresses
/// below when it creates the task. Page 0 is never mapped, so a null
/// dereference faults.
pub mod layout {
    /// Where task images are linked (the task linker script uses this value).
    pub const IMAGE_BASE: u64 = 0x0040_0000;
    /// One past the highest stack address; the stack grows down from here and
    /// the page above it stays unmapped as a guard.
    pub const STACK_TOP: u64 = 0x0ff0_0000;
    /// The task's IPC buffer page.
    pub const IPC_BUFFER: u64 = 0x1000_0000;
    /// The read-only boot-information page.
    pub const BOOT_INFO: u64 = 0x1000_2000;
    /// Lowest address a task may choose for its own mappings.
    pub const USER_MAP_BASE: u64 = 0x2000_0000;
    /// One past the highest user address (the canonical lower half).
    pub const USER_END: u64 = 0x0000_8000_0000_0000;
}
