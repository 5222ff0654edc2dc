//! The read-only image's page digests, taken once the kernel runs on its own tables and checked when the system ends.

use kernel::integrity::{ImageDigest, PAGE_WORDS};

use crate::kernel_space;
use crate::memory::PHYS_OFFSET;

/// The digests taken at boot.
static TAKEN: spin::Once<Option<ImageDigest>> = spin::Once::new();

/// The words of the image page at physical `address`, through the direct map.
fn page(address: u64) -> [u64; PAGE_WORDS] {
    let base = (PHYS_OFFSET + address) as *const u64;
    // SAFETY: `address` is a page of the read-only image (`ImageDigest`
    // reads no other), which lies in RAM and so in the direct map at
    // PHYS_OFFSET. Volatile reads make no reference: a device writing
    // there (what the check exists to catch) races with plain loads only.
    core::array::from_fn(|word| unsafe { core::ptr::read_volatile(base.add(word)) })
}

/// Digests the read-only image; after `kernel_space::init`, whose tables
/// no longer set accessed bits in the boot section's.
pub fn record() {
    let image = kernel_space::read_only_image();
    let taken = TAKEN.call_once(|| ImageDigest::take(image.start, image.end, page));
    match taken {
        Some(taken) => defmt::info!(
            "kernel image {=u64:#x}..{=u64:#x} (boot section, code, read-only data) digested page by page",
            taken.range().start,
            taken.range().end
        ),
        None => defmt::warn!("kernel image {=u64:#x}..{=u64:#x} not digested: too large", image.start, image.end),
    }
}

/// Compares the image with its digests and says whether it changed.
pub fn check() {
    let Some(Some(taken)) = TAKEN.get() else { return };
    match taken.first_changed(page) {
        None => defmt::info!(
            "kernel image unchanged since boot ({=u64:#x}..{=u64:#x})",
            taken.range().start,
            taken.range().end
        ),
        Some(address) => defmt::error!("kernel image CHANGED since boot: the page at {=u64:#x}", address),
    }
}
