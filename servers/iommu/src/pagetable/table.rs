//! A second-level page table: its configuration, errors and look-ups.

use core::fmt;

use super::entry::{self, Access};
use crate::capability::{AddressWidth, Capabilities, Superpages};
use crate::memory::{PAGE_SIZE, TablePage, TablePages};
use crate::range::IovaRange;

/// How to build a table for one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageTableConfig {
    /// Width, and so depth, of the table.
    pub width: AddressWidth,
    /// I/O addresses must lie below 2^input_bits (min of width and MGAW).
    pub input_bits: u8,
    /// Physical addresses must lie below 2^physical_bits (the DMAR host
    /// address width).
    pub physical_bits: u8,
    /// Superpage sizes to use where alignment allows.
    pub superpages: Superpages,
    /// Set SNP in leaves (only where ECAP.SC makes it meaningful).
    pub snoop: bool,
    /// The unit snoops CPU caches on page walks; if not, every entry
    /// written is flushed through [`TablePages::flush`].
    pub coherent: bool,
}

impl PageTableConfig {
    /// The configuration for tables of `width` on a unit, for memory below
    /// 2^host_address_width.
    pub fn new(
        capabilities: &Capabilities,
        width: AddressWidth,
        host_address_width: u8,
    ) -> Result<Self, PageTableError> {
        if !capabilities.supports(width) {
            return Err(PageTableError::UnsupportedWidth);
        }
        Ok(Self {
            width,
            input_bits: capabilities.input_bits(width),
            physical_bits: host_address_width.min(52),
            superpages: capabilities.superpages,
            snoop: capabilities.snoop_control,
            coherent: capabilities.coherent,
        })
    }

    /// True if leaves at `level` may be superpages.
    pub(super) fn superpage_at(&self, level: u8) -> bool {
        match level {
            2 => self.superpages.two_mebibytes,
            3 => self.superpages.one_gibibyte,
            _ => false,
        }
    }
}

/// Why a page-table operation was refused. Refusals change nothing,
/// except [`PageTableError::OutOfTablePages`], which says what to
/// invalidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageTableError {
    /// The unit does not support the requested width.
    UnsupportedWidth,
    /// An address is not 4 KiB aligned.
    Unaligned {
        /// The address.
        address: u64,
    },
    /// Zero pages were asked for.
    Empty,
    /// The I/O addresses run past what the table translates.
    BeyondAddressWidth {
        /// First address.
        iova: u64,
        /// Pages asked for.
        pages: u64,
    },
    /// The physical addresses run past the host address width.
    BeyondPhysicalWidth {
        /// First address.
        physical: u64,
        /// Pages asked for.
        pages: u64,
    },
    /// The mapping would grant neither read nor write.
    NoAccess,
    /// A page of the range is already mapped.
    AlreadyMapped {
        /// The first mapped address found.
        iova: u64,
    },
    /// The range covers only part of a superpage.
    SplitsSuperpage {
        /// The superpage's first address.
        iova: u64,
    },
    /// Two ranges of one batch overlap.
    Overlapping {
        /// Position of the later range in the batch.
        index: usize,
    },
    /// A table page could not be allocated. What had been mapped was
    /// removed again, but a device may have used it meanwhile: invalidate
    /// `invalidate` before reusing its memory.
    OutOfTablePages {
        /// The addresses mapped and removed again.
        invalidate: Option<IovaRange>,
    },
}

impl fmt::Display for PageTableError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnsupportedWidth => formatter.write_str("the unit does not support that table width"),
            Self::Unaligned { address } => write!(formatter, "address {address:#x} is not 4 KiB aligned"),
            Self::Empty => formatter.write_str("zero pages"),
            Self::BeyondAddressWidth { iova, pages } => {
                write!(formatter, "{pages} pages at I/O address {iova:#x} exceed the address width")
            }
            Self::BeyondPhysicalWidth { physical, pages } => {
                write!(formatter, "{pages} pages at {physical:#x} exceed the host address width")
            }
            Self::NoAccess => formatter.write_str("a mapping must allow reads or writes"),
            Self::AlreadyMapped { iova } => write!(formatter, "I/O address {iova:#x} is already mapped"),
            Self::SplitsSuperpage { iova } => write!(formatter, "range splits the superpage at {iova:#x}"),
            Self::Overlapping { index } => write!(formatter, "batch range {index} overlaps an earlier one"),
            Self::OutOfTablePages { .. } => formatter.write_str("no table page left"),
        }
    }
}

/// Where an I/O address leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// The physical address the I/O address maps to.
    pub physical: u64,
    /// Bytes of the page (or superpage) holding it.
    pub page_size: u64,
    /// What the device may do there.
    pub access: Access,
}

/// One address space's second-level page table.
#[derive(Debug)]
pub struct SecondLevelTable {
    pub(super) root: TablePage,
    pub(super) config: PageTableConfig,
}

/// Checks that `pages` pages from `address` are aligned and lie below
/// 2^bits; returns the range.
fn check_window(address: u64, pages: u64, bits: u8) -> Result<IovaRange, PageTableError> {
    if !address.is_multiple_of(PAGE_SIZE) {
        return Err(PageTableError::Unaligned { address });
    }
    if pages == 0 {
        return Err(PageTableError::Empty);
    }
    let range = IovaRange { start: address, pages };
    match range.end() {
        Some(end) if bits >= 64 || end <= 1 << bits => Ok(range),
        _ => Err(PageTableError::BeyondAddressWidth { iova: address, pages }),
    }
}

impl SecondLevelTable {
    /// An empty table: every I/O address faults.
    pub fn new(pages: &mut impl TablePages, config: PageTableConfig) -> Result<Self, PageTableError> {
        let root = pages.allocate().ok_or(PageTableError::OutOfTablePages { invalidate: None })?;
        Ok(Self { root, config })
    }

    /// The top-level table, for context entries.
    pub fn root(&self) -> TablePage {
        self.root
    }

    /// The configuration the table was built with.
    pub fn config(&self) -> &PageTableConfig {
        &self.config
    }

    pub(super) fn levels(&self) -> u8 {
        self.config.width.levels()
    }

    /// Checks an I/O range against the table's width.
    pub(super) fn check_iova(&self, iova: u64, pages: u64) -> Result<IovaRange, PageTableError> {
        check_window(iova, pages, self.config.input_bits)
    }

    /// Checks a physical range against the host address width.
    pub(super) fn check_physical(&self, physical: u64, pages: u64) -> Result<(), PageTableError> {
        match check_window(physical, pages, self.config.physical_bits) {
            Err(PageTableError::BeyondAddressWidth { .. }) => {
                Err(PageTableError::BeyondPhysicalWidth { physical, pages })
            }
            other => other.map(|_| ()),
        }
    }

    /// Where `iova` leads, walking the table as the hardware does.
    pub fn translate(&self, pages: &impl TablePages, iova: u64) -> Option<Translation> {
        if self.config.input_bits < 64 && iova >> self.config.input_bits != 0 {
            return None;
        }
        let mut table = self.root;
        for level in (1..=self.levels()).rev() {
            let value = pages.read(table, entry::index(iova, level));
            if !entry::is_present(value) {
                return None;
            }
            if entry::is_leaf(value, level) {
                let page_size = entry::span(level);
                let physical = entry::address(value) + (iova & (page_size - 1));
                return Some(Translation { physical, page_size, access: entry::access(value) });
            }
            table = entry::table(value)?;
        }
        None
    }

    /// Releases every table page. Only once no context entry points at
    /// the table any more and that change has been invalidated.
    pub fn release(self, pages: &mut impl TablePages) {
        let levels = self.levels();
        release_tree(pages, self.root, levels);
    }
}

/// Releases `table` (at `level`) and every table below it.
fn release_tree(pages: &mut impl TablePages, table: TablePage, level: u8) {
    if level > 1 {
        for index in 0..crate::memory::ENTRIES_PER_PAGE {
            let value = pages.read(table, index);
            if entry::is_present(value)
                && !entry::is_leaf(value, level)
                && let Some(child) = entry::table(value)
            {
                release_tree(pages, child, level - 1);
            }
        }
    }
    pages.release(table);
}
