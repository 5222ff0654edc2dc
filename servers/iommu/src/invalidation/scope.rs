//! What an invalidation covers: context-cache and IOTLB scopes.

use crate::capability::Capabilities;
use crate::domain::DomainId;
use crate::range::IovaRange;

/// Which context-cache entries to invalidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextScope {
    /// Every entry.
    Global,
    /// Entries tagged with one domain.
    Domain(DomainId),
    /// The entry of one requester, tagged with the domain the hardware may
    /// have cached it under.
    Device {
        /// The cached entry's domain.
        domain: DomainId,
        /// The requester id.
        source_id: u16,
    },
}

/// Which IOTLB (and paging-structure cache) entries to invalidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IotlbScope {
    /// Every entry.
    Global,
    /// Entries of one domain.
    Domain(DomainId),
    /// The 2^order pages from `address` on in one domain.
    Pages {
        /// The domain.
        domain: DomainId,
        /// First address, aligned to 2^order pages.
        address: u64,
        /// Address mask: log2 of the page count.
        order: u8,
        /// Only leaf entries changed, so paging-structure caches may stay.
        leaf_only: bool,
    },
}

/// Whether an IOTLB invalidation also drains DMA reads and writes in
/// flight, which the unit supports per CAP.DRD and CAP.DWD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Drain {
    /// Drain reads.
    pub reads: bool,
    /// Drain writes.
    pub writes: bool,
}

impl Drain {
    /// Drain whatever the unit can, so that no DMA through a removed
    /// mapping completes after the invalidation does.
    pub fn supported(capabilities: &Capabilities) -> Self {
        Self { reads: capabilities.drain_reads, writes: capabilities.drain_writes }
    }
}

/// Naturally aligned power-of-two blocks of pages that exactly cover a
/// range, each at most 2^max_order pages: what page-selective
/// invalidations can name.
#[derive(Debug, Clone)]
pub struct AlignedBlocks {
    next: u64,
    remaining: u64,
    max_order: u8,
}

impl AlignedBlocks {
    /// The blocks covering `range`.
    pub fn new(range: IovaRange, max_order: u8) -> Self {
        Self { next: range.start >> 12, remaining: range.pages, max_order: max_order.min(63) }
    }
}

impl Iterator for AlignedBlocks {
    /// (first address, order).
    type Item = (u64, u8);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let alignment = self.next.trailing_zeros().min(63);
        let fits = 63 - self.remaining.leading_zeros();
        let order = alignment.min(fits).min(u32::from(self.max_order));
        let address = self.next << 12;
        self.next += 1 << order;
        self.remaining -= 1 << order;
        Some((address, order as u8))
    }
}

#[cfg(test)]
mod tests {
    use xorshift::XorShift;

    use super::*;

    #[test]
    fn blocks_cover_exactly_and_are_aligned() {
        let mut random = XorShift::new(0x2545_f491_4f6c_dd1d);
        for _ in 0..2000 {
            let state = random.next_u64();
            let start = (state & 0xffff) << 12;
            let pages = (state >> 20) % 5000 + 1;
            let max_order = (state >> 40) as u8 % 20;
            let mut covered = start;
            for (address, order) in AlignedBlocks::new(IovaRange { start, pages }, max_order) {
                assert_eq!(address, covered);
                assert!(order <= max_order);
                assert_eq!(address % (4096 << order), 0);
                covered += 4096 << order;
            }
            assert_eq!(covered, start + pages * 4096);
        }
    }

    #[test]
    fn typical_ranges() {
        let blocks: Vec<_> = AlignedBlocks::new(IovaRange { start: 0x1000, pages: 3 }, 18).collect();
        assert_eq!(blocks, [(0x1000, 0), (0x2000, 1)]);
        let blocks: Vec<_> = AlignedBlocks::new(IovaRange { start: 0x20_0000, pages: 512 }, 18).collect();
        assert_eq!(blocks, [(0x20_0000, 9)]);
        let blocks: Vec<_> = AlignedBlocks::new(IovaRange { start: 0, pages: 4 }, 1).collect();
        assert_eq!(blocks, [(0, 1), (0x2000, 1)]);
    }
}
