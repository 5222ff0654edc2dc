//! What the compiler expects from a C runtime, for ELFs linked without one.
//!
//! The kernel and every task link with `-nostdlib`, so `memcpy` and friends
//! are defined here with string instructions: written in assembly so the
//! compiler cannot turn them back into calls to themselves. They move eight
//! bytes per iteration (`rep movsq`/`rep stosq`) and only the last few one
//! by one: QEMU's TCG runs every iteration of a `rep` instruction as a
//! separate step, so `rep movsb` costs eight times as many steps as needed
//! (it was the hottest code of both the kernel's IPC path and the IOMMU
//! server's request loop, which copy frames and messages of hundreds of
//! bytes). The precompiled `core` also names `rust_eh_personality` even
//! with `panic = "abort"`; an empty definition satisfies the linker.
#![no_std]
// Unsafe code is allowed here: the memory intrinsics are assembly over raw pointers.
#![allow(unsafe_code)]

/// Copies `len` bytes forward.
///
/// # Safety
///
/// `dest` and `src` are valid for `len` bytes and do not overlap.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text.hot.memcpy")]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, len: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid and disjoint;
    // `rep movsq` copies the first `len / 8` words forward (the direction
    // flag is clear, as the ABI guarantees), leaving rsi and rdi just past
    // them, where `rep movsb` copies the remaining `len % 8` bytes.
    unsafe {
        core::arch::asm!(
            "rep movsq",
            "mov rcx, {tail}",
            "rep movsb",
            tail = in(reg) len % 8,
            inout("rcx") len / 8 => _,
            inout("rdi") dest => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags),
        );
    }
    dest
}

/// Copies `len` bytes; the ranges may overlap.
///
/// # Safety
///
/// `dest` and `src` are valid for `len` bytes.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text.hot.memmove")]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, len: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= len {
        // SAFETY: a forward copy is safe when dest is below src or past its end.
        unsafe { memcpy(dest, src, len) }
    } else {
        let words = len / 8;
        let tail = len % 8;
        // SAFETY: copying backwards handles dest above src; the caller
        // guarantees both ranges are valid. First the last `tail` bytes,
        // from the last byte down; then the `words` words below them,
        // from the last word down (rsi and rdi are set afresh for each).
        // The direction flag is set only between the two `std`/`cld`.
        unsafe {
            core::arch::asm!(
                "std",
                "rep movsb",
                "mov rcx, {words}",
                "mov rsi, {src_word}",
                "mov rdi, {dest_word}",
                "rep movsq",
                "cld",
                words = in(reg) words,
                src_word = in(reg) src.add(words * 8).wrapping_sub(8),
                dest_word = in(reg) dest.add(words * 8).wrapping_sub(8),
                inout("rcx") tail => _,
                inout("rdi") dest.add(len).wrapping_sub(1) => _,
                inout("rsi") src.add(len).wrapping_sub(1) => _,
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
    let word = u64::from(value as u8) * 0x0101_0101_0101_0101;
    // SAFETY: the caller guarantees the range is valid; `rep stosq` fills
    // the first `len / 8` words, `rep stosb` the remaining bytes from
    // where it stopped (the low byte of rax is the fill byte either way).
    unsafe {
        core::arch::asm!(
            "rep stosq",
            "mov rcx, {tail}",
            "rep stosb",
            tail = in(reg) len % 8,
            inout("rcx") len / 8 => _,
            inout("rdi") dest => _,
            in("rax") word,
            options(nostack, preserves_flags),
        );
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
