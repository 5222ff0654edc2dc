//! The host-to-device register FIS a command table starts with (SATA 3.x, 10.5.5), for the ATA commands this driver sends.

/// FIS type of a host-to-device register FIS.
const TYPE_H2D: u8 = 0x27;
/// The C bit: this FIS carries a command (not a device-control update).
const COMMAND_BIT: u8 = 0x80;
/// Device register: LBA addressing.
const DEVICE_LBA: u8 = 0x40;

/// The ATA commands sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtaCommand {
    /// IDENTIFY DEVICE: 512 bytes of device data.
    Identify,
    /// READ DMA EXT: sectors to memory (48-bit LBA).
    ReadDmaExt,
    /// WRITE DMA EXT: memory to sectors (48-bit LBA).
    WriteDmaExt,
    /// FLUSH CACHE EXT: the device's write cache to the medium.
    FlushCacheExt,
}

impl AtaCommand {
    /// The command register's value.
    pub fn opcode(self) -> u8 {
        match self {
            AtaCommand::Identify => 0xec,
            AtaCommand::ReadDmaExt => 0x25,
            AtaCommand::WriteDmaExt => 0x35,
            AtaCommand::FlushCacheExt => 0xea,
        }
    }

    /// Whether data goes from memory to the device.
    pub fn writes_device(self) -> bool {
        matches!(self, AtaCommand::WriteDmaExt)
    }
}

/// Bytes of a host-to-device register FIS (five dwords).
pub const H2D_LEN: usize = 20;

/// The FIS for `command` on sectors `[lba, lba + count)` (0 and 0 for
/// commands without a range).
pub fn h2d(command: AtaCommand, lba: u64, count: u16) -> [u8; H2D_LEN] {
    let l = lba.to_le_bytes();
    let c = count.to_le_bytes();
    let mut fis = [0u8; H2D_LEN];
    fis[0] = TYPE_H2D;
    fis[1] = COMMAND_BIT;
    fis[2] = command.opcode();
    fis[4..7].copy_from_slice(&l[0..3]);
    fis[7] = if command == AtaCommand::Identify { 0 } else { DEVICE_LBA };
    fis[8..11].copy_from_slice(&l[3..6]);
    fis[12..14].copy_from_slice(&c);
    fis
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_fis_carries_its_48_bit_lba_and_count() {
        let fis = h2d(AtaCommand::ReadDmaExt, 0x0000_1234_5678_9abc, 0x0102);
        assert_eq!(fis[..4], [0x27, 0x80, 0x25, 0x00]);
        assert_eq!(fis[4..8], [0xbc, 0x9a, 0x78, 0x40], "LBA 7:0, 15:8, 23:16, then LBA mode");
        assert_eq!(fis[8..11], [0x56, 0x34, 0x12], "LBA 31:24, 39:32, 47:40");
        assert_eq!(fis[12..14], [0x02, 0x01]);
        assert_eq!(h2d(AtaCommand::Identify, 0, 0)[2], 0xec);
        assert!(AtaCommand::WriteDmaExt.writes_device() && !AtaCommand::ReadDmaExt.writes_device());
    }
}
