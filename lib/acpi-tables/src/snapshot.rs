//! A copy of the firmware's ACPI tables, readable without any access to
//! physical memory.
//!
//! The kernel builds it at boot ([`build`]) and hands servers a read-only
//! frame holding it; a server parses the copy with the same code it would
//! use on firmware memory, through [`SnapshotMemory`], which answers reads
//! of the physical addresses the tables had. So no server needs a mapping
//! of firmware memory, and a corrupt snapshot is just another malformed
//! input for the parsers.
//!
//! Layout: [`MAGIC`], the table count, the length of a DSDT left out for
//! want of room (0: none) and the RSDP address, then one
//! directory entry per copied table (physical address, length, offset in
//! the snapshot), then the tables' bytes.

use core::fmt;

use crate::memory::TableMemory;
use crate::root::{RootError, RootTable};
use crate::rsdp::{Rsdp, RsdpError};
use crate::sdt::{HEADER_LENGTH, Sdt, SdtHeader, TableError};

/// First eight bytes of a snapshot.
pub const MAGIC: [u8; 8] = *b"ACPISNAP";

/// Largest snapshot the kernel builds (and so the most a server reads):
/// room for a large server's DSDT (QEMU's q35 with 100 root ports has one
/// of 30 KiB; real servers' reach a few hundred).
pub const SNAPSHOT_MAX: usize = 512 * 1024;

/// Most tables a snapshot holds (the RSDP and the root table included).
pub const MAX_TABLES: usize = 48;

const HEADER: usize = 24;
const ENTRY: usize = 16;
const RSDP_V1_LENGTH: u32 = 20;
/// Offset of the length field of a revision 2 RSDP.
const RSDP_LENGTH_FIELD: u64 = 20;

/// Why a snapshot could not be built or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// The RSDP is missing or invalid.
    Rsdp(RsdpError),
    /// The root table is invalid.
    Root(RootError),
    /// A table the root lists is invalid.
    Table(TableError),
    /// The output buffer cannot hold every table.
    OutOfRoom,
    /// More tables than [`MAX_TABLES`].
    TooManyTables,
    /// The bytes are not a snapshot (bad magic, count or directory).
    Malformed,
}

/// Why the snapshot's DSDT could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsdtError {
    /// The root table walk to the FADT failed.
    Root(RootError),
    /// The DSDT's header or checksum is wrong.
    Table(TableError),
    /// The DSDT, `length` bytes long, did not fit the snapshot.
    LeftOut {
        /// Its length field.
        length: u32,
    },
}

/// Why a server could not have a table from a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupError<E> {
    /// The snapshot itself is unusable.
    Snapshot(SnapshotError),
    /// The firmware has no table of this name.
    Missing(&'static str),
    /// The table of this name is there but malformed.
    Table(&'static str, E),
}

impl<E: fmt::Debug> fmt::Display for LookupError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::Snapshot(error) => write!(f, "the ACPI snapshot is unusable: {error:?}"),
            LookupError::Missing(name) => write!(f, "the ACPI tables have no {name}"),
            LookupError::Table(name, error) => write!(f, "{name} unusable: {error:?}"),
        }
    }
}

/// Finds the table called `name` in the snapshot `bytes` with `find` (the
/// table's own finder, such as `Dmar::find` over a caller's buffer);
/// `root` holds the root table meanwhile.
pub fn find_table<'a, T, E>(
    bytes: &'a [u8],
    root: &mut [u8],
    name: &'static str,
    find: impl FnOnce(&SnapshotMemory<'a>, &RootTable<'_>) -> Result<Option<T>, E>,
) -> Result<T, LookupError<E>> {
    match SnapshotMemory::find_in(bytes, root, find) {
        Ok(Ok(Some(table))) => Ok(table),
        Ok(Ok(None)) => Err(LookupError::Missing(name)),
        Ok(Err(error)) => Err(LookupError::Table(name, error)),
        Err(error) => Err(LookupError::Snapshot(error)),
    }
}

struct Writer<'o> {
    out: &'o mut [u8],
    count: usize,
    data: usize,
}

impl Writer<'_> {
    /// Copies `length` bytes of firmware memory at `physical` in and
    /// records them in the directory; returns the copy.
    fn copy(&mut self, memory: &impl TableMemory, physical: u64, length: u32) -> Result<&[u8], SnapshotError> {
        if self.count == MAX_TABLES {
            return Err(SnapshotError::TooManyTables);
        }
        let start = self.data;
        let end = start.checked_add(length as usize).ok_or(SnapshotError::OutOfRoom)?;
        let target = self.out.get_mut(start..end).ok_or(SnapshotError::OutOfRoom)?;
        if !memory.read(physical, target) {
            return Err(SnapshotError::Table(TableError::Unreadable { address: physical }));
        }
        let entry = HEADER + self.count * ENTRY;
        let slot = self.out.get_mut(entry..entry + ENTRY).ok_or(SnapshotError::OutOfRoom)?;
        slot[..8].copy_from_slice(&physical.to_le_bytes());
        slot[8..12].copy_from_slice(&length.to_le_bytes());
        slot[12..16].copy_from_slice(&(start as u32).to_le_bytes());
        self.count += 1;
        self.data = end.next_multiple_of(8);
        Ok(&self.out[start..end])
    }

    /// Copies the whole table at `physical` (its header says how long).
    fn table(&mut self, memory: &impl TableMemory, physical: u64) -> Result<&[u8], SnapshotError> {
        let mut head = [0u8; HEADER_LENGTH];
        if !memory.read(physical, &mut head) {
            return Err(SnapshotError::Table(TableError::Unreadable { address: physical }));
        }
        let header = SdtHeader::parse(&head).map_err(SnapshotError::Table)?;
        self.copy(memory, physical, header.length)
    }
}

/// Copies the RSDP at `rsdp`, its root table and every table the root lists
/// into `out`; returns how many bytes of `out` the snapshot uses.
pub fn build(memory: &impl TableMemory, rsdp: u64, out: &mut [u8]) -> Result<usize, SnapshotError> {
    let pointer = Rsdp::read(memory, rsdp).map_err(SnapshotError::Rsdp)?;
    let (kind, root_address) = pointer.root_table();
    let directory_end = HEADER + MAX_TABLES * ENTRY;
    if out.len() < directory_end {
        return Err(SnapshotError::OutOfRoom);
    }
    out[..directory_end].fill(0);
    let mut writer = Writer { out, count: 0, data: directory_end };
    // Copy as many bytes as the RSDP declares (36 today, up to 64 allowed),
    // since `Rsdp::read` of the copy reads that many; a fixed 36 made a
    // longer RSDP unreadable in the snapshot (found by the acpi-root fuzz
    // target).
    let rsdp_length = if pointer.revision >= 2 { declared_length(memory, rsdp)? } else { RSDP_V1_LENGTH };
    writer.copy(memory, rsdp, rsdp_length)?;
    let mut entries = [0u64; MAX_TABLES];
    let listed = {
        let root_bytes = writer.table(memory, root_address)?;
        let root = RootTable::parse(kind, root_bytes).map_err(SnapshotError::Root)?;
        let mut listed = 0;
        for address in root.entries() {
            *entries.get_mut(listed).ok_or(SnapshotError::TooManyTables)? = address;
            listed += 1;
        }
        listed
    };
    let mut dsdt = None;
    for &address in &entries[..listed] {
        let table = writer.table(memory, address)?;
        if table.get(..4) == Some(&FADT_SIGNATURE[..]) {
            dsdt = dsdt_address(table);
        }
    }
    // The DSDT is no root-table entry: the FADT names it. The PCI server
    // reads its host bridges. A large one (a big machine's) is left out
    // rather than costing the tables every server needs; the header says
    // how long it was.
    let mut left_out = 0u32;
    if let Some(address) = dsdt {
        match writer.table(memory, address) {
            Ok(_) => {}
            Err(SnapshotError::OutOfRoom | SnapshotError::TooManyTables) => {
                left_out = declared_table_length(memory, address).unwrap_or(u32::MAX);
            }
            Err(error) => return Err(error),
        }
    }
    let (count, used) = (writer.count, writer.data);
    out[..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&(count as u32).to_le_bytes());
    out[12..16].copy_from_slice(&left_out.to_le_bytes());
    out[16..24].copy_from_slice(&rsdp.to_le_bytes());
    Ok(used)
}

/// The DSDT's signature.
const DSDT_SIGNATURE: [u8; 4] = *b"DSDT";
/// The FADT's signature.
const FADT_SIGNATURE: [u8; 4] = *b"FACP";
/// Offsets in the FADT of the DSDT's 32-bit address and of X_DSDT, its
/// 64-bit one (ACPI 6.5, table 5.9), which wins where it is set.
const FADT_DSDT: usize = 40;
const FADT_X_DSDT: usize = 140;

/// The length field of the table at `physical`, if readable.
fn declared_table_length(memory: &impl TableMemory, physical: u64) -> Option<u32> {
    let mut head = [0u8; HEADER_LENGTH];
    memory.read(physical, &mut head).then(|| SdtHeader::parse(&head).ok().map(|header| header.length)).flatten()
}

/// The DSDT's address the FADT `fadt` gives, if any.
pub fn dsdt_address(fadt: &[u8]) -> Option<u64> {
    let field = |at: usize, width: usize| {
        fadt.get(at..at + width).map(|bytes| bytes.iter().rev().fold(0u64, |value, &byte| value << 8 | u64::from(byte)))
    };
    field(FADT_X_DSDT, 8).filter(|&address| address != 0).or(field(FADT_DSDT, 4)).filter(|&address| address != 0)
}

/// The length field of the revision 2 RSDP at `rsdp` (which `Rsdp::read`
/// has already read and checked).
fn declared_length(memory: &impl TableMemory, rsdp: u64) -> Result<u32, SnapshotError> {
    let unreadable = SnapshotError::Rsdp(RsdpError::Unreadable { address: rsdp });
    let mut field = [0u8; 4];
    let at = rsdp.checked_add(RSDP_LENGTH_FIELD).ok_or(unreadable)?;
    if !memory.read(at, &mut field) {
        return Err(unreadable);
    }
    Ok(u32::from_le_bytes(field))
}

/// Reads a snapshot as the physical memory it copied.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotMemory<'a> {
    bytes: &'a [u8],
    count: usize,
    rsdp: u64,
    dsdt_left_out: u32,
}

impl<'a> SnapshotMemory<'a> {
    /// Checks the header and directory of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Result<Self, SnapshotError> {
        if bytes.len() < HEADER + MAX_TABLES * ENTRY || bytes[..8] != MAGIC {
            return Err(SnapshotError::Malformed);
        }
        let count = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        if count == 0 || count > MAX_TABLES {
            return Err(SnapshotError::Malformed);
        }
        let mut rsdp = [0u8; 8];
        rsdp.copy_from_slice(&bytes[16..24]);
        let dsdt_left_out = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        let snapshot = Self { bytes, count, rsdp: u64::from_le_bytes(rsdp), dsdt_left_out };
        if (0..count).any(|index| snapshot.entry(index).is_none()) {
            return Err(SnapshotError::Malformed);
        }
        Ok(snapshot)
    }

    /// The length of the DSDT [`build`] left out for want of room, if it did.
    pub fn dsdt_left_out(&self) -> Option<u32> {
        (self.dsdt_left_out != 0).then_some(self.dsdt_left_out)
    }

    /// The physical address the RSDP had, where parsing starts.
    pub fn rsdp_address(&self) -> u64 {
        self.rsdp
    }

    /// The root table (XSDT or RSDT), read into `buffer`.
    pub fn root<'b>(&self, buffer: &'b mut [u8]) -> Result<RootTable<'b>, SnapshotError> {
        let pointer = Rsdp::read(self, self.rsdp).map_err(SnapshotError::Rsdp)?;
        let (kind, address) = pointer.root_table();
        RootTable::read(self, kind, address, buffer).map_err(SnapshotError::Root)
    }

    /// Opens the snapshot in `bytes`, reads its root table into `root`, and
    /// hands both to `find` (a table's own `find`, typically).
    pub fn find_in<T>(
        bytes: &'a [u8],
        root: &mut [u8],
        find: impl FnOnce(&SnapshotMemory<'a>, &RootTable<'_>) -> T,
    ) -> Result<T, SnapshotError> {
        let tables = Self::new(bytes)?;
        let root = tables.root(root)?;
        Ok(find(&tables, &root))
    }

    /// The AML of the DSDT the snapshot's FADT names (its bytes after the
    /// header, checksum checked); `Ok(None)` if the firmware has no FADT
    /// or DSDT.
    pub fn dsdt(&self, root: &RootTable<'_>) -> Result<Option<&'a [u8]>, DsdtError> {
        let mut fadt = [0u8; 512];
        let found = root.find(self, FADT_SIGNATURE, &mut fadt).map_err(DsdtError::Root)?;
        let Some(address) = found.and_then(|fadt| dsdt_address(fadt.bytes())) else { return Ok(None) };
        let copied = (0..self.count).filter_map(|index| self.entry(index)).find(|(base, _)| *base == address);
        let Some((_, bytes)) = copied else {
            return match self.dsdt_left_out {
                0 => Ok(None),
                length => Err(DsdtError::LeftOut { length }),
            };
        };
        let table = Sdt::parse_signed(bytes, DSDT_SIGNATURE).map_err(DsdtError::Table)?;
        Ok(table.bytes().get(HEADER_LENGTH..))
    }

    /// Directory entry `index`: (physical, bytes), if it lies in the snapshot.
    fn entry(&self, index: usize) -> Option<(u64, &'a [u8])> {
        let at = HEADER + index * ENTRY;
        let raw = self.bytes.get(at..at + ENTRY)?;
        let physical = u64::from_le_bytes(raw[..8].try_into().ok()?);
        let length = u32::from_le_bytes(raw[8..12].try_into().ok()?) as usize;
        let offset = u32::from_le_bytes(raw[12..16].try_into().ok()?) as usize;
        physical.checked_add(length as u64)?;
        Some((physical, self.bytes.get(offset..offset.checked_add(length)?)?))
    }
}

impl TableMemory for SnapshotMemory<'_> {
    fn read(&self, physical: u64, buffer: &mut [u8]) -> bool {
        (0..self.count).filter_map(|index| self.entry(index)).any(|(base, bytes)| {
            let source = physical
                .checked_sub(base)
                .and_then(|offset| usize::try_from(offset).ok())
                .and_then(|start| bytes.get(start..start.checked_add(buffer.len())?));
            match source {
                Some(source) => {
                    buffer.copy_from_slice(source);
                    true
                }
                None => false,
            }
        })
    }
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
