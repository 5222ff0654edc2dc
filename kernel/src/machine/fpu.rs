//! Tasks' x87/SSE state, switched eagerly when the CPU changes tasks.
//!
//! A trap from ring 3 saves the exact state in the trap stub (before any
//! kernel code can clobber a vector register). A `syscall` saves nothing:
//! the ABI declares the vector registers clobbered, so only the control
//! words (MXCSR, x87 FCW), which kernel code never changes, must survive.
//! When another task is about to run, the outgoing one's state is saved
//! with its vector registers zeroed first, so no kernel data is ever
//! stored in, or restored to, any task's registers.

use core::cell::UnsafeCell;

use capabilities::manifest::MAX_TASKS;
use kernel::task::TaskId;

use crate::entry;

const AREA_SIZE: usize = 512;
const FCW_DEFAULT: u16 = 0x037f;
const MXCSR_DEFAULT: u32 = 0x1f80;

#[repr(C, align(16))]
struct Area([u8; AREA_SIZE]);

struct Areas(UnsafeCell<[Area; MAX_TASKS]>);

// SAFETY: one CPU; the areas are only read and written by FXSAVE/FXRSTOR
// and by `prepare`, all with interrupts off.
unsafe impl Sync for Areas {}

static AREAS: Areas = Areas(UnsafeCell::new([const { Area([0; AREA_SIZE]) }; MAX_TASKS]));

struct State {
    /// The task whose control words are in the CPU.
    live: Option<TaskId>,
    /// Per task: its area holds its current state.
    saved: [bool; MAX_TASKS],
    /// Per task: its area has been given the default control words.
    prepared: [bool; MAX_TASKS],
}

static STATE: spin::Mutex<State> =
    spin::Mutex::new(State { live: None, saved: [false; MAX_TASKS], prepared: [false; MAX_TASKS] });

/// The FXSAVE area of `task`.
pub fn area(task: TaskId) -> *const u8 {
    let base = AREAS.0.get() as *const Area;
    base.wrapping_add(task.index()) as *const u8
}

/// The trap stub saved `task`'s exact state on entry.
pub fn saved_by_trap(task: TaskId) {
    let mut state = STATE.lock();
    state.live = Some(task);
    state.saved[task.index()] = true;
}

/// Makes `task` the owner of the vector state. Returns the area the
/// `sysret` path must load, or `None` when `task`'s state is still live.
pub fn switch_to(task: TaskId) -> Option<*const u8> {
    let mut state = STATE.lock();
    entry::set_fpu_save_area(area(task));
    if state.live == Some(task) {
        state.saved[task.index()] = false;
        return None;
    }
    if let Some(outgoing) = state.live
        && !state.saved[outgoing.index()]
    {
        zero_and_save(area(outgoing));
        state.saved[outgoing.index()] = true;
    }
    if !state.prepared[task.index()] {
        prepare(task);
        state.prepared[task.index()] = true;
    }
    state.live = Some(task);
    state.saved[task.index()] = false;
    Some(area(task))
}

/// Gives a new task's area the default control words and zero registers.
fn prepare(task: TaskId) {
    // SAFETY: the area belongs to `task`, which has not run yet; nothing
    // else holds a reference into it.
    let bytes = unsafe { &mut (*AREAS.0.get())[task.index()].0 };
    bytes.fill(0);
    bytes[0..2].copy_from_slice(&FCW_DEFAULT.to_le_bytes());
    bytes[24..28].copy_from_slice(&MXCSR_DEFAULT.to_le_bytes());
}

fn zero_and_save(area: *const u8) {
    // SAFETY: `area` is a 16-byte aligned 512-byte FXSAVE area owned by the
    // outgoing task; the vector registers hold nothing the kernel needs.
    unsafe {
        core::arch::asm!(
            "pxor xmm0, xmm0", "pxor xmm1, xmm1", "pxor xmm2, xmm2", "pxor xmm3, xmm3",
            "pxor xmm4, xmm4", "pxor xmm5, xmm5", "pxor xmm6, xmm6", "pxor xmm7, xmm7",
            "pxor xmm8, xmm8", "pxor xmm9, xmm9", "pxor xmm10, xmm10", "pxor xmm11, xmm11",
            "pxor xmm12, xmm12", "pxor xmm13, xmm13", "pxor xmm14, xmm14", "pxor xmm15, xmm15",
            "fxsave64 [{area}]",
            area = in(reg) area,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            options(nostack),
        );
    }
}
