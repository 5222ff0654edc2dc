//! RSDT and XSDT: the lists of table addresses, and finding a table by signature.

use core::fmt;

use crate::bytes::{u32_at, u64_at};
use crate::memory::{TableMemory, read_table};
use crate::sdt::{HEADER_LENGTH, SdtHeader, Signature, TableError};
use crate::sdt::{Name, Sdt};

/// Which of the two root tables a list comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// ACPI 1.0 root table, 32-bit addresses.
    Rsdt,
    /// ACPI 2.0+ root table, 64-bit addresses.
    Xsdt,
}

impl RootKind {
    /// The table's signature.
    pub fn signature(self) -> Signature {
        match self {
            Self::Rsdt => *b"RSDT",
            Self::Xsdt => *b"XSDT",
        }
    }

    /// Bytes per entry.
    pub fn entry_size(self) -> usize {
        match self {
            Self::Rsdt => 4,
            Self::Xsdt => 8,
        }
    }
}

/// Why a root table or a look-up through it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootError {
    /// The root table itself is malformed or unreadable.
    Table(TableError),
    /// The body is not a whole number of entries.
    EntriesLength {
        /// Which root table.
        kind: RootKind,
        /// Bytes after the header.
        body: usize,
    },
    /// The table an entry points to could not be read or checked.
    Entry {
        /// Position of the entry in the root table.
        index: usize,
        /// Address the entry holds.
        address: u64,
        /// What went wrong with that table.
        error: TableError,
    },
}

impl From<TableError> for RootError {
    fn from(error: TableError) -> Self {
        Self::Table(error)
    }
}

impl fmt::Display for RootError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Table(error) => write!(formatter, "root table: {error}"),
            Self::EntriesLength { kind, body } => write!(
                formatter,
                "{} body of {body} bytes is not a whole number of {}-byte entries",
                Name(&kind.signature()),
                kind.entry_size()
            ),
            Self::Entry { index, address, error } => {
                write!(formatter, "root table entry {index} at {address:#x}: {error}")
            }
        }
    }
}

/// A checked RSDT or XSDT.
#[derive(Debug, Clone, Copy)]
pub struct RootTable<'a> {
    kind: RootKind,
    entries: &'a [u8],
}

impl<'a> RootTable<'a> {
    /// Checks `bytes` as a root table of the given kind.
    pub fn parse(kind: RootKind, bytes: &'a [u8]) -> Result<Self, RootError> {
        let table = Sdt::parse_signed(bytes, kind.signature())?;
        let entries = table.body();
        if entries.len() % kind.entry_size() != 0 {
            return Err(RootError::EntriesLength { kind, body: entries.len() });
        }
        Ok(Self { kind, entries })
    }

    /// Reads the root table at `physical` into `buffer` and checks it.
    pub fn read(
        memory: &impl TableMemory,
        kind: RootKind,
        physical: u64,
        buffer: &'a mut [u8],
    ) -> Result<Self, RootError> {
        let table = read_table(memory, physical, buffer)?;
        Self::parse(kind, table.bytes())
    }

    /// Which root table this is.
    pub fn kind(&self) -> RootKind {
        self.kind
    }

    /// Number of table addresses.
    pub fn len(&self) -> usize {
        self.entries.len() / self.kind.entry_size()
    }

    /// True if the table lists no tables.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The table addresses, in order.
    pub fn entries(&self) -> impl Iterator<Item = u64> + 'a {
        let (entries, kind) = (self.entries, self.kind);
        (0..self.len()).filter_map(move |index| {
            let offset = index.checked_mul(kind.entry_size())?;
            match kind {
                RootKind::Rsdt => u32_at(entries, offset).map(u64::from),
                RootKind::Xsdt => u64_at(entries, offset),
            }
        })
    }

    /// Finds the first table with `signature`, reads it into `buffer` and
    /// checks it. Null entries are skipped; an entry that cannot be read is
    /// an error, since the table sought might be the one behind it.
    pub fn find<'b>(
        &self,
        memory: &impl TableMemory,
        signature: Signature,
        buffer: &'b mut [u8],
    ) -> Result<Option<Sdt<'b>>, RootError> {
        for (index, address) in self.entries().enumerate() {
            if address == 0 {
                continue;
            }
            let mut head = [0u8; HEADER_LENGTH];
            if !memory.read(address, &mut head) {
                return Err(RootError::Entry { index, address, error: TableError::Unreadable { address } });
            }
            let header = SdtHeader::parse(&head).map_err(|error| RootError::Entry { index, address, error })?;
            if header.signature == signature {
                return read_table(memory, address, buffer).map(Some).map_err(|error| RootError::Entry {
                    index,
                    address,
                    error,
                });
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SliceMemory;
    use crate::testing::table;

    fn rsdt(addresses: &[u32]) -> Vec<u8> {
        let body: Vec<u8> = addresses.iter().flat_map(|address| address.to_le_bytes()).collect();
        table(*b"RSDT", 1, &body)
    }

    #[test]
    fn walks_rsdt_and_xsdt_entries() {
        let bytes = rsdt(&[0x10, 0x20, 0]);
        let root = RootTable::parse(RootKind::Rsdt, &bytes).unwrap();
        assert_eq!(root.len(), 3);
        assert_eq!(root.entries().collect::<Vec<_>>(), [0x10, 0x20, 0]);
        let body: Vec<u8> = [0x1_0000_0000u64, 0x40].iter().flat_map(|a| a.to_le_bytes()).collect();
        let bytes = table(*b"XSDT", 1, &body);
        let root = RootTable::parse(RootKind::Xsdt, &bytes).unwrap();
        assert_eq!(root.entries().collect::<Vec<_>>(), [0x1_0000_0000, 0x40]);
        let empty = table(*b"XSDT", 1, &[]);
        assert!(RootTable::parse(RootKind::Xsdt, &empty).unwrap().is_empty());
    }

    #[test]
    fn malformed_root_tables_are_refused() {
        let bytes = table(*b"RSDT", 1, &[1, 2, 3]);
        assert_eq!(
            RootTable::parse(RootKind::Rsdt, &bytes).unwrap_err(),
            RootError::EntriesLength { kind: RootKind::Rsdt, body: 3 }
        );
        let bytes = rsdt(&[1]);
        assert_eq!(
            RootTable::parse(RootKind::Xsdt, &bytes).unwrap_err(),
            RootError::Table(TableError::Signature { expected: *b"XSDT", found: *b"RSDT" })
        );
    }

    #[test]
    fn finds_tables_by_signature_through_memory() {
        let mut memory_bytes = vec![0u8; 0x300];
        let apic = table(*b"APIC", 1, &[1, 2]);
        let dmar = table(*b"DMAR", 1, &[3; 12]);
        memory_bytes[0x100..0x100 + apic.len()].copy_from_slice(&apic);
        memory_bytes[0x200..0x200 + dmar.len()].copy_from_slice(&dmar);
        let root_bytes = rsdt(&[0, 0x1100, 0x1200]);
        memory_bytes[..root_bytes.len()].copy_from_slice(&root_bytes);
        let memory = SliceMemory { base: 0x1000, bytes: &memory_bytes };

        let mut root_buffer = [0u8; 256];
        let root = RootTable::read(&memory, RootKind::Rsdt, 0x1000, &mut root_buffer).unwrap();
        let mut buffer = [0u8; 256];
        let found = root.find(&memory, *b"DMAR", &mut buffer).unwrap().unwrap();
        assert_eq!(found.body(), &[3; 12]);
        assert_eq!(root.find(&memory, *b"MCFG", &mut buffer).unwrap(), None);
    }

    #[test]
    fn unreadable_or_corrupt_entries_name_their_index() {
        let mut memory_bytes = vec![0u8; 0x300];
        let mut dmar = table(*b"DMAR", 1, &[3; 12]);
        dmar[40] ^= 1;
        memory_bytes[0x200..0x200 + dmar.len()].copy_from_slice(&dmar);
        let memory = SliceMemory { base: 0x1000, bytes: &memory_bytes };
        let mut buffer = [0u8; 256];

        let root_bytes = rsdt(&[0x9000]);
        let root = RootTable::parse(RootKind::Rsdt, &root_bytes).unwrap();
        assert_eq!(
            root.find(&memory, *b"DMAR", &mut buffer),
            Err(RootError::Entry { index: 0, address: 0x9000, error: TableError::Unreadable { address: 0x9000 } })
        );
        let root_bytes = rsdt(&[0x1200]);
        let root = RootTable::parse(RootKind::Rsdt, &root_bytes).unwrap();
        assert!(matches!(
            root.find(&memory, *b"DMAR", &mut buffer),
            Err(RootError::Entry { index: 0, address: 0x1200, error: TableError::Checksum { .. } })
        ));
    }
}
