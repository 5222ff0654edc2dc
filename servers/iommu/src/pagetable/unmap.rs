//! Unmapping I/O addresses, unlinking the table pages that become empty.
//!
//! An unlinked table page is not released here: the unit's paging-structure
//! caches may still point at it until the invalidation of the range has
//! completed, so the caller releases it then (Linux's gather list), and
//! keeps it if the invalidation fails.

use core::ops::RangeInclusive;

use heapless::Vec;

use super::entry;
use super::table::{PageTableError, SecondLevelTable};
use super::walk::{Slots, first_split};
use crate::memory::{ENTRIES_PER_PAGE, EntryWriter, PAGE_SIZE, TablePage, TablePages};
use crate::range::IovaRange;

/// Most table pages one unmap unlinks; a table emptied beyond that stays
/// linked, empty, until a later unmap or the domain's end.
pub const MAX_UNLINKED: usize = 64;

/// Table pages an unmap unlinked, to release once the invalidation that
/// covers them has completed.
pub type Unlinked = Vec<TablePage, MAX_UNLINKED>;

/// What an unmap did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unmapped {
    /// 4 KiB pages that were mapped and no longer are.
    pub pages: u64,
    /// Table pages unlinked, not yet released.
    pub unlinked: Unlinked,
}

impl Unmapped {
    /// Releases the unlinked table pages: only after the invalidation of
    /// the unmapped range completed.
    pub fn release_tables(self, pages: &mut impl TablePages) {
        for page in self.unlinked {
            pages.release(page);
        }
    }
}

impl SecondLevelTable {
    /// Unmaps `count` pages from `iova` (pages already unmapped are
    /// skipped). Refused, changing nothing, if the range covers part of a
    /// superpage. The caller invalidates the range afterwards, then
    /// releases the unlinked tables ([`Unmapped::release_tables`]).
    pub fn unmap<P: TablePages>(&mut self, pages: &mut P, iova: u64, count: u64) -> Result<Unmapped, PageTableError> {
        self.unmap_batch(pages, &[IovaRange { start: iova, pages: count }])
    }

    /// Unmaps several ranges: all of them or, if any is invalid or splits
    /// a superpage, none.
    pub fn unmap_batch<P: TablePages>(
        &mut self,
        pages: &mut P,
        ranges: &[IovaRange],
    ) -> Result<Unmapped, PageTableError> {
        for range in ranges {
            let range = self.check_iova(range.start, range.pages)?;
            let end = range.end().ok_or(PageTableError::Empty)?;
            if let Some(iova) = first_split(pages, self.root, self.levels(), range.start, end) {
                return Err(PageTableError::SplitsSuperpage { iova });
            }
        }
        let mut total = Unmapped::default();
        for range in ranges {
            self.clear_range(pages, *range, Some(&mut total));
        }
        Ok(total)
    }

    /// Clears every leaf in a checked range; unlinks emptied tables into
    /// `unlinking` if given (else they stay linked, empty). Returns the
    /// 4 KiB pages cleared.
    pub(super) fn clear_range<P: TablePages>(
        &mut self,
        pages: &mut P,
        range: IovaRange,
        unlinking: Option<&mut Unmapped>,
    ) -> u64 {
        let Some(end) = range.end() else {
            return 0;
        };
        let mut writer = EntryWriter::new(pages, self.config.coherent);
        let mut scratch = Unmapped::default();
        let (done, unlink) = match unlinking {
            Some(done) => (done, true),
            None => (&mut scratch, false),
        };
        let before = done.pages;
        clear(&mut writer, self.root, self.levels(), range.start, end, done, unlink);
        done.pages - before
    }
}

/// Clears `start..end` within `table` at `level`.
fn clear<P: TablePages>(
    writer: &mut EntryWriter<'_, P>,
    table: TablePage,
    level: u8,
    start: u64,
    end: u64,
    done: &mut Unmapped,
    unlink: bool,
) {
    for slot in Slots::new(start, end, level) {
        let value = writer.pages.read(table, slot.index);
        if !entry::is_present(value) {
            continue;
        }
        if entry::is_leaf(value, level) {
            // Superpages lie wholly in the range: the caller checked.
            writer.write(table, slot.index, 0);
            done.pages += entry::span(level) / PAGE_SIZE;
            continue;
        }
        let Some(child) = entry::table(value) else {
            continue;
        };
        clear(writer, child, level - 1, slot.start, slot.end, done, unlink);
        if !unlink || done.unlinked.is_full() {
            continue;
        }
        let cleared = entry::index(slot.start, level - 1)..=entry::index(slot.end - 1, level - 1);
        if slot.whole(level) || is_empty(writer.pages, child, level - 1, cleared) {
            writer.write(table, slot.index, 0);
            writer.finish();
            // Checked not full above.
            let _ = done.unlinked.push(child);
        }
    }
}

/// Whether `table`, at `level`, holds no present entry, `cleared` being
/// the indices just cleared in it. Where a present entry is likeliest is
/// read first, so that a table still in use is usually recognised in one
/// read rather than by a scan from index 0: inside the cleared indices a
/// table only partly cleared stays present (so they come first above
/// level 1, and are skipped at level 1, where everything in them was
/// cleared); beside them, the neighbouring mappings (addresses are
/// allocated next to each other).
fn is_empty(pages: &impl TablePages, table: TablePage, level: u8, cleared: RangeInclusive<usize>) -> bool {
    let (first, last) = (*cleared.start(), *cleared.end());
    let inside = if level == 1 { 0..0 } else { first..last + 1 };
    let after = (last + 1)..ENTRIES_PER_PAGE;
    let before = (0..first).rev();
    inside.chain(after).chain(before).all(|index| !entry::is_present(pages.read(table, index)))
}
