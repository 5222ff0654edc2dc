//! What IDENTIFY DEVICE data says of a disk (ATA8-ACS, 7.16): its size in sectors, model and serial.

use crate::Error;

/// A disk as IDENTIFY describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// Addressable 512-byte sectors.
    pub sectors: u64,
    /// Model number, trimmed.
    pub model: [u8; 40],
    /// Serial number, trimmed.
    pub serial: [u8; 20],
}

fn word(data: &[u8; 512], index: usize) -> u16 {
    u16::from_le_bytes([data[2 * index], data[2 * index + 1]])
}

/// An ATA string: each word holds two characters, the first in its high byte.
fn text<const N: usize>(data: &[u8; 512], first_word: usize) -> [u8; N] {
    let mut out = [b' '; N];
    for (i, pair) in out.chunks_mut(2).enumerate() {
        let w = word(data, first_word + i).to_be_bytes();
        pair.copy_from_slice(&w[..pair.len()]);
    }
    out
}

impl Disk {
    /// Decodes the 512 bytes IDENTIFY DEVICE returned.
    pub fn decode(data: &[u8; 512]) -> Result<Self, Error> {
        // Word 83 bit 10: the 48-bit feature set, with words 100-103 the
        // sector count; otherwise words 60-61.
        let lba48 = word(data, 83) & (1 << 10) != 0;
        let sectors = if lba48 {
            (0..4).fold(0u64, |total, i| total | u64::from(word(data, 100 + i)) << (16 * i))
        } else {
            u64::from(word(data, 60)) | u64::from(word(data, 61)) << 16
        };
        if sectors == 0 {
            return Err(Error::Identify);
        }
        Ok(Self { sectors, model: text(data, 27), serial: text(data, 10) })
    }

    /// The model number without its padding.
    pub fn model(&self) -> &str {
        core::str::from_utf8(&self.model).unwrap_or("?").trim_end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identify(words: &[(usize, u16)], model: &str) -> [u8; 512] {
        let mut data = [0u8; 512];
        for &(index, value) in words {
            data[2 * index..2 * index + 2].copy_from_slice(&value.to_le_bytes());
        }
        let padded = format!("{model:<40}");
        for (i, pair) in padded.as_bytes().chunks(2).enumerate() {
            data[2 * (27 + i)] = pair[1];
            data[2 * (27 + i) + 1] = pair[0];
        }
        data
    }

    #[test]
    fn a_48_bit_disk_reports_words_100_to_103_and_its_model() {
        let data =
            identify(&[(83, 1 << 10), (100, 0x8000), (101, 0x0001), (60, 0xffff), (61, 0x0fff)], "QEMU HARDDISK");
        let disk = Disk::decode(&data).unwrap();
        assert_eq!(disk.sectors, 0x1_8000);
        assert_eq!(disk.model(), "QEMU HARDDISK");
    }

    #[test]
    fn a_28_bit_disk_reports_words_60_and_61_and_none_is_refused() {
        let data = identify(&[(60, 0x8000), (61, 0x0002)], "OLD");
        assert_eq!(Disk::decode(&data).unwrap().sectors, 0x2_8000);
        assert_eq!(Disk::decode(&[0u8; 512]), Err(Error::Identify));
    }
}
