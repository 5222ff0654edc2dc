//! How the parsers reach physical memory, and reading a whole table through it.

use crate::sdt::{HEADER_LENGTH, Sdt, SdtHeader, TableError};

/// Read access to physical memory holding ACPI tables.
///
/// The IOMMU server implements it over the memory the kernel maps for it;
/// tests implement it over a byte array.
pub trait TableMemory {
    /// Fills `buffer` from physical address `physical` on; returns `false`
    /// if any byte of that range cannot be read (buffer contents are then
    /// unspecified).
    fn read(&self, physical: u64, buffer: &mut [u8]) -> bool;
}

/// Physical memory that is one byte slice starting at `base`.
#[derive(Debug, Clone, Copy)]
pub struct SliceMemory<'a> {
    /// Physical address of the first byte of `bytes`.
    pub base: u64,
    /// The memory's contents.
    pub bytes: &'a [u8],
}

impl TableMemory for SliceMemory<'_> {
    fn read(&self, physical: u64, buffer: &mut [u8]) -> bool {
        let source = physical
            .checked_sub(self.base)
            .and_then(|offset| usize::try_from(offset).ok())
            .and_then(|start| Some(start..start.checked_add(buffer.len())?))
            .and_then(|range| self.bytes.get(range));
        match source {
            Some(source) => {
                buffer.copy_from_slice(source);
                true
            }
            None => false,
        }
    }
}

/// Reads the table at `physical` into `buffer` and checks its length and
/// checksum; the returned table borrows `buffer`.
pub fn read_table<'b>(memory: &impl TableMemory, physical: u64, buffer: &'b mut [u8]) -> Result<Sdt<'b>, TableError> {
    let capacity = buffer.len();
    let head = buffer.get_mut(..HEADER_LENGTH).ok_or(TableError::BufferTooSmall {
        signature: [0; 4],
        length: HEADER_LENGTH as u32,
        capacity,
    })?;
    if !memory.read(physical, head) {
        return Err(TableError::Unreadable { address: physical });
    }
    let header = SdtHeader::parse(head)?;
    let whole = buffer.get_mut(..header.length as usize).ok_or(TableError::BufferTooSmall {
        signature: header.signature,
        length: header.length,
        capacity,
    })?;
    if !memory.read(physical, whole) {
        return Err(TableError::Unreadable { address: physical });
    }
    Sdt::parse(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::table;

    #[test]
    fn slice_memory_reads_inside_and_refuses_outside() {
        let bytes = [1u8, 2, 3, 4];
        let memory = SliceMemory { base: 0x1000, bytes: &bytes };
        let mut two = [0u8; 2];
        assert!(memory.read(0x1002, &mut two));
        assert_eq!(two, [3, 4]);
        assert!(!memory.read(0x1003, &mut two));
        assert!(!memory.read(0xfff, &mut two));
        assert!(!memory.read(u64::MAX, &mut two));
    }

    #[test]
    fn reads_a_table_into_a_buffer() {
        let mut bytes = vec![0u8; 16];
        bytes.extend(table(*b"MCFG", 1, &[0; 8]));
        let memory = SliceMemory { base: 0x10_0000, bytes: &bytes };
        let mut buffer = [0u8; 128];
        let parsed = read_table(&memory, 0x10_0010, &mut buffer).unwrap();
        assert_eq!(parsed.header().signature, *b"MCFG");
        assert_eq!(parsed.bytes().len(), 44);
    }

    #[test]
    fn refuses_tables_larger_than_the_buffer_and_unreadable_ones() {
        let bytes = table(*b"MCFG", 1, &[0; 64]);
        let memory = SliceMemory { base: 0, bytes: &bytes };
        let mut small = [0u8; 64];
        assert_eq!(
            read_table(&memory, 0, &mut small),
            Err(TableError::BufferTooSmall { signature: *b"MCFG", length: 100, capacity: 64 })
        );
        let mut tiny = [0u8; 10];
        assert!(matches!(read_table(&memory, 0, &mut tiny), Err(TableError::BufferTooSmall { .. })));
        let mut buffer = [0u8; 128];
        assert_eq!(read_table(&memory, 0x1000, &mut buffer), Err(TableError::Unreadable { address: 0x1000 }));
    }

    #[test]
    fn a_length_running_past_readable_memory_is_unreadable() {
        let mut bytes = table(*b"MCFG", 1, &[0; 8]);
        bytes[4..8].copy_from_slice(&100u32.to_le_bytes());
        let memory = SliceMemory { base: 0, bytes: &bytes };
        let mut buffer = [0u8; 128];
        assert_eq!(read_table(&memory, 0, &mut buffer), Err(TableError::Unreadable { address: 0 }));
    }
}
