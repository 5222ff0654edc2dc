//! Allocating I/O virtual addresses within a DMA mask and a page quota.
//!
//! Each address space keeps a bounded, sorted list of ranges: allocations
//! charged to its quota and reservations (holes nothing may be mapped at,
//! like the interrupt window) that are not. Exhausting the list, the quota
//! or the window is an error code, never an allocation.

use core::fmt;

use heapless::Vec;

use crate::memory::PAGE_SIZE;
use crate::range::IovaRange;

/// Addresses DMA writes to are taken as interrupt requests (MSIs) rather
/// than memory accesses: never hand them out.
pub const INTERRUPT_WINDOW: IovaRange = IovaRange { start: 0xfee0_0000, pages: 0x100 };

/// Most pages of natural alignment [`IovaAllocator::allocate`] gives a
/// run: 2 MiB, the smallest superpage.
pub const NATURAL_ALIGNMENT_MAX: u64 = 512;

/// Why an address request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IovaError {
    /// The window is empty, unaligned, or starts above its end.
    Window,
    /// Zero pages were asked for.
    Empty,
    /// An address is not 4 KiB aligned, or an alignment not a power of two.
    Unaligned {
        /// The address or alignment.
        value: u64,
    },
    /// The range leaves the address space's window.
    OutsideWindow {
        /// First address.
        iova: u64,
        /// Pages asked for.
        pages: u64,
    },
    /// The range overlaps an allocation or reservation.
    Overlap {
        /// First address asked for.
        iova: u64,
        /// Start of the range in the way.
        existing: u64,
    },
    /// The quota does not cover the pages.
    QuotaExceeded {
        /// Pages asked for.
        requested: u64,
        /// Pages left in the quota.
        available: u64,
    },
    /// No free run of that many pages (with that alignment) is left.
    Exhausted {
        /// Pages asked for.
        pages: u64,
    },
    /// The list of ranges is full.
    TooManyRanges {
        /// Its capacity.
        capacity: usize,
    },
    /// No allocation starts at that address.
    NotAllocated {
        /// The address given.
        iova: u64,
    },
}

impl fmt::Display for IovaError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Window => formatter.write_str("invalid I/O address window"),
            Self::Empty => formatter.write_str("zero pages"),
            Self::Unaligned { value } => write!(formatter, "{value:#x} is not aligned"),
            Self::OutsideWindow { iova, pages } => write!(formatter, "{pages} pages at {iova:#x} leave the window"),
            Self::Overlap { iova, existing } => write!(formatter, "{iova:#x} overlaps the range at {existing:#x}"),
            Self::QuotaExceeded { requested, available } => {
                write!(formatter, "{requested} pages asked for, {available} left in the quota")
            }
            Self::Exhausted { pages } => write!(formatter, "no free run of {pages} pages"),
            Self::TooManyRanges { capacity } => write!(formatter, "all {capacity} ranges in use"),
            Self::NotAllocated { iova } => write!(formatter, "nothing allocated at {iova:#x}"),
        }
    }
}

/// One range of the address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// The addresses.
    pub range: IovaRange,
    /// A hole, not an allocation: not charged, cannot be freed.
    pub reserved: bool,
}

/// The I/O addresses of one address space: a window, a quota, and up to
/// `N` ranges.
#[derive(Debug, Clone)]
pub struct IovaAllocator<const N: usize> {
    first: u64,
    last: u64,
    quota: u64,
    used: u64,
    regions: Vec<Region, N>,
}

impl<const N: usize> IovaAllocator<N> {
    /// Addresses `first..=last` (4 KiB aligned, `last` the final byte of a
    /// page), at most `quota` pages allocated at once. The interrupt window
    /// is reserved if it falls inside.
    pub fn new(first: u64, last: u64, quota: u64) -> Result<Self, IovaError> {
        if !first.is_multiple_of(PAGE_SIZE) || last & 0xfff != 0xfff || last < first {
            return Err(IovaError::Window);
        }
        let mut allocator = Self { first, last, quota, used: 0, regions: Vec::new() };
        if INTERRUPT_WINDOW.start >= first && INTERRUPT_WINDOW.last() <= last {
            allocator.reserve(INTERRUPT_WINDOW.start, INTERRUPT_WINDOW.pages)?;
        }
        Ok(allocator)
    }

    /// The addresses a device with a `bits`-bit DMA mask reaches (28 for
    /// QEMU's edu device), leaving out page 0 so that a device handed a
    /// null address faults instead of reaching memory.
    pub fn for_dma_mask(bits: u8, quota: u64) -> Result<Self, IovaError> {
        let last = if bits >= 64 { u64::MAX } else { (1u64 << bits).wrapping_sub(1) };
        Self::new(PAGE_SIZE, last, quota)
    }

    /// Pages allocated (reservations excluded).
    pub fn used_pages(&self) -> u64 {
        self.used
    }

    /// Pages the quota still allows.
    pub fn available_pages(&self) -> u64 {
        self.quota - self.used
    }

    /// The ranges, by address.
    pub fn regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.iter()
    }

    /// What a device may be given: the window less the holes, as
    /// (first, last) byte addresses in address order.
    pub fn usable(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let holes = self.regions.iter().filter(|region| region.reserved).map(|region| region.range);
        let mut next = Some(self.first);
        holes.map(Some).chain([None]).filter_map(move |hole| {
            let start = next?;
            let (end, after) = match hole {
                Some(hole) => (hole.start.checked_sub(1), hole.last().checked_add(1)),
                None => (Some(self.last), None),
            };
            next = after;
            end.filter(|&end| end >= start).map(|end| (start, end))
        })
    }

    /// Checks that `pages` from `iova` lie in the window; returns the range.
    fn in_window(&self, iova: u64, pages: u64) -> Result<IovaRange, IovaError> {
        if pages == 0 {
            return Err(IovaError::Empty);
        }
        if !iova.is_multiple_of(PAGE_SIZE) {
            return Err(IovaError::Unaligned { value: iova });
        }
        let range = IovaRange { start: iova, pages };
        let last = pages.checked_mul(PAGE_SIZE).and_then(|bytes| iova.checked_add(bytes - 1));
        match last {
            Some(last) if iova >= self.first && last <= self.last => Ok(range),
            _ => Err(IovaError::OutsideWindow { iova, pages }),
        }
    }

    fn charge(&self, pages: u64) -> Result<(), IovaError> {
        if pages > self.available_pages() {
            return Err(IovaError::QuotaExceeded { requested: pages, available: self.available_pages() });
        }
        Ok(())
    }

    /// Inserts a checked, free region in address order.
    fn insert(&mut self, region: Region) -> Result<(), IovaError> {
        let position = self.regions.iter().position(|existing| existing.range.start > region.range.start);
        let position = position.unwrap_or(self.regions.len());
        self.regions.insert(position, region).map_err(|_| IovaError::TooManyRanges { capacity: N })?;
        if !region.reserved {
            self.used += region.range.pages;
        }
        Ok(())
    }

    fn check_free(&self, range: IovaRange) -> Result<(), IovaError> {
        match self.regions.iter().find(|region| region.range.overlaps(&range)) {
            Some(region) => Err(IovaError::Overlap { iova: range.start, existing: region.range.start }),
            None => Ok(()),
        }
    }

    /// Marks `pages` from `iova` as a hole; not charged to the quota.
    pub fn reserve(&mut self, iova: u64, pages: u64) -> Result<(), IovaError> {
        let range = self.in_window(iova, pages)?;
        self.check_free(range)?;
        self.insert(Region { range, reserved: true })
    }

    /// Allocates exactly `pages` from `iova`, an address the task chose.
    pub fn place(&mut self, iova: u64, pages: u64) -> Result<IovaRange, IovaError> {
        let range = self.in_window(iova, pages)?;
        self.check_free(range)?;
        self.charge(pages)?;
        self.insert(Region { range, reserved: false })?;
        Ok(range)
    }

    /// Allocates `pages` at the lowest free address that is a multiple of
    /// `alignment` pages (a power of two) and of the run's natural
    /// alignment: the largest power of two not above `pages`, up to
    /// [`NATURAL_ALIGNMENT_MAX`]. Natural alignment lets a 2 MiB run be
    /// one superpage, and lets one page-selective invalidation (which
    /// names an aligned power-of-two block) cover a power-of-two run
    /// exactly, instead of one per aligned piece.
    pub fn allocate(&mut self, pages: u64, alignment: u64) -> Result<IovaRange, IovaError> {
        if pages == 0 {
            return Err(IovaError::Empty);
        }
        if !alignment.is_power_of_two() {
            return Err(IovaError::Unaligned { value: alignment });
        }
        let natural = 1u64 << pages.min(NATURAL_ALIGNMENT_MAX).ilog2();
        let alignment = alignment.max(natural);
        self.charge(pages)?;
        let align_bytes = alignment.checked_mul(PAGE_SIZE).ok_or(IovaError::Unaligned { value: alignment })?;
        let bytes = pages.checked_mul(PAGE_SIZE).ok_or(IovaError::Exhausted { pages })?;
        let mut gap_start = Some(self.first);
        for boundary in self.regions.iter().map(|region| Some(region.range)).chain(core::iter::once(None)) {
            let gap_last = match boundary {
                Some(range) => range.start.checked_sub(1),
                None => Some(self.last),
            };
            if let (Some(start), Some(gap_last)) = (gap_start, gap_last) {
                let candidate = start.checked_next_multiple_of(align_bytes);
                let fits =
                    candidate.and_then(|candidate| candidate.checked_add(bytes - 1)).filter(|last| *last <= gap_last);
                if let (Some(candidate), Some(_)) = (candidate, fits) {
                    let range = IovaRange { start: candidate, pages };
                    self.insert(Region { range, reserved: false })?;
                    return Ok(range);
                }
            }
            gap_start = boundary.and_then(|range| range.last().checked_add(1));
        }
        Err(IovaError::Exhausted { pages })
    }

    /// Frees the allocation starting at `iova`; returns its range.
    pub fn free(&mut self, iova: u64) -> Result<IovaRange, IovaError> {
        let position = self
            .regions
            .iter()
            .position(|region| region.range.start == iova && !region.reserved)
            .ok_or(IovaError::NotAllocated { iova })?;
        let region = self.regions.remove(position);
        self.used -= region.range.pages;
        Ok(region.range)
    }
}

#[cfg(test)]
mod tests {
    use xorshift::XorShift;

    use super::*;

    #[test]
    fn edu_mask_window_and_quota() {
        let mut space = IovaAllocator::<8>::for_dma_mask(28, 16).unwrap();
        let first = space.allocate(3, 1).unwrap();
        assert_eq!(first, IovaRange { start: 0x2000, pages: 3 }, "naturally aligned to 2 pages");
        let aligned = space.allocate(2, 4).unwrap();
        assert_eq!(aligned.start, 0x8000);
        assert_eq!(space.used_pages(), 5);
        assert_eq!(space.allocate(12, 1), Err(IovaError::QuotaExceeded { requested: 12, available: 11 }));
        assert_eq!(space.place(0x0fff_f000, 1).unwrap().start, 0x0fff_f000);
        assert_eq!(space.place(0x1000_0000, 1), Err(IovaError::OutsideWindow { iova: 0x1000_0000, pages: 1 }));
        assert_eq!(space.place(0, 1), Err(IovaError::OutsideWindow { iova: 0, pages: 1 }));
        assert_eq!(space.free(0x8000), Ok(aligned));
        assert_eq!(space.free(0x8000), Err(IovaError::NotAllocated { iova: 0x8000 }));
        assert_eq!(space.allocate(1, 1).unwrap().start, 0x1000);
    }

    #[test]
    fn the_usable_ranges_are_the_window_less_its_holes_and_not_its_allocations() {
        let mut space = IovaAllocator::<8>::new(0x1000, 0xffff_ffff, 64).unwrap();
        space.allocate(4, 1).unwrap();
        let ranges: std::vec::Vec<(u64, u64)> = space.usable().collect();
        assert_eq!(ranges, [(0x1000, 0xfedf_ffff), (0xfef0_0000, 0xffff_ffff)], "the interrupt window is a hole");
        space.reserve(0x1000, 1).unwrap();
        space.reserve(0xfff0_0000, 0x100).unwrap();
        let ranges: std::vec::Vec<(u64, u64)> = space.usable().collect();
        assert_eq!(ranges, [(0x2000, 0xfedf_ffff), (0xfef0_0000, 0xffef_ffff)], "holes at either end");
        let edu = IovaAllocator::<8>::for_dma_mask(28, 16).unwrap();
        assert_eq!(edu.usable().collect::<std::vec::Vec<_>>(), [(0x1000, 0x0fff_ffff)], "below the interrupt window");
        let mut top = IovaAllocator::<8>::new(0x1000, u64::MAX, 16).unwrap();
        top.reserve(u64::MAX - 0xfff, 1).unwrap();
        assert_eq!(top.usable().last(), Some((0xfef0_0000, u64::MAX - 0x1000)), "a hole at the very top");
    }

    #[test]
    fn runs_are_naturally_aligned_up_to_two_mebibytes() {
        let mut space = IovaAllocator::<8>::for_dma_mask(32, 1 << 20).unwrap();
        assert_eq!(space.allocate(1, 1).unwrap().start, 0x1000);
        assert_eq!(space.allocate(64, 1).unwrap().start, 0x4_0000);
        assert_eq!(space.allocate(100, 1).unwrap().start, 0x8_0000, "aligned to 64 pages");
        assert_eq!(space.allocate(512, 1).unwrap().start, 0x20_0000);
        assert_eq!(space.allocate(2048, 1).unwrap().start, 0x40_0000, "2 MiB at most");
        assert_eq!(space.allocate(1, 1).unwrap().start, 0x2000, "small runs fill the gaps");
    }

    #[test]
    fn placement_conflicts_and_alignment_errors() {
        let mut space = IovaAllocator::<4>::for_dma_mask(32, 1 << 20).unwrap();
        space.place(0x10_0000, 16).unwrap();
        assert_eq!(space.place(0x10_f000, 1), Err(IovaError::Overlap { iova: 0x10_f000, existing: 0x10_0000 }));
        assert_eq!(space.place(0x10_0800, 1), Err(IovaError::Unaligned { value: 0x10_0800 }));
        assert_eq!(space.allocate(1, 3), Err(IovaError::Unaligned { value: 3 }));
        assert_eq!(space.allocate(0, 1), Err(IovaError::Empty));
        assert_eq!(space.place(0x1000, u64::MAX), Err(IovaError::OutsideWindow { iova: 0x1000, pages: u64::MAX }));
        assert_eq!(space.free(0xfee0_0000), Err(IovaError::NotAllocated { iova: 0xfee0_0000 }), "reservations stay");
        assert_eq!(space.place(0xfee0_0000, 1), Err(IovaError::Overlap { iova: 0xfee0_0000, existing: 0xfee0_0000 }));
        space.place(0x20_0000, 1).unwrap();
        space.place(0x30_0000, 1).unwrap();
        assert_eq!(space.place(0x40_0000, 1), Err(IovaError::TooManyRanges { capacity: 4 }));
        assert_eq!(space.allocate(1, 1), Err(IovaError::TooManyRanges { capacity: 4 }));
        assert_eq!(space.used_pages(), 18);
    }

    #[test]
    fn exhaustion_is_an_error() {
        let mut space = IovaAllocator::<8>::new(0x1000, 0x4fff, 100).unwrap();
        assert_eq!(space.allocate(3, 1).unwrap().start, 0x2000);
        assert_eq!(space.allocate(2, 1), Err(IovaError::Exhausted { pages: 2 }));
        assert_eq!(space.allocate(1, 1).unwrap().start, 0x1000);
        space.free(0x2000).unwrap();
        assert_eq!(space.allocate(2, 2).unwrap().start, 0x2000);
        assert_eq!(space.allocate(2, 2), Err(IovaError::Exhausted { pages: 2 }));
        assert_eq!(space.allocate(1, 1).unwrap().start, 0x4000);
        assert!(IovaAllocator::<1>::new(0x1000, 0xfff, 1).is_err());
        assert!(IovaAllocator::<1>::new(0x1800, 0x2fff, 1).is_err());
        assert!(IovaAllocator::<0>::for_dma_mask(32, 1).is_err(), "no room for the interrupt window");
        let top = IovaAllocator::<2>::for_dma_mask(64, 1).unwrap();
        assert_eq!(top.regions().count(), 1);
    }

    #[test]
    fn random_operations_keep_ranges_disjoint_and_charged() {
        let mut random = XorShift::new(0xdead_beef);
        let mut space = IovaAllocator::<32>::new(0x1000, 0xff_ffff, 2000).unwrap();
        let mut live: std::vec::Vec<IovaRange> = std::vec::Vec::new();
        for _ in 0..5000 {
            match random.below(3) {
                0 if !live.is_empty() => {
                    let victim = live.swap_remove(random.below(live.len() as u64) as usize);
                    assert_eq!(space.free(victim.start), Ok(victim));
                }
                1 => {
                    if let Ok(range) = space.place(random.below(0x1000) << 12, random.below(64) + 1) {
                        live.push(range);
                    }
                }
                _ => {
                    if let Ok(range) = space.allocate(random.below(64) + 1, 1 << random.below(4)) {
                        live.push(range);
                    }
                }
            }
            let charged: u64 = live.iter().map(|range| range.pages).sum();
            assert_eq!(space.used_pages(), charged);
            assert!(charged <= 2000);
            let regions: std::vec::Vec<_> = space.regions().collect();
            for pair in regions.windows(2) {
                assert!(pair[0].range.last() < pair[1].range.start, "sorted and disjoint");
            }
            assert!(regions.iter().all(|region| region.range.start >= 0x1000 && region.range.last() <= 0xff_ffff));
        }
    }
}
