//! The bits of a second-level paging entry, which differ from x86 CPU tables.
//!
//! There is no present bit: an entry is present when it grants read or
//! write. Bit 7 marks a superpage at levels 2 and 3, bit 11 (SNP) forces
//! snooping and is reserved unless ECAP.SC is set (QEMU 7.2 faults entries
//! that set it). QEMU checks the access bits at every level, so table
//! pointers grant both and leaves restrict.

use crate::memory::TablePage;

/// Read permission.
const READ: u64 = 1;
/// Write permission.
const WRITE: u64 = 1 << 1;
/// Superpage: the entry maps memory instead of pointing at a table.
const SUPERPAGE: u64 = 1 << 7;
/// Snoop behaviour for the mapped memory.
const SNOOP: u64 = 1 << 11;
/// Address bits 51:12.
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;
/// Index bits per level.
pub(super) const LEVEL_BITS: u32 = 9;

/// What a mapping lets the device do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Access {
    /// The device may read the memory.
    pub read: bool,
    /// The device may write the memory.
    pub write: bool,
}

impl Access {
    /// Device reads only (memory to device).
    pub const READ: Self = Self { read: true, write: false };
    /// Device writes only (device to memory).
    pub const WRITE: Self = Self { read: false, write: true };
    /// Both directions.
    pub const READ_WRITE: Self = Self { read: true, write: true };

    fn bits(self) -> u64 {
        (if self.read { READ } else { 0 }) | if self.write { WRITE } else { 0 }
    }
}

/// True if the entry maps or points at something.
pub(super) fn is_present(entry: u64) -> bool {
    entry & (READ | WRITE) != 0
}

/// True if the entry at `level` maps memory rather than a table.
pub(super) fn is_leaf(entry: u64, level: u8) -> bool {
    level == 1 || entry & SUPERPAGE != 0
}

/// The physical address an entry holds.
pub(super) fn address(entry: u64) -> u64 {
    entry & ADDRESS
}

/// The table a non-leaf entry points to.
pub(super) fn table(entry: u64) -> Option<TablePage> {
    TablePage::new(address(entry))
}

/// The access a leaf entry grants.
pub(super) fn access(entry: u64) -> Access {
    Access { read: entry & READ != 0, write: entry & WRITE != 0 }
}

/// An entry pointing at a lower-level table.
pub(super) fn table_entry(page: TablePage) -> u64 {
    page.address() | READ | WRITE
}

/// A leaf entry at `level` mapping `physical`.
pub(super) fn leaf_entry(physical: u64, level: u8, access: Access, snoop: bool) -> u64 {
    let superpage = if level > 1 { SUPERPAGE } else { 0 };
    let snoop = if snoop { SNOOP } else { 0 };
    physical & ADDRESS | superpage | snoop | access.bits()
}

/// Shift of the address bits a `level` entry translates.
pub(super) fn shift(level: u8) -> u32 {
    12 + LEVEL_BITS * (u32::from(level) - 1)
}

/// Bytes one entry at `level` covers.
pub(super) fn span(level: u8) -> u64 {
    1 << shift(level)
}

/// Index of the entry covering `iova` in a `level` table.
pub(super) fn index(iova: u64, level: u8) -> usize {
    (iova >> shift(level) & 0x1ff) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_encode_as_the_specification_says() {
        assert_eq!(leaf_entry(0x1234_5000, 1, Access::READ_WRITE, false), 0x1234_5003);
        assert_eq!(leaf_entry(0x4000_0000, 3, Access::READ, false), 0x4000_0081);
        assert_eq!(leaf_entry(0x20_0000, 2, Access::WRITE, true), 0x20_0882);
        let page = TablePage::new(0x7000).unwrap();
        assert_eq!(table_entry(page), 0x7003);
        assert_eq!(table(0x7003), Some(page));
        assert!(is_leaf(0x7003, 1) && !is_leaf(0x7003, 2) && is_leaf(0x81, 3));
        assert!(!is_present(0x7000) && is_present(0x7001));
        assert_eq!(access(0x7002), Access::WRITE);
    }

    #[test]
    fn levels_split_the_address() {
        assert_eq!((shift(1), shift(2), shift(3), shift(4)), (12, 21, 30, 39));
        assert_eq!(span(2), 0x20_0000);
        let iova = 0x7f_c060_3000u64;
        assert_eq!((index(iova, 4), index(iova, 3), index(iova, 2), index(iova, 1)), (0, 0x1ff, 3, 3));
    }
}
