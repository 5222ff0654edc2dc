//! A task's saved user registers, in the layout the entry code pushes.

/// Code selector of ring 3 (GDT entry 4, RPL 3).
pub const USER_CODE_SELECTOR: u64 = 0x23;
/// Stack selector of ring 3 (GDT entry 3, RPL 3).
pub const USER_DATA_SELECTOR: u64 = 0x1b;
/// `vector` value of a frame built by the `syscall` entry path.
pub const SYSCALL_VECTOR: u64 = 0x100;
/// RFLAGS a task starts with: interrupts enabled, reserved bit 1 set.
pub const INITIAL_RFLAGS: u64 = 0x202;
/// Registers of an interrupted or calling task, lowest address first.
///
/// The machine layer's entry stubs push exactly this layout, so its field
/// order is part of the ABI between `src/machine/trap.rs` and this crate.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)] // register names speak for themselves
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Interrupt vector, or [`SYSCALL_VECTOR`] for a system call.
    pub vector: u64,
    /// The CPU's error code for exceptions that push one, else 0.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// The registers a new task starts with.
    pub fn new_user(entry: u64, stack_top: u64) -> Self {
        Self {
            rip: entry,
            rsp: stack_top,
            rflags: INITIAL_RFLAGS,
            cs: USER_CODE_SELECTOR,
            ss: USER_DATA_SELECTOR,
            vector: SYSCALL_VECTOR,
            ..Self::default()
        }
    }

    /// Whether the frame was saved by the `syscall` entry path, so it may be
    /// resumed with `sysret` (which overwrites `rcx` and `r11`).
    pub fn from_syscall(&self) -> bool {
        self.vector == SYSCALL_VECTOR
    }

    /// System-call number and arguments, in ABI order.
    pub fn syscall_args(&self) -> (u64, [u64; 6]) {
        (self.rax, [self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9])
    }

    /// Sets the status and result registers of a system call.
    pub fn set_result(&mut self, status: u64, results: [u64; 3]) {
        self.rax = status;
        self.rdi = results[0];
        self.rsi = results[1];
        self.rdx = results[2];
    }

    /// Whether the frame would return to ring 3 (a kernel frame never is
    /// resumed through a task).
    pub fn is_user(&self) -> bool {
        self.cs == USER_CODE_SELECTOR && self.ss == USER_DATA_SELECTOR
    }

    /// Whether `sysretq` or `iretq` can return to it without faulting in
    /// ring 0: a ring-3 frame whose instruction pointer is in the canonical
    /// lower half. Intel CPUs raise the #GP of a non-canonical RIP before
    /// the switch to ring 3, on whatever stack pointer is loaded.
    pub fn resumable(&self) -> bool {
        self.is_user() && self.rip < capabilities::abi::layout::USER_END
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capabilities::abi::layout::{USER_END, USER_MAP_END};

    #[test]
    fn only_ring_3_frames_in_the_lower_half_are_resumable() {
        let frame = |rip| TrapFrame::new_user(rip, 0x1000);
        assert!(frame(0x40_0000).resumable());
        assert!(frame(USER_MAP_END).resumable(), "just past the last mappable page");
        assert!(!frame(USER_END).resumable());
        assert!(!frame(u64::MAX).resumable());
        let kernel = TrapFrame { cs: 0x08, ..frame(0x40_0000) };
        assert!(!kernel.resumable());
    }
}
