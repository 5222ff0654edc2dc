//! The 82574's registers this driver uses (82574 datasheet, chapter 10): offsets, bits, and the MAC address.

/// Device control.
pub const CTRL: u64 = 0x0000;
/// Device status.
pub const STATUS: u64 = 0x0008;
/// Interrupt cause read (cleared by reading).
pub const ICR: u64 = 0x00c0;
/// Interrupt mask set.
pub const IMS: u64 = 0x00d0;
/// Interrupt mask clear.
pub const IMC: u64 = 0x00d8;
/// Receive control.
pub const RCTL: u64 = 0x0100;
/// Transmit control.
pub const TCTL: u64 = 0x0400;
/// Receive descriptor ring base, low half.
pub const RDBAL: u64 = 0x2800;
/// Receive descriptor ring base, high half.
pub const RDBAH: u64 = 0x2804;
/// Receive descriptor ring length in bytes.
pub const RDLEN: u64 = 0x2808;
/// Receive descriptor head.
pub const RDH: u64 = 0x2810;
/// Receive descriptor tail.
pub const RDT: u64 = 0x2818;
/// Transmit descriptor ring base, low half.
pub const TDBAL: u64 = 0x3800;
/// Transmit descriptor ring base, high half.
pub const TDBAH: u64 = 0x3804;
/// Transmit descriptor ring length in bytes.
pub const TDLEN: u64 = 0x3808;
/// Transmit descriptor head.
pub const TDH: u64 = 0x3810;
/// Transmit descriptor tail.
pub const TDT: u64 = 0x3818;
/// Receive address low and high of entry 0: the MAC address.
pub const RAL0: u64 = 0x5400;
/// Receive address high of entry 0 (with the address-valid bit).
pub const RAH0: u64 = 0x5404;

/// CTRL.RST: device reset (self-clearing).
pub const CTRL_RESET: u32 = 1 << 26;
/// CTRL.SLU: set link up.
pub const CTRL_SET_LINK_UP: u32 = 1 << 6;
/// STATUS.LU: the link is up.
pub const STATUS_LINK_UP: u32 = 1 << 1;
/// RCTL.EN: the receiver is on.
pub const RCTL_ENABLE: u32 = 1 << 1;
/// RCTL.BAM: accept broadcast frames.
pub const RCTL_BROADCAST: u32 = 1 << 15;
/// RCTL.SECRC: strip the Ethernet CRC before the frame reaches memory.
pub const RCTL_STRIP_CRC: u32 = 1 << 26;
/// TCTL.EN: the transmitter is on.
pub const TCTL_ENABLE: u32 = 1 << 1;
/// TCTL.PSP: pad short frames to 64 bytes.
pub const TCTL_PAD_SHORT: u32 = 1 << 3;
/// ICR/IMS: a transmit descriptor was written back.
pub const CAUSE_TX_WRITTEN_BACK: u32 = 1 << 0;
/// ICR/IMS: a frame was received (receiver timer).
pub const CAUSE_RX: u32 = 1 << 7;
/// RAH.AV: the receive address entry is valid.
const RAH_VALID: u32 = 1 << 31;

/// A MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The address receive-address entry 0 holds, if it is marked valid.
    pub fn from_receive_address(low: u32, high: u32) -> Option<Self> {
        if high & RAH_VALID == 0 {
            return None;
        }
        let [a, b, c, d] = low.to_le_bytes();
        let [e, f, _, _] = high.to_le_bytes();
        Some(Self([a, b, c, d, e, f]))
    }

    /// Whether it is a unicast address a NIC may own (not multicast or zero).
    pub fn is_unicast(self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_address_comes_from_receive_address_zero_when_valid() {
        // 52:54:00:12:34:56, QEMU's default MAC form.
        let mac = Mac::from_receive_address(0x1200_5452, 0x8000_5634).unwrap();
        assert_eq!(mac, Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        assert!(mac.is_unicast());
        assert_eq!(Mac::from_receive_address(0x1200_5452, 0x5634), None, "not marked valid");
        assert!(!Mac([0x01, 0, 0x5e, 0, 0, 1]).is_unicast());
    }
}
