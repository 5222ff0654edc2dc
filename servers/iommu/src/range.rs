//! A run of 4 KiB pages of I/O virtual addresses.

use crate::memory::PAGE_SIZE;

/// Pages `start .. start + pages * 4 KiB` of an I/O address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IovaRange {
    /// First address, 4 KiB aligned.
    pub start: u64,
    /// Number of 4 KiB pages.
    pub pages: u64,
}

impl IovaRange {
    /// The range, if `start` is aligned, `pages` nonzero and the end fits
    /// in 64 bits.
    pub fn new(start: u64, pages: u64) -> Option<Self> {
        let range = Self { start, pages };
        (start.is_multiple_of(PAGE_SIZE) && pages != 0 && range.end().is_some()).then_some(range)
    }

    /// One past the last byte, or `None` at the top of the address space.
    pub fn end(&self) -> Option<u64> {
        self.pages.checked_mul(PAGE_SIZE).and_then(|bytes| self.start.checked_add(bytes))
    }

    /// Last byte of the range.
    pub fn last(&self) -> u64 {
        // Adding the bytes less one first keeps a range that ends at the
        // top of the address space from saturating a page short.
        match self.pages.saturating_mul(PAGE_SIZE) {
            0 => self.start.saturating_sub(1),
            bytes => self.start.saturating_add(bytes - 1),
        }
    }

    /// True if the two ranges share a page.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.start <= other.last() && other.start <= self.last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn construction_checks_alignment_size_and_overflow() {
        assert_eq!(IovaRange::new(0x1000, 2).and_then(|range| range.end()), Some(0x3000));
        assert_eq!(IovaRange::new(0x1001, 2), None);
        assert_eq!(IovaRange::new(0x1000, 0), None);
        assert_eq!(IovaRange::new(u64::MAX - 0xfff, 1), None);
        assert_eq!(IovaRange::new(0xffff_ffff_ffff_e000, 1).map(|range| range.last()), Some(u64::MAX - 0x1000));
    }

    #[test]
    fn overlap_is_symmetric_and_page_exact() {
        let a = IovaRange { start: 0x1000, pages: 2 };
        let b = IovaRange { start: 0x3000, pages: 1 };
        let c = IovaRange { start: 0x2000, pages: 4 };
        assert!(!a.overlaps(&b) && !b.overlaps(&a));
        assert!(a.overlaps(&c) && c.overlaps(&a) && b.overlaps(&c));
    }
}
