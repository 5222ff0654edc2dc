//! A command slot's header in the command list and the command table it points at (AHCI 1.3.1, 4.2.2 and 4.2.3).

use crate::Error;
use crate::fis::{AtaCommand, H2D_LEN, h2d};

/// Bytes of one command header; the list holds one per slot.
pub const HEADER_LEN: usize = 32;
/// Bytes of a command table with one PRDT entry: the FIS area (64), the
/// ATAPI command (16), reserved (48), then the entry (16).
pub const TABLE_LEN: usize = 0x80 + PRDT_ENTRY_LEN;
/// Offset of the first PRDT entry in a command table.
const PRDT_OFFSET: usize = 0x80;
/// Bytes of one PRDT entry.
const PRDT_ENTRY_LEN: usize = 16;
/// Most bytes one PRDT entry describes.
pub const PRDT_ENTRY_MAX: u64 = 4 << 20;
/// Bytes of a sector.
pub const SECTOR: u64 = 512;

/// One command ready to issue in a slot: its header and its table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// The command header, for the slot's place in the command list.
    pub header: [u8; HEADER_LEN],
    /// The command table, for the address the header names.
    pub table: [u8; TABLE_LEN],
}

/// A data transfer: the buffer's bus address and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Bus address (an IOVA the device may use).
    pub address: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Prepares `command` on sectors from `lba` moving `data`, whose table
/// will sit at bus address `table_address` (128-byte aligned).
pub fn prepare(command: AtaCommand, lba: u64, data: Option<Buffer>, table_address: u64) -> Result<Prepared, Error> {
    let (count, entries) = match data {
        None => (0, 0),
        Some(buffer) => {
            if buffer.bytes == 0 || !buffer.bytes.is_multiple_of(SECTOR) {
                return Err(Error::Length { bytes: buffer.bytes });
            }
            if buffer.bytes > PRDT_ENTRY_MAX {
                return Err(Error::TooLarge { bytes: buffer.bytes });
            }
            if buffer.address % 2 != 0 {
                return Err(Error::Unaligned { address: buffer.address });
            }
            (buffer.bytes / SECTOR, 1u32)
        }
    };
    let count = if command == AtaCommand::Identify { 0 } else { count as u16 };
    let mut table = [0u8; TABLE_LEN];
    table[..H2D_LEN].copy_from_slice(&h2d(command, lba, count));
    if let Some(buffer) = data {
        let entry = &mut table[PRDT_OFFSET..PRDT_OFFSET + PRDT_ENTRY_LEN];
        entry[0..8].copy_from_slice(&buffer.address.to_le_bytes());
        // DBC is the byte count less one; bit 31 would ask for an
        // interrupt per entry, which the command's own completion makes moot.
        entry[12..16].copy_from_slice(&((buffer.bytes - 1) as u32).to_le_bytes());
    }
    let mut header = [0u8; HEADER_LEN];
    let fis_dwords = (H2D_LEN / 4) as u32;
    let write = if command.writes_device() { 1 << 6 } else { 0 };
    header[0..4].copy_from_slice(&(fis_dwords | write | entries << 16).to_le_bytes());
    header[8..16].copy_from_slice(&table_address.to_le_bytes());
    Ok(Prepared { header, table })
}

/// Checks that sectors `[lba, lba + count)` lie on a disk of `sectors`
/// and within 48-bit addressing, for a transfer of at most one PRDT entry.
pub fn check_range(lba: u64, count: u32, sectors: u64) -> Result<(), Error> {
    let end = lba.checked_add(u64::from(count));
    match end {
        Some(end) if count > 0 && end <= sectors && end <= 1 << 48 => Ok(()),
        _ => Err(Error::BlockRange { lba, count, sectors }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_names_its_table_and_one_prdt_entry_and_sets_the_write_bit() {
        let data = Buffer { address: 0x1_2345_6000, bytes: 4096 };
        let prepared = prepare(AtaCommand::WriteDmaExt, 77, Some(data), 0x8000).unwrap();
        let dw0 = u32::from_le_bytes(prepared.header[0..4].try_into().unwrap());
        assert_eq!(dw0 & 0x1f, 5, "a five-dword FIS");
        assert_ne!(dw0 & (1 << 6), 0, "memory to the device");
        assert_eq!(dw0 >> 16, 1, "one PRDT entry");
        assert_eq!(u64::from_le_bytes(prepared.header[8..16].try_into().unwrap()), 0x8000);
        assert_eq!(prepared.table[2], 0x35);
        assert_eq!(prepared.table[12..14], [8, 0], "eight sectors");
        let entry = &prepared.table[0x80..0x90];
        assert_eq!(u64::from_le_bytes(entry[0..8].try_into().unwrap()), 0x1_2345_6000);
        assert_eq!(u32::from_le_bytes(entry[12..16].try_into().unwrap()), 4095);
    }

    #[test]
    fn identify_moves_one_sector_and_reads_into_memory() {
        let prepared = prepare(AtaCommand::Identify, 0, Some(Buffer { address: 0x4000, bytes: 512 }), 0x80).unwrap();
        let dw0 = u32::from_le_bytes(prepared.header[0..4].try_into().unwrap());
        assert_eq!(dw0 & (1 << 6), 0);
        assert_eq!(prepared.table[12..14], [0, 0], "IDENTIFY has no count");
    }

    #[test]
    fn bad_buffers_and_ranges_are_refused_before_anything_is_built() {
        let at = |bytes, address| Some(Buffer { address, bytes });
        assert_eq!(prepare(AtaCommand::ReadDmaExt, 0, at(0, 0), 0), Err(Error::Length { bytes: 0 }));
        assert_eq!(prepare(AtaCommand::ReadDmaExt, 0, at(100, 0), 0), Err(Error::Length { bytes: 100 }));
        assert_eq!(prepare(AtaCommand::ReadDmaExt, 0, at(512, 0x1001), 0), Err(Error::Unaligned { address: 0x1001 }));
        let huge = PRDT_ENTRY_MAX + SECTOR;
        assert_eq!(prepare(AtaCommand::ReadDmaExt, 0, at(huge, 0), 0), Err(Error::TooLarge { bytes: huge }));
        assert_eq!(check_range(0, 8, 32768), Ok(()));
        assert_eq!(check_range(32760, 9, 32768), Err(Error::BlockRange { lba: 32760, count: 9, sectors: 32768 }));
        assert!(check_range(u64::MAX, 1, u64::MAX).is_err());
        assert!(check_range(0, 0, 10).is_err());
    }
}
