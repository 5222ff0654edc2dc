//! What the compiler expects from a C runtime, for ELFs linked without one.
//!
//! The kernel and every task link with `-nostdlib`, so `memcpy` and friends
//! are defined here with `rep movsb`/`rep stosb`: written in assembly so
//! the compiler cannot turn them back into calls to themselves. The
//! precompiled `core` also names `rust_eh_personality` even with
//! `panic = "abort"`; an empty definition satisfies the linker.
#![no_std]

/// Copies `len` bytes forward.
///
/// # Safety
///
/// `dest` and `src` are valid for `len` bytes and do not overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, len: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid and disjoint.
    unsafe {
        core::arch::asm!("rep movsb", inout("rcx") len => _, inout("rdi") dest => _, inout("rsi") src => _, options(nostack, preserves_flags));
    }
    dest
}

/// Copies `len` bytes; the ranges may overlap.
///
/// # Safety
///
/// `dest` and `src` are valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, len: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= len {
        // SAFETY: a forward copy is safe when dest is below src or past its end.
        unsafe { memcpy(dest, src, len) }
    } else {
        // SAFETY: copying backwards from the last byte handles dest above
        // src; the caller guarantees both ranges are valid.
        unsafe {
            core::arch::asm!(
                "std", "rep movsb", "cld",
                inout("rcx") len => _,
                inout("rdi") dest.add(len - 1) => _,
                inout("rsi") src.add(len - 1) => _,
                options(nostack),
            );
        }
        dest
    }
}

/// Fills `len` bytes with the low byte of `value`.
///
/// # Safety
///
/// `dest` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, value: i32, len: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range is valid.
    unsafe {
        core::arch::asm!("rep stosb", inout("rcx") len => _, inout("rdi") dest => _, in("al") value as u8, options(nostack, preserves_flags));
    }
    dest
}

/// Compares `len` bytes.
///
/// # Safety
///
/// `a` and `b` are valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, len: usize) -> i32 {
    for offset in 0..len {
        // SAFETY: the caller guarantees both ranges are valid. Volatile
        // reads keep the compiler from turning this loop into a memcmp call.
        let (x, y) = unsafe { (a.add(offset).read_volatile(), b.add(offset).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// Compares `len` bytes for equality only.
///
/// # Safety
///
/// `a` and `b` are valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, len: usize) -> i32 {
    // SAFETY: same contract as `memcmp`.
    unsafe { memcmp(a, b, len) }
}

/// Referenced by the precompiled `core`; never called with `panic=abort`.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}
