//! Tasks' x87/SSE state, switched when the CPU changes tasks.
//!
//! A trap from ring 3 saves the exact state in the trap stub (before any
//! kernel code can clobber a vector register), and the task gets it back
//! whole with FXRSTOR. A `syscall` saves nothing: the ABI declares every
//! vector, x87 and MMX register clobbered (`docs/syscalls.md`), so only
//! the control words (MXCSR, x87 FCW), which kernel code never changes,
//! must survive. When another task is about to run after a system call,
//! the outgoing task's control words are read out and the incoming task's
//! loaded, after the x87/MMX data registers are overwritten with zeroes
//! (the `sysret` path zeroes the XMM registers), so no task ever sees
//! another's values or the kernel's. This replaces a full FXSAVE and
//! FXRSTOR (1 KiB of memory traffic) on the IPC path with a few register
//! operations.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use capabilities::manifest::MAX_TASKS;
use kernel::task::TaskId;

const AREA_SIZE: usize = 512;
const FCW_DEFAULT: u16 = 0x037f;
const MXCSR_DEFAULT: u32 = 0x1f80;

#[repr(C, align(16))]
struct Area([u8; AREA_SIZE]);

struct Areas(UnsafeCell<[Area; MAX_TASKS]>);

// SAFETY: one CPU; the areas are only read and written by FXSAVE/FXRSTOR
// and by `fill_controls`, all with interrupts off.
unsafe impl Sync for Areas {}

/// Address of the FXSAVE area the trap stub (`entry`) saves the running
/// task's vector state to on its next entry from ring 3.
#[unsafe(no_mangle)]
static FPU_SAVE_AREA: AtomicU64 = AtomicU64::new(0);

static AREAS: Areas = Areas(UnsafeCell::new([const { Area([0; AREA_SIZE]) }; MAX_TASKS]));

/// Where a task's vector state is while it does not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Saved {
    /// In the CPU: the task runs, or ran last and nothing replaced it.
    Live,
    /// Exactly, in its FXSAVE area (the trap stub wrote it).
    Area,
    /// Only its control words matter: it left through a system call (or
    /// has not run yet), so its registers are zero when it resumes.
    Controls {
        /// x87 control word.
        fcw: u16,
        /// SSE control and status.
        mxcsr: u32,
    },
}

struct State {
    /// The task whose state the CPU holds.
    live: Option<TaskId>,
    /// Per task, where its state is.
    saved: [Saved; MAX_TASKS],
}

const INITIAL: Saved = Saved::Controls { fcw: FCW_DEFAULT, mxcsr: MXCSR_DEFAULT };

static STATE: spin::Mutex<State> = spin::Mutex::new(State { live: None, saved: [INITIAL; MAX_TASKS] });

/// The FXSAVE area of `task`.
pub fn area(task: TaskId) -> *const u8 {
    let base = AREAS.0.get() as *const Area;
    base.wrapping_add(task.index()) as *const u8
}

/// The trap stub saved `task`'s exact state on entry.
pub fn saved_by_trap(task: TaskId) {
    let mut state = STATE.lock();
    state.live = Some(task);
    state.saved[task.index()] = Saved::Area;
}

/// Makes `task` the owner of the vector state before it resumes, through
/// `sysret` (`by_sysret`, which zeroes the XMM registers) or `iretq`
/// (which always loads the task's area). Returns the area the `sysret`
/// path must load, or `None` when the CPU already holds what `task` may
/// see.
#[unsafe(link_section = ".text.hot.fpu")]
pub fn switch_to(task: TaskId, by_sysret: bool) -> Option<*const u8> {
    FPU_SAVE_AREA.store(area(task) as u64, Ordering::Relaxed);
    let mut state = STATE.lock();
    if let Some(outgoing) = state.live
        && outgoing != task
        && state.saved[outgoing.index()] == Saved::Live
    {
        let (fcw, mxcsr) = read_controls();
        state.saved[outgoing.index()] = Saved::Controls { fcw, mxcsr };
    }
    state.live = Some(task);
    let saved = core::mem::replace(&mut state.saved[task.index()], Saved::Live);
    match saved {
        Saved::Live if by_sysret => None,
        Saved::Live => {
            // Not reached (a trap leaves the task's state in its area), but
            // an `iretq` must never load a stale area: save what is live.
            zero_and_save(area(task));
            Some(area(task))
        }
        Saved::Area => Some(area(task)),
        Saved::Controls { fcw, mxcsr } if by_sysret => {
            load_controls_over_zeroes(fcw, mxcsr);
            None
        }
        Saved::Controls { fcw, mxcsr } => {
            fill_controls(task, fcw, mxcsr);
            Some(area(task))
        }
    }
}

/// Reads the live x87 control word and MXCSR.
fn read_controls() -> (u16, u32) {
    let mut fcw = 0u16;
    let mut mxcsr = 0u32;
    // SAFETY: both instructions only store a control register to the
    // given stack locations, which are valid for the write.
    unsafe {
        core::arch::asm!(
            "fnstcw [{fcw}]",
            "stmxcsr [{mxcsr}]",
            fcw = in(reg) &mut fcw,
            mxcsr = in(reg) &mut mxcsr,
            options(nostack),
        );
    }
    (fcw, mxcsr)
}

/// Overwrites every x87/MMX data register with zero, resets the x87 unit
/// and loads `fcw` and `mxcsr`.
fn load_controls_over_zeroes(fcw: u16, mxcsr: u32) {
    // SAFETY: FNINIT empties the x87 stack, eight FLDZ push a zero into
    // each data register (so no earlier value survives, MMX views
    // included), FNINIT empties the stack again; FLDCW and LDMXCSR load
    // values FNSTCW and STMXCSR produced (or the architectural defaults),
    // so no reserved bit is set. The kernel keeps no value in these
    // registers.
    unsafe {
        core::arch::asm!(
            "fninit",
            "fldz", "fldz", "fldz", "fldz", "fldz", "fldz", "fldz", "fldz",
            "fninit",
            "fldcw [{fcw}]",
            "ldmxcsr [{mxcsr}]",
            fcw = in(reg) &fcw,
            mxcsr = in(reg) &mxcsr,
            out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
            out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
            options(nostack),
        );
    }
}

/// Gives `task`'s area zero registers and the control words, for a resume
/// through `iretq`.
fn fill_controls(task: TaskId, fcw: u16, mxcsr: u32) {
    // SAFETY: the area belongs to `task`, which does not run; nothing
    // else holds a reference into it, and interrupts are off.
    let bytes = unsafe { &mut (*AREAS.0.get())[task.index()].0 };
    bytes.fill(0);
    bytes[0..2].copy_from_slice(&fcw.to_le_bytes());
    bytes[24..28].copy_from_slice(&mxcsr.to_le_bytes());
}

fn zero_and_save(area: *const u8) {
    // SAFETY: `area` is a 16-byte aligned 512-byte FXSAVE area owned by the
    // task being resumed; the vector registers hold nothing the kernel needs.
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
