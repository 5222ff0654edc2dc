//! Mapping I/O addresses, one run or a batch, with superpages where possible.

use super::entry::{self, Access};
use super::table::{PageTableError, SecondLevelTable};
use super::walk::first_mapped;
use crate::memory::{ENTRIES_PER_PAGE, EntryWriter, PAGE_SIZE, TablePage, TablePages};
use crate::range::IovaRange;

/// One run to map: `pages` pages from `iova` onto `physical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapRequest {
    /// First I/O address.
    pub iova: u64,
    /// First physical address.
    pub physical: u64,
    /// Number of 4 KiB pages.
    pub pages: u64,
    /// What the device may do.
    pub access: Access,
}

/// What a map did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    /// The smallest range covering every page mapped: what caching-mode
    /// units need invalidated.
    pub range: IovaRange,
    /// 4 KiB pages mapped.
    pub pages: u64,
    /// Leaves written as 2 MiB or 1 GiB superpages.
    pub superpages: u64,
    /// Table pages allocated.
    pub tables_added: u64,
}

/// Why a run stopped part way; the precheck makes `Conflict` unreachable,
/// but a walk that makes no progress must still end.
enum StepError {
    OutOfPages,
    Conflict,
}

impl SecondLevelTable {
    /// Maps `pages` pages from `iova` onto `physical`. Nothing is changed
    /// unless the whole run can be mapped.
    pub fn map<P: TablePages>(
        &mut self,
        pages: &mut P,
        iova: u64,
        physical: u64,
        count: u64,
        access: Access,
    ) -> Result<Mapped, PageTableError> {
        self.map_batch(pages, &[MapRequest { iova, physical, pages: count, access }])
    }

    /// Maps several runs at once: all of them or, on any error, none.
    pub fn map_batch<P: TablePages>(
        &mut self,
        pages: &mut P,
        requests: &[MapRequest],
    ) -> Result<Mapped, PageTableError> {
        let mut hull: Option<(u64, u64)> = None;
        for (index, request) in requests.iter().enumerate() {
            let range = self.check_request(pages, request)?;
            let overlaps =
                |earlier: &MapRequest| IovaRange { start: earlier.iova, pages: earlier.pages }.overlaps(&range);
            if requests.iter().take(index).any(overlaps) {
                return Err(PageTableError::Overlapping { index });
            }
            let (low, high) = hull.unwrap_or((range.start, range.last()));
            hull = Some((low.min(range.start), high.max(range.last())));
        }
        let Some((low, high)) = hull else {
            return Err(PageTableError::Empty);
        };
        let mut done = Mapped { range: IovaRange { start: low, pages: ((high - low) >> 12) + 1 }, ..Mapped::ZERO };
        for (index, request) in requests.iter().enumerate() {
            if let Err((mapped, error)) = self.map_run(pages, request, &mut done) {
                let earlier = requests.get(..index).unwrap_or(&[]);
                // After running out of pages, the failing page's path may
                // hold freshly linked empty tables: clearing that page too
                // releases them. After a conflict, that page is someone
                // else's mapping and stays.
                let extra = u64::from(matches!(error, StepError::OutOfPages));
                let partial = IovaRange { start: request.iova, pages: (mapped + extra).min(request.pages) };
                let invalidate = self.remove_mapped(pages, earlier, partial);
                return Err(match error {
                    StepError::OutOfPages => PageTableError::OutOfTablePages { invalidate },
                    StepError::Conflict => PageTableError::AlreadyMapped { iova: request.iova + mapped * PAGE_SIZE },
                });
            }
        }
        Ok(done)
    }

    /// Validates one request and checks that its range is unmapped.
    fn check_request(&self, pages: &impl TablePages, request: &MapRequest) -> Result<IovaRange, PageTableError> {
        let range = self.check_iova(request.iova, request.pages)?;
        self.check_physical(request.physical, request.pages)?;
        if !request.access.read && !request.access.write {
            return Err(PageTableError::NoAccess);
        }
        let end = range.end().ok_or(PageTableError::BeyondAddressWidth { iova: range.start, pages: range.pages })?;
        match first_mapped(pages, self.root, self.levels(), range.start, end) {
            Some(iova) => Err(PageTableError::AlreadyMapped { iova }),
            None => Ok(range),
        }
    }

    /// Undoes what a failed batch mapped: the `earlier` runs whole and
    /// `partial` of the failing one; returns the addresses to invalidate.
    fn remove_mapped(
        &mut self,
        pages: &mut impl TablePages,
        earlier: &[MapRequest],
        partial: IovaRange,
    ) -> Option<IovaRange> {
        let runs = earlier.iter().map(|request| IovaRange { start: request.iova, pages: request.pages });
        let mut hull: Option<IovaRange> = None;
        for range in runs.chain(core::iter::once(partial)).filter(|range| range.pages != 0) {
            // Emptied tables stay linked: releasing them would need the
            // invalidation the caller has not made yet.
            self.clear_range(pages, range, None);
            hull = Some(match hull {
                None => range,
                Some(hull) => {
                    let start = hull.start.min(range.start);
                    IovaRange { start, pages: ((hull.last().max(range.last()) - start) >> 12) + 1 }
                }
            });
        }
        hull
    }

    /// Maps one checked run, superpages first where they fit.
    fn map_run<P: TablePages>(
        &mut self,
        pages: &mut P,
        request: &MapRequest,
        done: &mut Mapped,
    ) -> Result<(), (u64, StepError)> {
        let mut writer = EntryWriter::new(pages, self.config.coherent);
        let mut offset = 0;
        while offset < request.pages {
            let step = Step {
                iova: request.iova + offset * PAGE_SIZE,
                physical: request.physical + offset * PAGE_SIZE,
                remaining: request.pages - offset,
                access: request.access,
            };
            match self.map_step(&mut writer, step, done) {
                Ok(0) => return Err((offset, StepError::Conflict)),
                Ok(mapped) => offset += mapped,
                Err(error) => return Err((offset, error)),
            }
        }
        Ok(())
    }

    /// Descends to where the next leaves go, adding tables on the way, and
    /// writes as many leaves as fit in that table; returns the 4 KiB pages
    /// mapped.
    fn map_step<P: TablePages>(
        &self,
        writer: &mut EntryWriter<'_, P>,
        step: Step,
        done: &mut Mapped,
    ) -> Result<u64, StepError> {
        let mut table = self.root;
        let mut level = self.levels();
        loop {
            let index = entry::index(step.iova, level);
            let value = writer.pages.read(table, index);
            let span = entry::span(level);
            let superpage = level > 1
                && self.config.superpage_at(level)
                && (step.iova | step.physical) & (span - 1) == 0
                && step.remaining >= span / PAGE_SIZE;
            if level == 1 || (superpage && !entry::is_present(value)) {
                return Ok(self.write_leaves(writer, table, level, step, done));
            }
            if entry::is_present(value) && entry::is_leaf(value, level) {
                return Err(StepError::Conflict);
            }
            table = match entry::table(value).filter(|_| entry::is_present(value)) {
                Some(child) => child,
                None => {
                    let child = writer.pages.allocate().ok_or(StepError::OutOfPages)?;
                    writer.write(table, index, entry::table_entry(child));
                    done.tables_added += 1;
                    child
                }
            };
            level -= 1;
        }
    }

    /// Writes consecutive leaves at `level` from `step.iova` on, while
    /// they stay in `table`, fit the run and land on empty entries.
    ///
    /// 4 KiB leaves are written without reading the entry first: the
    /// precheck ([`SecondLevelTable::check_request`]) found every one of
    /// them empty, and a batch's runs do not overlap. Above level 1 an
    /// entry the precheck passed may still point at an (empty) table, so
    /// it is read.
    fn write_leaves<P: TablePages>(
        &self,
        writer: &mut EntryWriter<'_, P>,
        table: TablePage,
        level: u8,
        step: Step,
        done: &mut Mapped,
    ) -> u64 {
        let span_pages = entry::span(level) / PAGE_SIZE;
        let first = entry::index(step.iova, level);
        let mut written = 0;
        for index in first..ENTRIES_PER_PAGE {
            if (written + 1) * span_pages > step.remaining
                || (level > 1 && entry::is_present(writer.pages.read(table, index)))
            {
                break;
            }
            let physical = step.physical + written * span_pages * PAGE_SIZE;
            writer.write(table, index, entry::leaf_entry(physical, level, step.access, self.config.snoop));
            written += 1;
        }
        done.pages += written * span_pages;
        if level > 1 {
            done.superpages += written;
        }
        written * span_pages
    }
}

/// The rest of a run still to map.
#[derive(Debug, Clone, Copy)]
struct Step {
    iova: u64,
    physical: u64,
    remaining: u64,
    access: Access,
}

impl Mapped {
    const ZERO: Self = Self { range: IovaRange { start: 0, pages: 0 }, pages: 0, superpages: 0, tables_added: 0 };
}
