//! The kernel's stacks: the one kernel stack and the interrupt-stack-table
//! stacks, with the places on them the entry code relies on.
//!
//! The kernel stack's top [`TRAP_AREA`] bytes hold the entry frame of the
//! task being entered or resumed; Rust code runs below it. Exceptions that
//! may strike where the stack pointer cannot be trusted arrive on stacks
//! of their own through the IST ([`Ist`]); the entry code moves a frame
//! from ring 3 to the kernel stack before any Rust code runs. Every stack
//! has an unmapped guard page at its bottom ([`guards`]), so an overflow
//! faults (a double fault, on its own stack) instead of writing over
//! whatever lies below.

use core::cell::UnsafeCell;
use core::mem::size_of;
use core::ops::Range;

use kernel::context::TrapFrame;

/// Bytes of the kernel stack, including the guard page at its bottom.
pub const KERNEL_STACK_SIZE: usize = 64 * 1024 + GUARD_SIZE;
/// The unmapped page at the bottom of a stack.
pub const GUARD_SIZE: usize = 4096;
/// Bytes at the top of the kernel stack reserved for the entry frame.
pub const TRAP_AREA: usize = 256;
/// Bytes of a saved [`TrapFrame`].
pub const FRAME_SIZE: usize = size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE == 22 * 8 && FRAME_SIZE <= TRAP_AREA && FRAME_SIZE.is_multiple_of(16));

/// Bytes of each interrupt-stack-table stack, including its guard page.
pub const IST_STACK_SIZE: usize = 32 * 1024 + GUARD_SIZE;

/// A page-aligned stack that only the CPU writes, through `rsp`.
#[repr(C, align(4096))]
pub struct Stack<const N: usize>(UnsafeCell<[u8; N]>);

// SAFETY: Rust code never forms references into a stack's bytes; it is
// used only as memory for `rsp`, on the one CPU.
unsafe impl<const N: usize> Sync for Stack<N> {}

impl<const N: usize> Stack<N> {
    /// A zeroed stack.
    pub const fn new() -> Self {
        Self(UnsafeCell::new([0; N]))
    }

    /// Lowest address (the guard page, where there is one).
    pub fn bottom(&self) -> u64 {
        self.0.get() as u64
    }

    /// One past the highest address.
    pub fn top(&self) -> u64 {
        self.bottom() + N as u64
    }
}

/// The kernel stack; its first page is left unmapped as a guard.
pub static KERNEL_STACK: Stack<KERNEL_STACK_SIZE> = Stack::new();

/// The exceptions that get their own stack, with their IST slots. Each
/// may strike where the stack pointer cannot be trusted.
#[derive(Clone, Copy)]
pub enum Ist {
    /// Double fault (vector 8): the kernel stack may have overflowed.
    DoubleFault = 0,
    /// Non-maskable interrupt (vector 2): it may arrive anywhere, even on
    /// the first instruction of the `syscall` entry, still on the user's
    /// stack pointer.
    Nmi = 1,
    /// Machine check (vector 18): as unannounced as an NMI.
    MachineCheck = 2,
    /// General-protection fault (vector 13): a `sysretq` or `iretq` that
    /// faults does so in ring 0 with whatever stack pointer is loaded,
    /// after `sysretq`'s own switch to the task's.
    GeneralProtection = 3,
}

impl Ist {
    /// Every IST stack, in slot order.
    pub const ALL: [Ist; 4] = [Ist::DoubleFault, Ist::Nmi, Ist::MachineCheck, Ist::GeneralProtection];

    /// The slot's index in the TSS's interrupt stack table.
    pub const fn index(self) -> u16 {
        self as u16
    }

    /// The stack vector `vector` arrives on, if it has one of its own.
    pub const fn of_vector(vector: u8) -> Option<Ist> {
        match vector {
            8 => Some(Ist::DoubleFault),
            2 => Some(Ist::Nmi),
            18 => Some(Ist::MachineCheck),
            13 => Some(Ist::GeneralProtection),
            _ => None,
        }
    }

    /// The top of the slot's stack.
    pub fn top(self) -> u64 {
        IST_STACKS[self as usize].top()
    }
}

static IST_STACKS: [Stack<IST_STACK_SIZE>; Ist::ALL.len()] = [const { Stack::new() }; Ist::ALL.len()];

/// Top of the kernel stack, where the CPU pushes frames from ring 3.
pub fn kernel_stack_top() -> u64 {
    KERNEL_STACK.top()
}

/// Where the entry frame sits: the top [`FRAME_SIZE`] bytes of the stack.
pub fn frame_slot() -> *mut TrapFrame {
    (KERNEL_STACK.top() - FRAME_SIZE as u64) as *mut TrapFrame
}

/// The virtual range of the kernel stack's guard page.
pub fn kernel_stack_guard() -> Range<u64> {
    guard_of(KERNEL_STACK.bottom())
}

/// The guard pages of every stack: the kernel stack's, then the IST
/// stacks' in slot order. The kernel image is mapped without them.
pub fn guards() -> [Range<u64>; 1 + Ist::ALL.len()] {
    let mut guards = [const { 0..0 }; 1 + Ist::ALL.len()];
    guards[0] = kernel_stack_guard();
    for (guard, stack) in guards[1..].iter_mut().zip(&IST_STACKS) {
        *guard = guard_of(stack.bottom());
    }
    guards
}

/// Every stack's mapped bytes (above its guard page): where a frame
/// chain of the kernel may lie.
pub fn mapped() -> [Range<u64>; 1 + Ist::ALL.len()] {
    let mut stacks = [const { 0..0 }; 1 + Ist::ALL.len()];
    stacks[0] = KERNEL_STACK.bottom() + GUARD_SIZE as u64..KERNEL_STACK.top();
    for (range, stack) in stacks[1..].iter_mut().zip(&IST_STACKS) {
        *range = stack.bottom() + GUARD_SIZE as u64..stack.top();
    }
    stacks
}

fn guard_of(bottom: u64) -> Range<u64> {
    bottom..bottom + GUARD_SIZE as u64
}
