//! The IOMMU server's VT-d decoders and its second-level page tables.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use iommu_server::capability::{AddressWidth, Capabilities};
use iommu_server::context::{ContextEntry, RootEntry};
use iommu_server::fault::FaultRecord;
use iommu_server::memory::{ENTRIES_PER_PAGE, TablePage, TablePages};
use iommu_server::pagetable::{Access, MapRequest, PageTableConfig, PageTableError, SecondLevelTable};
use iommu_server::range::IovaRange;

use crate::input::Input;

/// `iommu-decode`: 16-byte records read as a fault recording register, a
/// context entry, a root entry and a unit's capability registers.
pub fn decode(data: &[u8]) {
    let mut input = Input::new(data);
    while !input.is_empty() {
        let (low, high) = (input.u64(), input.u64());
        if let Some(record) = FaultRecord::decode(low, high) {
            assert_eq!(record.address, low & !0xfff);
            assert_eq!(record.source.source_id(), high as u16, "the requester id survives decoding");
        }
        let entry = ContextEntry { low, high };
        if let Some(context) = entry.decode() {
            assert!(entry.is_present());
            assert_eq!(entry.domain(), Some(context.domain));
            assert_eq!(ContextEntry::translated(context).decode(), Some(context), "context entries round-trip");
        }
        if let Some(page) = (RootEntry { low, high }).context_table() {
            assert_eq!(page.address() & 0xfff, 0);
        }
        if let Ok(caps) = Capabilities::decode(low, high) {
            assert!(caps.domain_count() >= 16);
            let _ = caps.check_register_window(0x1000);
            let _ = caps.width_for(input.u8());
            assert!(caps.widest().is_some_and(|width| caps.supports(width)));
            for width in AddressWidth::ALL {
                assert!(caps.input_bits(width) <= width.bits());
                if let Ok(config) = PageTableConfig::new(&caps, width, 39) {
                    assert!(caps.supports(config.width));
                }
            }
        }
    }
}

/// Table pages in a hash map, with a page budget and a record of entries
/// written but not yet flushed.
struct FuzzPages {
    pages: HashMap<u64, Box<[u64; ENTRIES_PER_PAGE]>>,
    dirty: BTreeSet<(u64, usize)>,
    /// Only a non-coherent unit flushes, so only then is `dirty` kept
    /// (tracking a coherent unit's millions of writes only costs time).
    track_dirty: bool,
    budget: usize,
    next: u64,
}

impl TablePages for FuzzPages {
    fn allocate(&mut self) -> Option<TablePage> {
        if self.pages.len() >= self.budget {
            return None;
        }
        let address = self.next;
        self.next += 0x1000;
        self.pages.insert(address, Box::new([0; ENTRIES_PER_PAGE]));
        TablePage::new(address)
    }

    fn release(&mut self, page: TablePage) {
        assert!(self.pages.remove(&page.address()).is_some(), "released {page:?}, which is not handed out");
        self.dirty.retain(|(address, _)| *address != page.address());
    }

    fn read(&self, page: TablePage, index: usize) -> u64 {
        self.pages.get(&page.address()).expect("read of a page not handed out")[index]
    }

    fn write(&mut self, page: TablePage, index: usize, value: u64) {
        self.pages.get_mut(&page.address()).expect("write to a page not handed out")[index] = value;
        if self.track_dirty {
            self.dirty.insert((page.address(), index));
        }
    }

    fn in_use(&self) -> usize {
        self.pages.len()
    }

    fn spare(&self) -> usize {
        self.budget.saturating_sub(self.pages.len())
    }

    fn grow(&mut self) -> bool {
        false
    }

    fn flush(&mut self, page: TablePage, first: usize, count: usize) {
        assert!(count > 0 && first + count <= ENTRIES_PER_PAGE);
        assert!(self.pages.contains_key(&page.address()), "flush of a page not handed out");
        for index in first..first + count {
            self.dirty.remove(&(page.address(), index));
        }
    }
}

/// What is mapped, as runs of pages: first page → (pages, first physical page, access).
#[derive(Default)]
struct Model(BTreeMap<u64, (u64, u64, Access)>);

impl Model {
    /// The physical page and access `page` maps to.
    fn lookup(&self, page: u64) -> Option<(u64, Access)> {
        let (start, (count, physical, access)) = self.0.range(..=page).next_back()?;
        (page - start < *count).then(|| (physical + (page - start), *access))
    }

    /// The first mapped page of `[start, start + count)`.
    fn first_in(&self, start: u64, count: u64) -> Option<u64> {
        if self.lookup(start).is_some() {
            return Some(start);
        }
        self.0.range(start..start.saturating_add(count)).next().map(|(page, _)| *page)
    }

    /// Removes `[start, start + count)`; returns how many pages were mapped.
    fn remove(&mut self, start: u64, count: u64) -> u64 {
        let end = start.saturating_add(count);
        let touching: Vec<u64> = self
            .0
            .range(..end)
            .filter(|(first, (pages, _, _))| first.saturating_add(*pages) > start)
            .map(|(first, _)| *first)
            .collect();
        let mut removed = 0;
        for first in touching {
            let Some((pages, physical, access)) = self.0.remove(&first) else { continue };
            let run_end = first + pages;
            if first < start {
                self.0.insert(first, (start - first, physical, access));
            }
            if run_end > end {
                self.0.insert(end, (run_end - end, physical + (end - first), access));
            }
            removed += run_end.min(end) - first.max(start);
        }
        removed
    }
}

/// Capability registers of units worth building tables for.
const UNITS: [(u64, u64); 3] = [
    // QEMU 7.2's default unit: 39-bit, 2 MiB and 1 GiB pages, not coherent.
    (0x00d2_008c_2226_0206, 0xf0_0f4a),
    // QEMU 7.2 with aw-bits=48.
    (0x00d2_008c_222f_0606, 0xf0_0f4a),
    // Coherent, no superpages.
    (0x00d2_0080_2226_0206, 0xf0_0f4b),
];

/// Pages of the I/O window most operations fall in: three 1 GiB regions,
/// so runs collide, share tables and sometimes qualify for superpages.
const WINDOW_PAGES: u64 = 3 << 18;

/// An I/O page number: mostly in the window, sometimes 2 MiB aligned,
/// sometimes anywhere.
fn page_number(input: &mut Input<'_>) -> u64 {
    match input.below(8) {
        0 => input.u64() >> 12,
        1..=2 => (u64::from(input.u32()) % WINDOW_PAGES) & !0x1ff,
        _ => u64::from(input.u32()) % WINDOW_PAGES,
    }
}

/// A page count: single pages, short runs, or whole superpages.
fn page_count(input: &mut Input<'_>) -> u64 {
    match input.below(16) {
        0 | 1 => 512 * (1 + input.below(3) as u64),
        2 => 1 << 18,
        3 | 4 => 1 + u64::from(input.u16() % 1200),
        5 => u64::from(input.u32()),
        _ => 1 + input.below(8) as u64,
    }
}

/// An access; occasionally none, which must be refused.
fn access(input: &mut Input<'_>) -> Access {
    [Access::READ, Access::WRITE, Access::READ_WRITE, Access { read: false, write: false }][input.below(4)]
}

/// Compares the table's translation of `page` with the model's.
fn check_page(table: &SecondLevelTable, pages: &FuzzPages, model: &Model, page: u64, offset: u64) {
    let Some(iova) = page.checked_mul(4096).map(|address| address + offset) else { return };
    let found = table.translate(pages, iova).map(|found| (found.physical, found.access));
    let expected = model.lookup(page).map(|(physical, access)| (physical * 4096 + offset, access));
    assert_eq!(found, expected, "translation of {iova:#x}");
}

/// `iommu-pagetable`: random map and unmap sequences, singly and in
/// batches, on a table for one of three unit kinds, checked against a
/// model after every operation; at the end every table page comes back.
pub fn pagetable(data: &[u8]) {
    let mut input = Input::new(data);
    let Some(mut subject) = Subject::new(&mut input) else { return };
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let touched = match input.below(4) {
            0 | 1 => subject.map(&mut input),
            2 => subject.map_batch(&mut input),
            _ => subject.unmap(&mut input),
        };
        subject.check(&mut input, &touched);
    }
    subject.unmap_everything();
}

/// A table under test, the pages it lives in, and the model it must agree with.
struct Subject {
    table: SecondLevelTable,
    pages: FuzzPages,
    model: Model,
    /// Whether the unit snoops table writes, so that nothing needs flushing.
    coherent: bool,
}

impl Subject {
    /// An empty table for a unit, width and page budget drawn from `input`;
    /// `None` if the unit refuses the configuration or the budget is spent.
    fn new(input: &mut Input<'_>) -> Option<Self> {
        let (cap, ecap) = UNITS[input.below(UNITS.len())];
        let caps = Capabilities::decode(cap, ecap).expect("known-good capability registers");
        let width = if caps.supports(AddressWidth::Bits48) && input.bool() {
            AddressWidth::Bits48
        } else {
            AddressWidth::Bits39
        };
        let host_width = [39, 46, 52][input.below(3)];
        let config = PageTableConfig::new(&caps, width, host_width).ok()?;
        let budget = [3, 8, 64, 4096][input.below(4)];
        let mut pages = FuzzPages {
            pages: HashMap::new(),
            dirty: BTreeSet::new(),
            track_dirty: !caps.coherent,
            budget,
            next: 0x10_0000,
        };
        let table = SecondLevelTable::new(&mut pages, config).ok()?;
        Some(Self { table, pages, model: Model::default(), coherent: caps.coherent })
    }

    /// Maps one run; returns the pages worth checking.
    fn map(&mut self, input: &mut Input<'_>) -> Vec<u64> {
        let (page, count) = (page_number(input), page_count(input));
        let physical_page = if input.bool() { page } else { u64::from(input.u32()) };
        let access = access(input);
        let iova = page.wrapping_mul(4096);
        let clash = self.model.first_in(page, count);
        match self.table.map(&mut self.pages, iova, physical_page.wrapping_mul(4096), count, access) {
            Ok(mapped) => {
                assert_eq!(clash, None, "mapped over page {clash:?}");
                assert_eq!(mapped.pages, count);
                self.model.0.insert(page, (count, physical_page, access));
            }
            Err(PageTableError::AlreadyMapped { iova }) => {
                assert!(self.model.lookup(iova >> 12).is_some(), "{iova:#x} reported mapped but is not");
            }
            Err(_) => {}
        }
        vec![page, page.saturating_add(count / 2), page.saturating_add(count.saturating_sub(1))]
    }

    /// Maps a batch of identity runs; returns the pages worth checking.
    fn map_batch(&mut self, input: &mut Input<'_>) -> Vec<u64> {
        let requests: Vec<MapRequest> = (0..1 + input.below(4))
            .map(|_| {
                let page = page_number(input);
                MapRequest {
                    iova: page.wrapping_mul(4096),
                    physical: page.wrapping_mul(4096),
                    pages: 1 + input.below(700) as u64,
                    access: Access::READ,
                }
            })
            .collect();
        let mut touched = Vec::new();
        if self.table.map_batch(&mut self.pages, &requests).is_ok() {
            for request in &requests {
                let page = request.iova >> 12;
                assert_eq!(self.model.first_in(page, request.pages), None, "a batch mapped over a mapping");
                self.model.0.insert(page, (request.pages, page, request.access));
                touched.push(page);
            }
        }
        touched
    }

    /// Unmaps one range, or a batch of them; returns the pages worth checking.
    fn unmap(&mut self, input: &mut Input<'_>) -> Vec<u64> {
        let ranges: Vec<(u64, u64)> =
            (0..1 + input.below(3)).map(|_| (page_number(input), page_count(input))).collect();
        let result = if ranges.len() == 1 {
            self.table.unmap(&mut self.pages, ranges[0].0.wrapping_mul(4096), ranges[0].1)
        } else {
            let batch: Vec<IovaRange> = ranges
                .iter()
                .map(|(page, count)| IovaRange { start: page.wrapping_mul(4096), pages: *count })
                .collect();
            self.table.unmap_batch(&mut self.pages, &batch)
        };
        if let Ok(unmapped) = result {
            let removed: u64 = ranges.iter().map(|(page, count)| self.model.remove(*page, *count)).sum();
            assert_eq!(unmapped.pages, removed, "unmap reported a different page count than was mapped");
            // The caller releases unlinked tables after its invalidation.
            unmapped.release_tables(&mut self.pages);
        }
        ranges.iter().map(|(page, _)| *page).collect()
    }

    /// After an operation: nothing left unflushed, and the `touched` pages
    /// and a few drawn from `input` translate as the model says.
    fn check(&self, input: &mut Input<'_>, touched: &[u64]) {
        if !self.coherent {
            assert!(self.pages.dirty.is_empty(), "entries written and never flushed on a non-coherent unit");
        }
        for page in touched {
            check_page(&self.table, &self.pages, &self.model, *page, 0x123);
        }
        for _ in 0..4 {
            check_page(&self.table, &self.pages, &self.model, u64::from(input.u32()) % WINDOW_PAGES, 0);
        }
    }

    /// Unmaps every run the model holds, then releases the table: every
    /// table page must come back.
    fn unmap_everything(mut self) {
        let runs: Vec<(u64, u64)> = self.model.0.iter().map(|(page, (count, _, _))| (*page, *count)).collect();
        for (page, count) in runs {
            check_page(&self.table, &self.pages, &self.model, page, 0);
            let unmapped = self.table.unmap(&mut self.pages, page * 4096, count);
            // A run may be half of a superpage only if it was mapped that way,
            // which the model never does, so every run unmaps.
            assert!(matches!(&unmapped, Ok(u) if u.pages == count), "unmapping run {page:#x}+{count}: {unmapped:?}");
            if let Ok(unmapped) = unmapped {
                unmapped.release_tables(&mut self.pages);
            }
            self.model.remove(page, count);
        }
        // A map that ran out of table pages leaves the tables it linked empty
        // (runs may reach past the window), and one unmap unlinks at most
        // MAX_UNLINKED tables: unmapping the whole width takes them all.
        let width_pages = 1u64 << (self.table.config().input_bits.min(63) - 12);
        loop {
            let Ok(unmapped) = self.table.unmap(&mut self.pages, 0, width_pages) else { break };
            let more = unmapped.unlinked.len() == iommu_server::pagetable::MAX_UNLINKED;
            unmapped.release_tables(&mut self.pages);
            if !more {
                break;
            }
        }
        assert_eq!(self.pages.pages.len(), 1, "every table emptied by unmapping was released");
        self.table.release(&mut self.pages);
        assert!(self.pages.pages.is_empty());
    }
}
