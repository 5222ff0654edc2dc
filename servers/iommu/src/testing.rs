//! Simulated table memory for the unit tests and, with the `testing` feature, the fuzz targets.

use std::collections::{BTreeMap, BTreeSet};

use crate::memory::{ENTRIES_PER_PAGE, TablePage, TablePages};

/// Table pages in a map, with a page budget and a record of flushes.
pub struct FakePages {
    /// Pages handed out, by address, with their entries.
    pub pages: BTreeMap<u64, Vec<u64>>,
    /// Addresses of pages released at least once.
    pub released: BTreeSet<u64>,
    /// Write-backs asked for: page, first entry, entries.
    pub flushes: Vec<(TablePage, usize, usize)>,
    /// Entries written and not yet flushed.
    pub dirty: BTreeSet<(u64, usize)>,
    /// Most pages handed out at once.
    pub budget: usize,
    /// Entries read so far.
    pub reads: std::cell::Cell<usize>,
    next: u64,
}

impl FakePages {
    /// Memory that hands out at most `budget` pages.
    pub fn new(budget: usize) -> Self {
        Self {
            pages: BTreeMap::new(),
            released: BTreeSet::new(),
            flushes: Vec::new(),
            dirty: BTreeSet::new(),
            budget,
            reads: std::cell::Cell::new(0),
            next: 0x10_0000,
        }
    }

    /// Pages handed out and not released.
    pub fn live(&self) -> usize {
        self.pages.len()
    }
}

impl TablePages for FakePages {
    fn in_use(&self) -> usize {
        self.live()
    }

    fn spare(&self) -> usize {
        self.budget.saturating_sub(self.live())
    }

    fn grow(&mut self) -> bool {
        false
    }

    fn allocate(&mut self) -> Option<TablePage> {
        if self.pages.len() >= self.budget {
            return None;
        }
        let address = self.next;
        self.next += 0x1000;
        self.pages.insert(address, vec![0; ENTRIES_PER_PAGE]);
        TablePage::new(address)
    }

    fn release(&mut self, page: TablePage) {
        assert!(self.pages.remove(&page.address()).is_some(), "released a page twice: {page:?}");
        self.dirty.retain(|(address, _)| *address != page.address());
        self.released.insert(page.address());
    }

    fn read(&self, page: TablePage, index: usize) -> u64 {
        assert!(index < ENTRIES_PER_PAGE);
        self.reads.set(self.reads.get() + 1);
        self.pages.get(&page.address()).expect("read of a page not handed out")[index]
    }

    fn write(&mut self, page: TablePage, index: usize, value: u64) {
        assert!(index < ENTRIES_PER_PAGE);
        self.pages.get_mut(&page.address()).expect("write to a page not handed out")[index] = value;
        self.dirty.insert((page.address(), index));
    }

    fn flush(&mut self, page: TablePage, first: usize, count: usize) {
        assert!(first + count <= ENTRIES_PER_PAGE && count > 0);
        assert!(self.pages.contains_key(&page.address()), "flush of a page not handed out");
        self.flushes.push((page, first, count));
        for index in first..first + count {
            self.dirty.remove(&(page.address(), index));
        }
    }
}
