//! The entry point: aligns the stack and calls the task's `main`.

core::arch::global_asm!(
    r#"
    .section .text.start, "ax"
    .global _start
_start:
    xorl %ebp, %ebp
    andq $-16, %rsp
    call userlib_start
    ud2
    "#,
    options(att_syntax)
);

unsafe extern "Rust" {
    /// Defined by the task through [`crate::entry!`].
    fn __task_main() -> u64;
}

#[unsafe(no_mangle)]
extern "C" fn userlib_start() -> ! {
    // SAFETY: every task binary defines `__task_main` with `entry!`, which
    // gives it exactly this signature.
    let code = unsafe { __task_main() };
    crate::exit(code)
}
