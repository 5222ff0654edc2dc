//! The 4 KiB pages VT-d tables live in, reached through a trait.

/// Entries of 64 bits in one table page.
pub const ENTRIES_PER_PAGE: usize = 512;
/// Bytes in a table page.
pub const PAGE_SIZE: u64 = 4096;

/// The physical address of a 4 KiB page holding a VT-d table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TablePage(u64);

impl TablePage {
    /// The page at `physical`, if it is 4 KiB aligned.
    pub fn new(physical: u64) -> Option<Self> {
        physical.is_multiple_of(PAGE_SIZE).then_some(Self(physical))
    }

    /// Its physical address.
    pub fn address(self) -> u64 {
        self.0
    }
}

/// Pages for VT-d tables, addressed physically and read and written as
/// 64-bit entries.
///
/// The server implements it over frames the kernel maps for it, charging
/// each page to the owning domain's quota; tests implement it over a map of
/// arrays. Callers only pass `index < 512`.
pub trait TablePages {
    /// A zeroed page whose zeroes the hardware can already see (written back
    /// from CPU caches on a non-coherent unit), or `None` when the quota or
    /// memory is exhausted.
    fn allocate(&mut self) -> Option<TablePage>;

    /// Takes back a page no tables point to any more. Hardware may still
    /// hold it in its paging-structure caches until the invalidation the
    /// operation reported has completed: do not reuse it before then.
    fn release(&mut self, page: TablePage);

    /// Entry `index` of `page`.
    fn read(&self, page: TablePage, index: usize) -> u64;

    /// Stores entry `index` of `page` with one 64-bit write, so hardware
    /// never sees half of it.
    fn write(&mut self, page: TablePage, index: usize, value: u64);

    /// Writes back the CPU cache lines holding entries `first..first + count`
    /// of `page`; called only for units that do not snoop (ECAP.C = 0).
    fn flush(&mut self, page: TablePage, first: usize, count: usize);

    /// Pages allocated and not released (for leak accounting).
    fn in_use(&self) -> usize;

    /// Pages [`Self::allocate`] can hand out without asking the kernel for
    /// more memory.
    fn spare(&self) -> usize;

    /// Asks the kernel for more memory; `false` if it gives none (the
    /// server's quota is spent).
    fn grow(&mut self) -> bool;
}

/// Writes table entries and, on a non-coherent unit, flushes each run of
/// consecutive entries from CPU caches once instead of entry by entry.
pub(crate) struct EntryWriter<'p, P: TablePages> {
    pub(crate) pages: &'p mut P,
    coherent: bool,
    pending: Option<(TablePage, usize, usize)>,
}

impl<'p, P: TablePages> EntryWriter<'p, P> {
    /// A writer for a unit that does (`coherent`) or does not snoop.
    pub(crate) fn new(pages: &'p mut P, coherent: bool) -> Self {
        Self { pages, coherent, pending: None }
    }

    /// Writes one entry.
    pub(crate) fn write(&mut self, page: TablePage, index: usize, value: u64) {
        self.pages.write(page, index, value);
        if self.coherent {
            return;
        }
        match self.pending {
            Some((current, first, end)) if current == page && index == end => {
                self.pending = Some((current, first, end + 1));
            }
            Some((current, first, end)) if current == page && index + 1 == first => {
                self.pending = Some((current, index, end));
            }
            _ => {
                self.finish();
                self.pending = Some((page, index, index + 1));
            }
        }
    }

    /// Flushes the run being collected.
    pub(crate) fn finish(&mut self) {
        if let Some((page, first, end)) = self.pending.take() {
            self.pages.flush(page, first, end - first);
        }
    }
}

impl<P: TablePages> Drop for EntryWriter<'_, P> {
    fn drop(&mut self) {
        // Every early return (errors included) still makes its writes
        // visible to a non-coherent unit.
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakePages;

    #[test]
    fn pages_must_be_aligned() {
        assert_eq!(TablePage::new(0x1000).map(TablePage::address), Some(0x1000));
        assert_eq!(TablePage::new(0x1001), None);
    }

    #[test]
    fn writer_coalesces_flushes_into_runs() {
        let mut pages = FakePages::new(4);
        let a = pages.allocate().unwrap();
        let b = pages.allocate().unwrap();
        {
            let mut writer = EntryWriter::new(&mut pages, false);
            for index in 3..7 {
                writer.write(a, index, 1);
            }
            writer.write(b, 1, 1);
            writer.write(b, 0, 1);
            writer.write(a, 9, 1);
        }
        assert_eq!(pages.flushes, [(a, 3, 4), (b, 0, 2), (a, 9, 1)]);
        let mut coherent = FakePages::new(1);
        let page = coherent.allocate().unwrap();
        EntryWriter::new(&mut coherent, true).write(page, 0, 5);
        assert!(coherent.flushes.is_empty());
        assert_eq!(coherent.read(page, 0), 5);
    }
}
