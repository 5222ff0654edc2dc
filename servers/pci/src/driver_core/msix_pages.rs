//! Which pages of a BAR hold the MSI-X table and PBA, and what a holder's capability may cover.
//!
//! The MSI-X table says where the device's interrupts go; a holder that
//! could write it could aim them anywhere the remapping table lets its
//! source id reach, and could undo the masks the server sets. So the
//! server keeps the table and pending-bit array (PBA) pages for itself:
//! the holder's device-memory capability for a BAR covers only the pages
//! of it that hold neither. The PCI specification forbids other
//! registers in a naturally aligned 4 KiB range holding either
//! structure, so leaving whole pages out hides no register a compliant
//! device has. A capability is one run of pages: of a BAR with pages on
//! both sides of the MSI-X pages, the holder gets those before them
//! (where a device's registers start; QEMU's nvme, like most devices,
//! has only padding after its PBA), and the grant says which.

use capabilities::abi::PAGE_SIZE;
use capabilities::pci::{BarLocation, MsixInfo};

use super::bars::SizedBars;
use crate::bar::BarKind;

/// Bytes of one MSI-X table entry.
pub const ENTRY_BYTES: u64 = 16;

/// A run of pages in a BAR, counted from its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PageRun {
    /// The first page.
    pub first: u64,
    /// How many.
    pub pages: u64,
}

impl PageRun {
    fn end(&self) -> u64 {
        self.first.saturating_add(self.pages)
    }
}

/// Why no capability can be made for a BAR holding MSI-X structures:
/// every page before the last MSI-X page holds the table or the PBA,
/// and none follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OnlyMsix;

/// The pages `bytes` bytes at `location` span in BAR `index` of `pages` pages, if in it.
fn structure_pages(index: u8, pages: u64, location: BarLocation, bytes: u64) -> Option<PageRun> {
    if location.bar != index {
        return None;
    }
    let start = u64::from(location.offset);
    let first = start / PAGE_SIZE;
    let end = start.saturating_add(bytes).div_ceil(PAGE_SIZE).min(pages);
    (first < end).then(|| PageRun { first, pages: end - first })
}

/// The pages of BAR `index` (of `size` bytes) that hold MSI-X structures,
/// merged into one run from the first such page to the last (what lies
/// between two structures cannot be in the holder's one capability
/// either way); `None` if the BAR holds neither.
pub fn msix_run(index: u8, size: u64, msix: &MsixInfo) -> Option<PageRun> {
    let pages = size.div_ceil(PAGE_SIZE);
    let entries = u64::from(msix.table_size);
    let table = structure_pages(index, pages, msix.table, entries * ENTRY_BYTES);
    // One pending bit per entry, in 64-bit words.
    let pending = structure_pages(index, pages, msix.pending, entries.div_ceil(64) * 8);
    match (table, pending) {
        (Some(a), Some(b)) => {
            let first = a.first.min(b.first);
            Some(PageRun { first, pages: a.end().max(b.end()) - first })
        }
        (one, other) => one.or(other),
    }
}

/// The pages of BAR `index` (of `size` bytes) a holder's capability may
/// cover: all of them without MSI-X structures in it, else those before
/// them, else those after them.
pub fn holder_run(index: u8, size: u64, msix: Option<&MsixInfo>) -> Result<PageRun, OnlyMsix> {
    let pages = size.div_ceil(PAGE_SIZE);
    let Some(kept) = msix.and_then(|msix| msix_run(index, size, msix)) else {
        return Ok(PageRun { first: 0, pages });
    };
    if kept.first > 0 {
        Ok(PageRun { first: 0, pages: kept.first })
    } else if kept.end() < pages {
        Ok(PageRun { first: kept.end(), pages: pages - kept.end() })
    } else {
        Err(OnlyMsix)
    }
}

/// Where a function's MSI-X table lies in physical memory, in the whole
/// pages the server maps to program it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TablePlace {
    /// The first page's physical address.
    pub base: u64,
    /// Pages.
    pub pages: u64,
    /// Where the table starts in the first page.
    pub offset: u64,
}

/// Why the server cannot program a function's MSI-X table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TableError {
    /// Its BAR indicator names no assigned memory BAR.
    NoBar(u8),
    /// The table runs past the end of its BAR.
    BeyondBar(u8),
}

/// Where `msix`'s table lies, given the function's sized BARs.
pub fn table_place(bars: &SizedBars, msix: &MsixInfo) -> Result<TablePlace, TableError> {
    let index = msix.table.bar;
    let bar = bars
        .iter()
        .flatten()
        .find(|bar| bar.value.index == index && bar.value.kind != BarKind::Io && bar.value.base != 0)
        .ok_or(TableError::NoBar(index))?;
    let start = u64::from(msix.table.offset);
    let end = start + u64::from(msix.table_size) * ENTRY_BYTES;
    if end > bar.size {
        return Err(TableError::BeyondBar(index));
    }
    let first = (bar.value.base + start) & !(PAGE_SIZE - 1);
    let last = (bar.value.base + end).div_ceil(PAGE_SIZE) * PAGE_SIZE;
    Ok(TablePlace { base: first, pages: (last - first) / PAGE_SIZE, offset: bar.value.base + start - first })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msix(entries: u16, table: (u8, u32), pending: (u8, u32)) -> MsixInfo {
        MsixInfo {
            offset: 0x70,
            table_size: entries,
            table: BarLocation { bar: table.0, offset: table.1 },
            pending: BarLocation { bar: pending.0, offset: pending.1 },
            enabled: false,
            function_masked: false,
        }
    }

    #[test]
    fn a_bar_without_msix_structures_is_granted_whole() {
        // The MSI-X structures are in BAR 3; BAR 0 is all registers.
        let e1000e = msix(5, (3, 0), (3, 0x2000));
        assert_eq!(holder_run(0, 0x2_0000, Some(&e1000e)), Ok(PageRun { first: 0, pages: 32 }));
        assert_eq!(holder_run(0, 0x100, None), Ok(PageRun { first: 0, pages: 1 }));
    }

    #[test]
    fn a_bar_holding_only_the_table_and_pba_is_not_granted() {
        let e1000e = msix(5, (3, 0), (3, 0x2000));
        assert_eq!(msix_run(3, 0x4000, &e1000e), Some(PageRun { first: 0, pages: 3 }));
        // A BAR of nothing but the table's page, a page between and the PBA's.
        assert_eq!(holder_run(3, 0x3000, Some(&e1000e)), Err(OnlyMsix));
    }

    #[test]
    fn the_table_and_pba_after_the_registers_are_left_out() {
        // Registers in pages 0-1, a 257-entry table from 0x2000 (into a
        // second page by one entry), the PBA right after it, padding after them.
        let nvme = msix(257, (0, 0x2000), (0, 0x2000 + 257 * 16));
        assert_eq!(msix_run(0, 0x8000, &nvme), Some(PageRun { first: 2, pages: 2 }));
        assert_eq!(holder_run(0, 0x8000, Some(&nvme)), Ok(PageRun { first: 0, pages: 2 }));
    }

    #[test]
    fn the_table_before_the_registers_is_left_out() {
        let first = msix(8, (2, 0), (2, 0x800));
        assert_eq!(holder_run(2, 0x4000, Some(&first)), Ok(PageRun { first: 1, pages: 3 }));
    }

    #[test]
    fn with_pages_on_both_sides_the_holder_gets_those_before() {
        // Table in page 2, PBA in page 4: page 3 between them goes with them,
        // and pages 5-7 after them are not in the one capability either.
        let split = msix(16, (0, 0x2000), (0, 0x4000));
        assert_eq!(msix_run(0, 0x8000, &split), Some(PageRun { first: 2, pages: 3 }));
        assert_eq!(holder_run(0, 0x8000, Some(&split)), Ok(PageRun { first: 0, pages: 2 }));
    }

    #[test]
    fn the_table_is_found_in_its_bar_and_refused_outside_it() {
        use crate::bar::{Bar, BarValue};
        let memory = Bar {
            value: BarValue { index: 0, kind: BarKind::Memory64 { prefetchable: false }, base: 0xfe00_0000 },
            size: 0x4000,
        };
        let bars: SizedBars = [Some(memory), None, None, None, None, None];
        let place = table_place(&bars, &msix(257, (0, 0x2800), (0, 0x3800)));
        assert_eq!(place, Ok(TablePlace { base: 0xfe00_2000, pages: 2, offset: 0x800 }));
        assert_eq!(table_place(&bars, &msix(2048, (0, 0x2000), (0, 0x3800))), Err(TableError::BeyondBar(0)));
        assert_eq!(table_place(&bars, &msix(4, (3, 0), (3, 0x800))), Err(TableError::NoBar(3)));
    }

    #[test]
    fn structures_beyond_the_bar_are_clipped_to_it() {
        // A table a device claims past its BAR's end hides nothing the BAR decodes.
        let beyond = msix(2048, (0, 0x3000), (0, 0x1_0000));
        assert_eq!(holder_run(0, 0x4000, Some(&beyond)), Ok(PageRun { first: 0, pages: 3 }));
        let outside = msix(4, (0, 0x8000), (0, 0x9000));
        assert_eq!(holder_run(0, 0x4000, Some(&outside)), Ok(PageRun { first: 0, pages: 4 }));
    }
}
