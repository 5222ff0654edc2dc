//! Entering and leaving the kernel: trap stubs, the `syscall` entry, the
//! return paths to ring 3, and the idle loop.
//!
//! There is one kernel stack. Every entry from ring 3 builds a
//! [`TrapFrame`] at its top (the CPU through the TSS for traps, the
//! `syscall` stub by hand), calls into Rust, and never returns: the way out
//! is [`run_next`], which asks the kernel logic what runs next, writes that
//! task's frame back to the top of the stack and pops it with `iretq` or
//! `sysretq`. The kernel runs with interrupts off; only the idle loop
//! enables them.

use core::sync::atomic::{AtomicU64, Ordering};

use kernel::context::{SYSCALL_VECTOR, TrapFrame, USER_CODE_SELECTOR, USER_DATA_SELECTOR};
use kernel::kernel::Next;
use kernel::task::{Fault, TaskId};
use x86_64::VirtAddr;
use x86_64::registers::control::Cr2;
use x86_64::registers::model_specific::{LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;

use crate::stacks::{self, FRAME_SIZE, KERNEL_STACK, KERNEL_STACK_SIZE, TRAP_AREA};
use crate::{SYSTEM, System, apic, fpu, gdt, integrity, memory, qemu_exit, time};

/// Scratch for the user stack pointer during `syscall` entry.
#[unsafe(no_mangle)]
static SYSCALL_USER_RSP: AtomicU64 = AtomicU64::new(0);

/// Non-maskable interrupts seen (counted by `nmi_entry`).
#[unsafe(no_mangle)]
static NMI_COUNT: AtomicU64 = AtomicU64::new(0);

/// The count of non-maskable interrupts last reported.
static NMIS_REPORTED: AtomicU64 = AtomicU64::new(0);

/// Address of the non-maskable interrupt's entry.
pub fn nmi_stub() -> u64 {
    nmi_entry as *const () as u64
}

/// Address of vector `vector`'s entry stub.
pub fn trap_stub(vector: u8) -> u64 {
    unsafe extern "C" {
        static trap_stubs: u8;
    }
    let base = &raw const trap_stubs as u64;
    base + 16 * u64::from(vector)
}

core::arch::global_asm!(
    r#"
    .section .text.trap_stubs, "ax"
    .p2align 4
    .global trap_stubs
trap_stubs:
    .set vector, 0
    .rept 256
    .p2align 4
    pushq $vector
    jmp trap_common
    .set vector, vector + 1
    .endr

    /* The general registers of the frame, in the order pop_registers
       takes them back. */
    .macro push_registers
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    .endm

trap_common:
    /* Some exceptions push an error code; interrupts, whatever their
       vector, and the other exceptions do not. The CPU aligns the stack to
       16 bytes before it pushes, so with the vector on top the stack
       pointer is 8 mod 16 exactly when there is one: where there is not,
       move the vector down and put a zero in its place. Every entry then
       leaves the same frame, even a device's message on vector 17. */
    testb $8, %spl
    jnz 3f
    pushq (%rsp)
    movq $0, 8(%rsp)
3:  push_registers
    cld
    testb $3, 18 * 8(%rsp)           /* from ring 3? (CS in the frame) */
    jz 1f
    movq FPU_SAVE_AREA(%rip), %rax   /* save the task's vector state before */
    fxsave64 (%rax)                  /* any kernel code can clobber it */
    /* An exception with a stack of its own (IST) left the frame there:
       move it to the top of the kernel stack, where the way back to the
       task expects it, and run the kernel on the kernel stack. */
    leaq {stack}(%rip), %rdi
    addq ${stack_size} - {frame_size}, %rdi
    cmpq %rdi, %rsp
    je 1f
    movq %rsp, %rsi
    movq %rdi, %rsp
    movl ${frame_words}, %ecx
    rep movsq
1:  movq %rsp, %rdi
    call trap_entry
    ud2

    /* Non-maskable interrupts may arrive anywhere, kernel code with
       interrupts off included, on their own stack: count them and return
       to whatever ran, untouched. The CPU blocks NMIs until the iretq, and
       nothing here faults, so no NMI enters while one runs. A device's
       fixed-mode message on vector 2 would come through this gate too,
       without that blocking, and an NMI during it would reuse the stack
       and overwrite its frame (iretq then looped here for ever): the task
       priority holds such messages off in the local APIC (apic::init), and
       should one come anyway it is ended (the APIC has it in service). */
    .global nmi_entry
nmi_entry:
    lock incq NMI_COUNT(%rip)
    pushq %rax
    movabsq ${in_service_0}, %rax
    testl $(1 << 2), (%rax)
    jz 4f
    movabsq ${eoi}, %rax
    movl $0, (%rax)
4:  popq %rax
    iretq

    .global syscall_entry
syscall_entry:
    movq %rsp, SYSCALL_USER_RSP(%rip)
    leaq {stack}(%rip), %rsp
    addq ${stack_size}, %rsp
    pushq ${user_ss}
    pushq SYSCALL_USER_RSP(%rip)
    pushq %r11                       /* user RFLAGS */
    pushq ${user_cs}
    pushq %rcx                       /* user RIP */
    pushq $0
    pushq ${syscall_vector}
    push_registers
    cld
    movq %rsp, %rdi
    call syscall_dispatch
    ud2

    .macro pop_registers
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp                   /* vector and error code */
    .endm

    /* rdi: FXSAVE area to restore exactly, then the frame at the top of
       the kernel stack is popped with iretq. */
    .global return_iret
return_iret:
    fxrstor64 (%rdi)
    leaq {stack}(%rip), %rsp
    addq ${stack_size} - {frame_size}, %rsp
    pop_registers
    iretq

    /* rdi: FXSAVE area to load first (0: keep the live state); vector
       registers are then cleared, as the syscall ABI clobbers them. */
    .global return_sysret
return_sysret:
    testq %rdi, %rdi
    jz 1f
    fxrstor64 (%rdi)
1:  pxor %xmm0, %xmm0
    pxor %xmm1, %xmm1
    pxor %xmm2, %xmm2
    pxor %xmm3, %xmm3
    pxor %xmm4, %xmm4
    pxor %xmm5, %xmm5
    pxor %xmm6, %xmm6
    pxor %xmm7, %xmm7
    pxor %xmm8, %xmm8
    pxor %xmm9, %xmm9
    pxor %xmm10, %xmm10
    pxor %xmm11, %xmm11
    pxor %xmm12, %xmm12
    pxor %xmm13, %xmm13
    pxor %xmm14, %xmm14
    pxor %xmm15, %xmm15
    leaq {stack}(%rip), %rsp
    addq ${stack_size} - {frame_size}, %rsp
    pop_registers
    movq (%rsp), %rcx                /* RIP */
    movq 16(%rsp), %r11              /* RFLAGS */
    movq 24(%rsp), %rsp              /* user stack */
    sysretq

    /* Waits for interrupts on a fresh stack below the trap area. */
    .global idle_loop
idle_loop:
    leaq {stack}(%rip), %rsp
    addq ${stack_size} - {trap_area}, %rsp
2:  sti
    hlt
    cli
    jmp 2b
    "#,
    stack = sym KERNEL_STACK,
    stack_size = const KERNEL_STACK_SIZE,
    frame_size = const FRAME_SIZE,
    frame_words = const FRAME_SIZE / 8,
    trap_area = const TRAP_AREA,
    user_ss = const USER_DATA_SELECTOR,
    user_cs = const USER_CODE_SELECTOR,
    syscall_vector = const SYSCALL_VECTOR,
    in_service_0 = const apic::IN_SERVICE_0,
    eoi = const apic::EOI_ADDRESS,
    options(att_syntax)
);

unsafe extern "C" {
    fn nmi_entry() -> !;
    fn syscall_entry() -> !;
    fn return_iret(fx_area: *const u8) -> !;
    fn return_sysret(fx_area: *const u8) -> !;
    fn idle_loop() -> !;
}

/// Programs the `syscall` MSRs: entry point, selectors, and the RFLAGS
/// bits cleared on entry (interrupts, trap, direction, alignment, NT).
pub fn init_syscalls(selectors: gdt::Selectors) {
    let masked = RFlags::INTERRUPT_FLAG
        | RFlags::TRAP_FLAG
        | RFlags::DIRECTION_FLAG
        | RFlags::ALIGNMENT_CHECK
        | RFlags::NESTED_TASK
        | RFlags::IOPL_HIGH
        | RFlags::IOPL_LOW;
    SFMask::write(masked);
    LStar::write(VirtAddr::new(syscall_entry as *const () as u64));
    if Star::write(selectors.user_code, selectors.user_data, selectors.kernel_code, selectors.kernel_data).is_err() {
        panic!("GDT order does not fit sysret's selector arithmetic");
    }
}

/// Handler of every interrupt and exception, called by `trap_common` with
/// the frame it built. A raw pointer, not a reference: a reference
/// argument would stay protected for as long as this function runs, which
/// is until the task is resumed, and `resume` writes the next frame over
/// the frame slot this one may sit in.
#[unsafe(no_mangle)]
extern "C" fn trap_entry(entry: *const TrapFrame) -> ! {
    // SAFETY: `trap_common` passes the frame it has just pushed, aligned
    // and complete, and nothing writes it until `resume`, after this
    // reference's last use (the copy `save_frame` makes).
    let frame = unsafe { &*entry };
    let vector = frame.vector as u8;
    // A device's message the CPU could not deliver through its gate comes
    // as a segment-not-present or general-protection fault naming the
    // gate: it is that message, a stray, not a fault of what ran.
    let undelivered = kernel::kernel::undelivered_interrupt(vector, frame.error_code, apic::highest_in_service);
    // Below 32 a vector is the CPU's exception, unless a device sent it:
    // then the local APIC has it in service.
    let exception = undelivered.is_none() && vector < 32 && !apic::in_service(vector);
    if !frame.is_user() {
        if exception {
            kernel_exception(frame);
        }
        // An interrupt that woke the idle loop.
        interrupt(undelivered.unwrap_or(vector), undelivered.is_some());
        run_next()
    }
    let mut system = SYSTEM.lock();
    let System { kernel, hardware } = &mut *system;
    kernel.save_frame(frame);
    if let Some(task) = kernel.current() {
        fpu::saved_by_trap(task);
    }
    if exception {
        let address = if vector == 14 { Cr2::read_raw() } else { 0 };
        kernel.fault(hardware, Fault { vector, error_code: frame.error_code, address, rip: frame.rip });
        drop(system);
    } else {
        drop(system);
        interrupt(undelivered.unwrap_or(vector), undelivered.is_some());
    }
    run_next()
}

/// Hands a device interrupt to the kernel logic (which counts and drops one
/// on an exception vector, or one the CPU could not deliver: `stray`) and
/// acknowledges it; the timer needs no handling beyond the scheduling that
/// follows every entry.
fn interrupt(vector: u8, stray: bool) {
    if vector == apic::SPURIOUS_VECTOR && !stray {
        return;
    }
    if stray || vector != apic::TIMER_VECTOR {
        let mut system = SYSTEM.lock();
        let System { kernel, hardware } = &mut *system;
        if stray { kernel.stray_vector(vector) } else { kernel.interrupt(hardware, vector) }
    }
    apic::end_of_interrupt();
}

/// Handler of the `syscall` instruction. An IPC call or reply that the
/// fast path completes switches straight to the partner, and a call that
/// changed nothing the scheduler looks at returns straight to its caller;
/// the scheduler, the timer and the reaper have nothing to do then (see
/// `kernel::kernel::fastpath`: the timer stays armed early enough).
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text.hot.syscall_dispatch")]
extern "C" fn syscall_dispatch(entry: *const TrapFrame) -> ! {
    // SAFETY: `syscall_entry` passes the frame it has just pushed in the
    // frame slot, and nothing writes it until `resume`, after this
    // reference's last use (`save_frame`); a raw pointer argument, as for
    // `trap_entry`.
    let frame = unsafe { &*entry };
    let mut system = SYSTEM.lock();
    let System { kernel, hardware } = &mut *system;
    kernel.save_frame(frame);
    if let Some(next) = kernel.fastpath(hardware)
        && kernel.check_resumable(hardware, next)
    {
        memory::switch_to(kernel.root(next));
        let frame = *kernel.frame(next);
        drop(system);
        resume(next, &frame)
    }
    if let Some(caller) = kernel.syscall_and_continue(hardware)
        && kernel.check_resumable(hardware, caller)
    {
        let frame = *kernel.frame(caller);
        drop(system);
        resume(caller, &frame)
    }
    drop(system);
    run_next()
}

fn kernel_exception(frame: &TrapFrame) -> ! {
    let address = if frame.vector == 14 { Cr2::read_raw() } else { 0 };
    let overflow = stacks::guards().iter().any(|guard| guard.contains(&address));
    let hint = if frame.vector == 8 || overflow { " (kernel stack overflow?)" } else { "" };
    panic!(
        "{} in the kernel at rip {:#x}, address {:#x}, error code {:#x}{}",
        kernel::task::exception_name(frame.vector as u8),
        frame.rip,
        address,
        frame.error_code,
        hint
    );
}

/// Asks the kernel what runs next and goes there.
pub fn run_next() -> ! {
    report_nmis();
    let mut system = SYSTEM.lock();
    let System { kernel, hardware } = &mut *system;
    let now = time::micros();
    let mut next = kernel.schedule(now);
    // Each refusal ends a task, so this ends after at most one per task.
    while let Next::Resume(task) = next
        && !kernel.check_resumable(hardware, task)
    {
        next = kernel.schedule(now);
    }
    apic::arm_timer(kernel.next_deadline(), now);
    match next {
        Next::Resume(task) => {
            memory::switch_to(kernel.root(task));
            kernel.reap(hardware);
            let frame = *kernel.frame(task);
            drop(system);
            resume(task, &frame)
        }
        Next::Idle => {
            memory::switch_to_kernel();
            kernel.reap(hardware);
            drop(system);
            // SAFETY: `idle_loop` moves to a fresh part of the kernel stack;
            // nothing on the current stack is needed again.
            unsafe { idle_loop() }
        }
        Next::Shutdown(status) => {
            let held = apic::held_exception_vectors();
            if held != 0 {
                defmt::warn!("device messages held off on exception vectors (bit per vector): {=u32:#x}", held);
            }
            integrity::check();
            defmt::info!("system ends with status {=u8}", status);
            qemu_exit::exit(status)
        }
    }
}

/// Logs the count of non-maskable interrupts each time it reaches the
/// next power of two.
fn report_nmis() {
    let count = NMI_COUNT.load(Ordering::Relaxed);
    let reported = NMIS_REPORTED.swap(count, Ordering::Relaxed);
    if count.checked_ilog2() != reported.checked_ilog2() {
        defmt::warn!("non-maskable interrupt ignored ({=u64} so far)", count);
    }
}

#[unsafe(link_section = ".text.hot.resume")]
fn resume(task: TaskId, frame: &TrapFrame) -> ! {
    if !frame.resumable() {
        // Every caller checked `Kernel::check_resumable` first.
        panic!("refusing to resume task {} with a frame sysret or iretq would fault on", task.index());
    }
    let restore = fpu::switch_to(task, frame.from_syscall());
    // SAFETY: the frame slot is the top `FRAME_SIZE` bytes of the kernel
    // stack, and nothing live is in it. Rust code runs below it: an entry
    // from ring 3 calls in with the stack pointer just below the frame it
    // put there, an interrupt of the idle loop below `TRAP_AREA`. The
    // frame an entry left there was copied into the task table
    // (`save_frame`) through a reference that is no longer used, and no
    // reference into the slot is protected by a running function (the
    // entry functions take raw pointers). `frame` is a copy below the
    // slot, in the caller's stack frame.
    unsafe { stacks::frame_slot().write(*frame) };
    // SAFETY: the frame describes ring-3 code at a canonical address
    // (checked above), so neither return faults in ring 0;
    // the FXSAVE area belongs to `task`; the return paths pop the frame
    // just written and leave the kernel stack empty.
    unsafe {
        if frame.from_syscall() {
            return_sysret(restore.map_or(core::ptr::null(), |area| area))
        } else {
            return_iret(fpu::area(task))
        }
    }
}
