//! Page digests of the kernel's read-only image, taken at boot and compared when the system ends.
//!
//! The boot section, code and read-only data never change once the
//! kernel runs on its own page tables, so a page whose digest differs at
//! the end was written by something that should not have: a device whose
//! DMA the IOMMU let through. Tests aim blocked DMA at the image (its
//! first page is the PVH entry at 1 MiB) and require the end-of-run check
//! to find it as it was, without a task ever reading kernel memory.

use heapless::Vec;

use crate::phys::PAGE_SIZE;

/// Pages the digest covers at most (2 MiB).
pub const MAX_PAGES: usize = 512;

/// Words of a page.
pub const PAGE_WORDS: usize = PAGE_SIZE / 8;

/// FNV-1a over the little-endian bytes of `words`: any one byte changed
/// changes it, which is all a check against stray writes needs.
pub fn digest(words: impl IntoIterator<Item = u64>) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in words.into_iter().flat_map(u64::to_le_bytes) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The digest of each page of a physical range, taken once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDigest {
    start: u64,
    pages: Vec<u64, MAX_PAGES>,
}

impl ImageDigest {
    /// Digests the pages of `[start, end)` (both page-aligned), reading
    /// each through `page` (its physical address to its words). `None` if
    /// the range is unaligned, empty or longer than [`MAX_PAGES`].
    pub fn take(start: u64, end: u64, mut page: impl FnMut(u64) -> [u64; PAGE_WORDS]) -> Option<Self> {
        let size = PAGE_SIZE as u64;
        if !start.is_multiple_of(size) || !end.is_multiple_of(size) || end <= start {
            return None;
        }
        let mut pages = Vec::new();
        for address in (start..end).step_by(PAGE_SIZE) {
            pages.push(digest(page(address))).ok()?;
        }
        Some(Self { start, pages })
    }

    /// The physical range digested.
    pub fn range(&self) -> core::ops::Range<u64> {
        self.start..self.start + (self.pages.len() * PAGE_SIZE) as u64
    }

    /// The first page (its physical address) whose digest now differs
    /// from the one taken, read through `page` as at [`Self::take`].
    pub fn first_changed(&self, mut page: impl FnMut(u64) -> [u64; PAGE_WORDS]) -> Option<u64> {
        self.range()
            .step_by(PAGE_SIZE)
            .zip(&self.pages)
            .find(|(address, taken)| digest(page(*address)) != **taken)
            .map(|(address, _)| address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages at 1 MiB, as a map from address to words.
    struct Memory(std::collections::BTreeMap<u64, [u64; PAGE_WORDS]>);

    impl Memory {
        fn new(pages: u64) -> Self {
            let filled = |n: u64| core::array::from_fn(|word| n * 1000 + word as u64);
            Self((0..pages).map(|n| (0x10_0000 + n * 0x1000, filled(n))).collect())
        }

        fn page(&self, address: u64) -> [u64; PAGE_WORDS] {
            self.0[&address]
        }
    }

    #[test]
    fn the_digest_is_fnv_1a_of_the_bytes() {
        assert_eq!(digest([]), 0xcbf2_9ce4_8422_2325, "the offset basis");
        // FNV-1a of the eight bytes "abcdefgh".
        assert_eq!(digest([u64::from_le_bytes(*b"abcdefgh")]), 0x25da_8c18_36a8_d66d);
    }

    #[test]
    fn an_untouched_image_shows_no_change() {
        let memory = Memory::new(4);
        let taken = ImageDigest::take(0x10_0000, 0x10_4000, |address| memory.page(address)).expect("four pages");
        assert_eq!(taken.range(), 0x10_0000..0x10_4000);
        assert_eq!(taken.first_changed(|address| memory.page(address)), None);
    }

    #[test]
    fn one_byte_written_anywhere_names_its_page() {
        let mut memory = Memory::new(4);
        let taken = ImageDigest::take(0x10_0000, 0x10_4000, |address| memory.page(address)).expect("four pages");
        for (address, word, bit) in [(0x10_0000, 0, 0), (0x10_2000, 200, 63), (0x10_3000, PAGE_WORDS - 1, 9)] {
            memory.0.get_mut(&address).unwrap()[word] ^= 1 << bit;
            assert_eq!(taken.first_changed(|at| memory.page(at)), Some(address), "page {address:#x}");
            memory.0.get_mut(&address).unwrap()[word] ^= 1 << bit;
            assert_eq!(taken.first_changed(|at| memory.page(at)), None, "put back");
        }
    }

    #[test]
    fn unaligned_empty_or_oversized_ranges_are_not_digested() {
        let memory = Memory::new(1);
        let read = |address| memory.page(address);
        assert_eq!(ImageDigest::take(0x10_0800, 0x10_1000, read), None);
        assert_eq!(ImageDigest::take(0x10_0000, 0x10_0000, read), None);
        let zero = |_| [0; PAGE_WORDS];
        assert!(ImageDigest::take(0, (MAX_PAGES * PAGE_SIZE) as u64, zero).is_some());
        assert_eq!(ImageDigest::take(0, ((MAX_PAGES + 1) * PAGE_SIZE) as u64, zero), None);
    }
}
