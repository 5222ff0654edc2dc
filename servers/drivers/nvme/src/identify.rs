//! Identify data: the controller's and a namespace's structures, decoded.

use crate::Error;

/// Bytes in every Identify structure.
pub const IDENTIFY_BYTES: usize = 4096;

/// The fields of Identify Controller the drivers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Controller {
    /// PCI vendor identifier.
    pub vendor: u16,
    /// Serial number, ASCII padded with spaces.
    pub serial: [u8; 20],
    /// Model number, ASCII padded with spaces.
    pub model: [u8; 40],
    /// Largest transfer, as a power of two of the minimum page size (MDTS;
    /// 0 means no limit).
    pub max_transfer_shift: u8,
    /// Highest namespace identifier (NN).
    pub namespaces: u32,
}

fn le16(data: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([data[at], data[at + 1]])
}

fn le32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

fn le64(data: &[u8], at: usize) -> u64 {
    u64::from(le32(data, at)) | (u64::from(le32(data, at + 4)) << 32)
}

impl Controller {
    /// Decodes the 4 KiB Identify Controller structure.
    pub fn decode(data: &[u8]) -> Result<Self, Error> {
        let data = data.get(..IDENTIFY_BYTES).ok_or(Error::BadIdentify)?;
        let mut serial = [0; 20];
        serial.copy_from_slice(&data[4..24]);
        let mut model = [0; 40];
        model.copy_from_slice(&data[24..64]);
        // SQES and CQES (bytes 512, 513): the low nibble is the required
        // entry size, which must be the 64 and 16 bytes this library uses.
        if data[512] & 0xf > 6 || data[513] & 0xf > 4 {
            return Err(Error::BadIdentify);
        }
        Ok(Self { vendor: le16(data, 0), serial, model, max_transfer_shift: data[77], namespaces: le32(data, 516) })
    }

    /// The model number without its padding.
    pub fn model_text(&self) -> &str {
        text(&self.model)
    }

    /// The serial number without its padding.
    pub fn serial_text(&self) -> &str {
        text(&self.serial)
    }
}

/// An ASCII field up to its padding; a field that is not ASCII reads as empty.
fn text(field: &[u8]) -> &str {
    let end = field.iter().rposition(|&byte| byte != b' ' && byte != 0).map_or(0, |last| last + 1);
    core::str::from_utf8(&field[..end]).unwrap_or("")
}

/// The fields of Identify Namespace the drivers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// Size in blocks (NSZE).
    pub blocks: u64,
    /// Blocks that may be allocated (NCAP).
    pub capacity: u64,
    /// Block size as a power of two (LBADS of the format FLBAS selects).
    pub block_shift: u8,
    /// Metadata bytes per block in that format.
    pub metadata_bytes: u16,
}

impl Namespace {
    /// Decodes the 4 KiB Identify Namespace structure. A namespace of size
    /// zero (not active) or with a block format the structure does not
    /// list is refused.
    pub fn decode(data: &[u8]) -> Result<Self, Error> {
        let data = data.get(..IDENTIFY_BYTES).ok_or(Error::BadIdentify)?;
        let formats = usize::from(data[25]) + 1; // NLBAF is zero-based
        let format = usize::from(data[26] & 0xf);
        if format >= formats {
            return Err(Error::BadIdentify);
        }
        let descriptor = le32(data, 128 + 4 * format);
        let block_shift = (descriptor >> 16) as u8;
        let blocks = le64(data, 0);
        // LBADS below 9 (512 bytes) is not a supported format.
        if blocks == 0 || !(9..=16).contains(&block_shift) {
            return Err(Error::BadIdentify);
        }
        Ok(Self { blocks, capacity: le64(data, 8), block_shift, metadata_bytes: descriptor as u16 })
    }

    /// Bytes per block.
    pub fn block_bytes(&self) -> u64 {
        1 << self.block_shift
    }

    /// Checks that `blocks` blocks from `first` are inside the namespace.
    pub fn check_range(&self, first: u64, blocks: u64) -> Result<(), Error> {
        match first.checked_add(blocks) {
            Some(end) if blocks > 0 && end <= self.blocks => Ok(()),
            _ => Err(Error::BlockRange),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller_data() -> [u8; IDENTIFY_BYTES] {
        let mut data = [0; IDENTIFY_BYTES];
        data[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        data[4..24].copy_from_slice(b"deadbeef            ");
        data[24..64].copy_from_slice(b"QEMU NVMe Ctrl                          ");
        data[77] = 7;
        data[512] = 0x66;
        data[513] = 0x44;
        data[516..520].copy_from_slice(&256u32.to_le_bytes());
        data
    }

    #[test]
    fn the_controller_structure_decodes() {
        let controller = Controller::decode(&controller_data()).unwrap();
        assert_eq!(controller.vendor, 0x1b36);
        assert_eq!(controller.serial_text(), "deadbeef");
        assert_eq!(controller.model_text(), "QEMU NVMe Ctrl");
        assert_eq!(controller.max_transfer_shift, 7);
        assert_eq!(controller.namespaces, 256);
    }

    #[test]
    fn a_controller_needing_larger_entries_or_short_data_is_refused() {
        let mut data = controller_data();
        data[512] = 0x77;
        assert_eq!(Controller::decode(&data), Err(Error::BadIdentify));
        assert_eq!(Controller::decode(&data[..100]), Err(Error::BadIdentify));
    }

    fn namespace_data(blocks: u64, formats: u8, selected: u8) -> [u8; IDENTIFY_BYTES] {
        let mut data = [0; IDENTIFY_BYTES];
        data[0..8].copy_from_slice(&blocks.to_le_bytes());
        data[8..16].copy_from_slice(&blocks.to_le_bytes());
        data[25] = formats - 1;
        data[26] = selected;
        data[128..132].copy_from_slice(&(9u32 << 16).to_le_bytes());
        data[132..136].copy_from_slice(&((12u32 << 16) | 8).to_le_bytes());
        data
    }

    #[test]
    fn the_namespace_structure_decodes_its_selected_format() {
        let first = Namespace::decode(&namespace_data(32768, 2, 0)).unwrap();
        assert_eq!((first.blocks, first.block_shift, first.block_bytes(), first.metadata_bytes), (32768, 9, 512, 0));
        let second = Namespace::decode(&namespace_data(4096, 2, 1)).unwrap();
        assert_eq!((second.block_shift, second.metadata_bytes), (12, 8));
    }

    #[test]
    fn inactive_namespaces_and_unlisted_formats_are_refused() {
        assert_eq!(Namespace::decode(&namespace_data(0, 1, 0)), Err(Error::BadIdentify));
        assert_eq!(Namespace::decode(&namespace_data(8, 1, 1)), Err(Error::BadIdentify));
    }

    #[test]
    fn block_ranges_past_the_end_are_refused() {
        let namespace = Namespace::decode(&namespace_data(100, 1, 0)).unwrap();
        assert_eq!(namespace.check_range(99, 1), Ok(()));
        assert_eq!(namespace.check_range(100, 1), Err(Error::BlockRange));
        assert_eq!(namespace.check_range(0, 0), Err(Error::BlockRange));
        assert_eq!(namespace.check_range(u64::MAX, 2), Err(Error::BlockRange));
    }
}
