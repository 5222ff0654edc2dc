//! x86-64 four-level page tables, built and walked through [`PhysMem`].
//!
//! Leaf entries carry the access rights; intermediate entries allow
//! everything their half of the address space allows (user entries are
//! user-accessible and writable), so the leaf alone decides.

use crate::phys::{Frame, PAGE_SIZE, PhysMem};

/// Page-table entry flag bits.
pub mod flags {
    /// The entry maps something.
    pub const PRESENT: u64 = 1 << 0;
    /// Writes are allowed.
    pub const WRITABLE: u64 = 1 << 1;
    /// Ring 3 may access it.
    pub const USER: u64 = 1 << 2;
    /// Write-through caching.
    pub const WRITE_THROUGH: u64 = 1 << 3;
    /// Caching disabled (with [`WRITE_THROUGH`]: uncached, for device memory).
    pub const NO_CACHE: u64 = 1 << 4;
    /// A 2 MiB (level 2) or 1 GiB (level 3) page instead of a table.
    pub const HUGE: u64 = 1 << 7;
    /// Survives address-space switches in the TLB (kernel mappings).
    pub const GLOBAL: u64 = 1 << 8;
    /// Software bit: the frame belongs to this address space and is freed
    /// with it.
    pub const OWNED: u64 = 1 << 9;
    /// Software bit: the leaf maps device memory, which the kernel never
    /// reads or writes on a task's behalf.
    pub const DEVICE: u64 = 1 << 10;
    /// Instruction fetches fault (needs EFER.NXE).
    pub const NO_EXECUTE: u64 = 1 << 63;
}

/// Physical-address bits of an entry.
pub const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Bytes mapped by a level-2 huge page.
pub const HUGE_PAGE_SIZE: u64 = 2 * 1024 * 1024;

/// First address of the kernel half; its top-level entries are shared.
pub const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;

/// Why a mapping operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MapError {
    /// The address is not aligned to the page size used.
    Misaligned,
    /// Something is already mapped there.
    AlreadyMapped,
    /// Nothing is mapped there.
    NotMapped,
    /// No frame for a page table could be had.
    OutOfMemory,
    /// The address is not canonical.
    NonCanonical,
}

/// What one virtual address translates to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Physical address of the byte.
    pub physical: u64,
    /// Flags of the leaf entry.
    pub flags: u64,
}

fn index(virt: u64, level: u32) -> usize {
    ((virt >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

fn is_canonical(virt: u64) -> bool {
    let top = virt >> 47;
    top == 0 || top == 0x1ffff
}

fn table_flags(virt: u64) -> u64 {
    if virt >= KERNEL_HALF { flags::PRESENT | flags::WRITABLE } else { flags::PRESENT | flags::WRITABLE | flags::USER }
}

/// Where new page-table frames come from (and where freed ones go).
pub trait TableFrames {
    /// A frame for a new table; its contents need not be zero.
    fn alloc_table(&mut self) -> Option<Frame>;
    /// Takes back a table frame that is no longer used.
    fn free_table(&mut self, frame: Frame);
}

/// Finds (creating where missing) the table at `level` that holds `virt`'s
/// entry, starting from the top-level table `root`.
fn table_for(
    mem: &mut impl PhysMem,
    tables: &mut impl TableFrames,
    root: Frame,
    virt: u64,
    level: u32,
) -> Result<Frame, MapError> {
    let mut table = root;
    for current in (level + 1..=4).rev() {
        let slot = index(virt, current) * 8;
        let entry = mem.read_u64(table, slot);
        table = if entry & flags::PRESENT == 0 {
            let new = tables.alloc_table().ok_or(MapError::OutOfMemory)?;
            mem.page_mut(new).fill(0);
            mem.write_u64(table, slot, new.address() | table_flags(virt));
            new
        } else if entry & flags::HUGE != 0 {
            return Err(MapError::AlreadyMapped);
        } else {
            Frame::containing(entry & ADDRESS_MASK)
        };
    }
    Ok(table)
}

/// Maps the 4 KiB page at `virt` to `frame` with `leaf_flags` (which must
/// include [`flags::PRESENT`]).
pub fn map(
    mem: &mut impl PhysMem,
    tables: &mut impl TableFrames,
    root: Frame,
    virt: u64,
    frame: Frame,
    leaf_flags: u64,
) -> Result<(), MapError> {
    map_at_level(mem, tables, root, virt, frame.address(), leaf_flags, 1)
}

/// Maps the 2 MiB page at `virt` to `physical` (both 2 MiB aligned).
pub fn map_huge(
    mem: &mut impl PhysMem,
    tables: &mut impl TableFrames,
    root: Frame,
    virt: u64,
    physical: u64,
    leaf_flags: u64,
) -> Result<(), MapError> {
    if !physical.is_multiple_of(HUGE_PAGE_SIZE) {
        return Err(MapError::Misaligned);
    }
    map_at_level(mem, tables, root, virt, physical, leaf_flags | flags::HUGE, 2)
}

fn map_at_level(
    mem: &mut impl PhysMem,
    tables: &mut impl TableFrames,
    root: Frame,
    virt: u64,
    physical: u64,
    leaf_flags: u64,
    level: u32,
) -> Result<(), MapError> {
    let size = PAGE_SIZE as u64 * if level == 2 { 512 } else { 1 };
    if !virt.is_multiple_of(size) {
        return Err(MapError::Misaligned);
    }
    if !is_canonical(virt) {
        return Err(MapError::NonCanonical);
    }
    let table = table_for(mem, tables, root, virt, level)?;
    let slot = index(virt, level) * 8;
    if mem.read_u64(table, slot) & flags::PRESENT != 0 {
        return Err(MapError::AlreadyMapped);
    }
    mem.write_u64(table, slot, (physical & ADDRESS_MASK) | leaf_flags);
    Ok(())
}

/// Removes the 4 KiB mapping at `virt`, returning what it mapped. Tables
/// that become empty stay until [`free_user_tables`].
pub fn unmap(mem: &mut impl PhysMem, root: Frame, virt: u64) -> Result<Translation, MapError> {
    if !virt.is_multiple_of(PAGE_SIZE as u64) {
        return Err(MapError::Misaligned);
    }
    let (table, slot) = leaf_slot(mem, root, virt).ok_or(MapError::NotMapped)?;
    let entry = mem.read_u64(table, slot);
    if entry & flags::HUGE != 0 {
        return Err(MapError::Misaligned);
    }
    mem.write_u64(table, slot, 0);
    Ok(Translation { physical: entry & ADDRESS_MASK, flags: entry & !ADDRESS_MASK })
}

/// The table and byte offset of the present leaf entry for `virt`.
fn leaf_slot(mem: &impl PhysMem, root: Frame, virt: u64) -> Option<(Frame, usize)> {
    if !is_canonical(virt) {
        return None;
    }
    let mut table = root;
    for level in (1..=4).rev() {
        let slot = index(virt, level) * 8;
        let entry = mem.read_u64(table, slot);
        if entry & flags::PRESENT == 0 {
            return None;
        }
        if level == 1 || entry & flags::HUGE != 0 {
            return Some((table, slot));
        }
        table = Frame::containing(entry & ADDRESS_MASK);
    }
    None
}

/// Translates `virt` through the tables at `root`.
pub fn translate(mem: &impl PhysMem, root: Frame, virt: u64) -> Option<Translation> {
    let mut table = root;
    for level in (1..=4).rev() {
        let entry = mem.read_u64(table, index(virt, level) * 8);
        if entry & flags::PRESENT == 0 || !is_canonical(virt) {
            return None;
        }
        if level == 1 || entry & flags::HUGE != 0 {
            let page_mask = (PAGE_SIZE as u64) << (9 * (level - 1));
            let page_mask = page_mask - 1;
            return Some(Translation {
                physical: (entry & ADDRESS_MASK & !page_mask) | (virt & page_mask),
                flags: entry & !ADDRESS_MASK,
            });
        }
        table = Frame::containing(entry & ADDRESS_MASK);
    }
    None
}

/// Calls `visit(virtual address, translation)` for every 4 KiB leaf of the
/// user half under `root`.
pub fn for_each_user_leaf(mem: &impl PhysMem, root: Frame, mut visit: impl FnMut(u64, Translation)) {
    fn walk(mem: &impl PhysMem, table: Frame, level: u32, base: u64, visit: &mut dyn FnMut(u64, Translation)) {
        for slot in 0..512u64 {
            let entry = mem.read_u64(table, slot as usize * 8);
            if entry & flags::PRESENT == 0 {
                continue;
            }
            let virt = base | (slot << (12 + 9 * (level - 1)));
            if level == 1 {
                visit(virt, Translation { physical: entry & ADDRESS_MASK, flags: entry & !ADDRESS_MASK });
            } else if entry & flags::HUGE == 0 {
                walk(mem, Frame::containing(entry & ADDRESS_MASK), level - 1, virt, visit);
            }
        }
    }
    for slot in 0..256u64 {
        let entry = mem.read_u64(root, slot as usize * 8);
        if entry & flags::PRESENT != 0 {
            walk(mem, Frame::containing(entry & ADDRESS_MASK), 3, slot << 39, &mut visit);
        }
    }
}

/// Frees every page-table frame of the user half under `root` (not the
/// frames the leaves map, and not `root` itself), and clears the user half.
/// Returns how many tables were freed.
pub fn free_user_tables(mem: &mut impl PhysMem, tables: &mut impl TableFrames, root: Frame) -> usize {
    fn free_level(mem: &mut impl PhysMem, tables: &mut impl TableFrames, table: Frame, level: u32) -> usize {
        let mut freed = 0;
        for slot in 0..512 {
            let entry = mem.read_u64(table, slot * 8);
            if entry & flags::PRESENT != 0 && entry & flags::HUGE == 0 && level > 1 {
                let child = Frame::containing(entry & ADDRESS_MASK);
                freed += free_level(mem, tables, child, level - 1);
                tables.free_table(child);
                freed += 1;
            }
        }
        freed
    }
    let mut freed = 0;
    for slot in 0..256 {
        let entry = mem.read_u64(root, slot * 8);
        if entry & flags::PRESENT != 0 {
            let child = Frame::containing(entry & ADDRESS_MASK);
            freed += free_level(mem, tables, child, 3);
            tables.free_table(child);
            freed += 1;
            mem.write_u64(root, slot * 8, 0);
        }
    }
    freed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestMemory, TestTables};

    #[test]
    fn maps_translates_and_unmaps_small_pages() {
        let mut mem = TestMemory::new(64);
        let mut tables = TestTables::new(&mut mem, 32);
        let root = tables.alloc_zeroed(&mut mem);
        let frame = Frame::containing(0x5000);
        let user = flags::PRESENT | flags::USER | flags::WRITABLE;
        map(&mut mem, &mut tables, root, 0x40_0000, frame, user).expect("maps");
        assert_eq!(tables.used(), 4, "the root and new levels 3, 2 and 1");
        let found = translate(&mem, root, 0x40_0123).expect("translates");
        assert_eq!(found.physical, 0x5123);
        assert_eq!(found.flags, user);
        assert_eq!(map(&mut mem, &mut tables, root, 0x40_0000, frame, user), Err(MapError::AlreadyMapped));
        assert_eq!(map(&mut mem, &mut tables, root, 0x40_0001, frame, user), Err(MapError::Misaligned));
        assert_eq!(unmap(&mut mem, root, 0x40_0000).map(|t| t.physical), Ok(0x5000));
        assert_eq!(translate(&mem, root, 0x40_0000), None);
        assert_eq!(unmap(&mut mem, root, 0x40_0000), Err(MapError::NotMapped));
    }

    #[test]
    fn user_leaves_are_visited_with_their_addresses() {
        let mut mem = TestMemory::new(64);
        let mut tables = TestTables::new(&mut mem, 32);
        let root = tables.alloc_zeroed(&mut mem);
        let user = flags::PRESENT | flags::USER;
        for (virt, frame) in [(0x40_0000u64, 1u64), (0x7f_ffff_f000, 2), (0x1000_0000, 3)] {
            map(&mut mem, &mut tables, root, virt, Frame::containing(frame * 0x1000), user).expect("maps");
        }
        let mut seen = Vec::new();
        for_each_user_leaf(&mem, root, |virt, t| seen.push((virt, t.physical)));
        seen.sort();
        assert_eq!(seen, [(0x40_0000, 0x1000), (0x1000_0000, 0x3000), (0x7f_ffff_f000, 0x2000)]);
    }

    #[test]
    fn huge_pages_translate_with_their_offset() {
        let mut mem = TestMemory::new(16);
        let mut tables = TestTables::new(&mut mem, 8);
        let root = tables.alloc_zeroed(&mut mem);
        let virt = KERNEL_HALF + 0x4000_0000;
        map_huge(&mut mem, &mut tables, root, virt, 0x4000_0000, flags::PRESENT).expect("maps");
        let found = translate(&mem, root, virt + 0x12_3456).expect("translates");
        assert_eq!(found.physical, 0x4012_3456);
        assert_eq!(
            map(&mut mem, &mut tables, root, virt + 0x1000, Frame::containing(0), flags::PRESENT),
            Err(MapError::AlreadyMapped),
            "a small page inside a huge page is refused"
        );
        assert_eq!(map_huge(&mut mem, &mut tables, root, virt, 0x1000, flags::PRESENT), Err(MapError::Misaligned));
    }

    #[test]
    fn non_canonical_addresses_never_map_or_translate() {
        let mut mem = TestMemory::new(16);
        let mut tables = TestTables::new(&mut mem, 8);
        let root = tables.alloc_zeroed(&mut mem);
        let bad = 0x0000_8000_0000_0000;
        assert_eq!(
            map(&mut mem, &mut tables, root, bad, Frame::containing(0), flags::PRESENT),
            Err(MapError::NonCanonical)
        );
        assert_eq!(translate(&mem, root, bad), None);
    }

    #[test]
    fn running_out_of_table_frames_is_an_error_and_tables_are_freed() {
        let mut mem = TestMemory::new(16);
        let mut tables = TestTables::new(&mut mem, 3);
        let root = tables.alloc_zeroed(&mut mem);
        let user = flags::PRESENT | flags::USER;
        assert_eq!(map(&mut mem, &mut tables, root, 0x1000, Frame::containing(0), user), Err(MapError::OutOfMemory));
        let freed = free_user_tables(&mut mem, &mut tables, root);
        assert_eq!(freed, 2, "the two tables made before running out are returned");
        assert_eq!(tables.used(), 1, "only the root is left");
        assert_eq!(translate(&mem, root, 0x1000), None);
    }
}
