//! Time stamps and the frame samples are kept in.

use capabilities::abi::rights;
use userlib::cap::own;
use userlib::objects;

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads the time-stamp counter; the kernel leaves
    // CR4.TSD clear so it is allowed in ring 3.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// A frame of `pages` pages allocated into `slot` and mapped writable at
/// `virt`, as `count` zeroed `u32`s; `None` if it cannot be set up or the
/// samples do not fit.
pub fn sample_frame(slot: u32, pages: u64, virt: u64, count: usize) -> Option<&'static mut [u32]> {
    if count.checked_mul(4)? > usize::try_from(pages).ok()?.checked_mul(4096)? {
        return None;
    }
    let frame = objects::alloc_frame(slot, pages).ok()?;
    own::SPACE.map(frame, virt, rights::WRITE).ok()?;
    // SAFETY: the frame was just mapped, writable, at `virt` for `pages`
    // pages (checked above to hold `count` words), and nothing else refers
    // to that memory.
    Some(unsafe { core::slice::from_raw_parts_mut(virt as *mut u32, count) })
}

/// The `p`th percentile (0 to 100) of sorted samples, by nearest rank below.
pub fn percentile(sorted: &[u32], p: usize) -> u32 {
    sorted.get((sorted.len().saturating_sub(1)) * p / 100).copied().unwrap_or(0)
}
