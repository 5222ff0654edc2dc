//! Read-only walks over part of a table: what a range already holds.

use super::entry;
use crate::memory::{TablePage, TablePages};

/// One entry of a table that an address range touches.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    /// Index in the table.
    pub(super) index: usize,
    /// First address the entry covers.
    pub(super) base: u64,
    /// The part of the range inside the entry: `start..end`.
    pub(super) start: u64,
    pub(super) end: u64,
}

impl Slot {
    /// True if the range covers the whole entry.
    pub(super) fn whole(&self, level: u8) -> bool {
        self.start == self.base && self.end - self.base == entry::span(level)
    }
}

/// The entries of one `level` table that `start..end` touches; the range
/// lies within the table's own span.
pub(super) struct Slots {
    next: u64,
    end: u64,
    level: u8,
}

impl Slots {
    pub(super) fn new(start: u64, end: u64, level: u8) -> Self {
        Self { next: start, end, level }
    }
}

impl Iterator for Slots {
    type Item = Slot;

    fn next(&mut self) -> Option<Slot> {
        if self.next >= self.end {
            return None;
        }
        let span = entry::span(self.level);
        let base = self.next & !(span - 1);
        let end = base.saturating_add(span).min(self.end);
        let slot = Slot { index: entry::index(self.next, self.level), base, start: self.next, end };
        self.next = end;
        Some(slot)
    }
}

/// The first address in `start..end` that `table` (at `level`) maps.
pub(super) fn first_mapped(pages: &impl TablePages, table: TablePage, level: u8, start: u64, end: u64) -> Option<u64> {
    for slot in Slots::new(start, end, level) {
        let value = pages.read(table, slot.index);
        if !entry::is_present(value) {
            continue;
        }
        if entry::is_leaf(value, level) {
            return Some(slot.start);
        }
        let found = entry::table(value).and_then(|child| first_mapped(pages, child, level - 1, slot.start, slot.end));
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The first superpage in `start..end` that the range covers only in part.
pub(super) fn first_split(pages: &impl TablePages, table: TablePage, level: u8, start: u64, end: u64) -> Option<u64> {
    if level == 1 {
        // 4 KiB leaves cannot be split: nothing to read.
        return None;
    }
    for slot in Slots::new(start, end, level) {
        let value = pages.read(table, slot.index);
        if !entry::is_present(value) {
            continue;
        }
        if entry::is_leaf(value, level) {
            if !slot.whole(level) {
                return Some(slot.base);
            }
            continue;
        }
        let found = entry::table(value).and_then(|child| first_split(pages, child, level - 1, slot.start, slot.end));
        if found.is_some() {
            return found;
        }
    }
    None
}
