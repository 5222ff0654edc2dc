//! Legacy receive and transmit descriptors (82574 datasheet, 7.1.4 and 7.2.10): 16 bytes each.

/// Bytes of one descriptor.
pub const LEN: usize = 16;
/// Shortest frame a transmit descriptor may carry: an Ethernet header
/// (the NIC pads short frames and appends the CRC).
pub const FRAME_MIN: usize = 14;
/// Longest frame without the CRC.
pub const FRAME_MAX: usize = 1514;

/// TX commands: end of packet, insert the CRC, report status.
const TX_END_OF_PACKET: u8 = 1 << 0;
const TX_INSERT_CRC: u8 = 1 << 1;
const TX_REPORT_STATUS: u8 = 1 << 3;
/// Status: the descriptor is done (written back); end of packet.
const STATUS_DONE: u8 = 1 << 0;
const STATUS_END_OF_PACKET: u8 = 1 << 1;

/// Why a frame or descriptor is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptorError {
    /// A frame shorter than an Ethernet header or longer than 1514 bytes.
    FrameLength {
        /// Its length.
        len: usize,
    },
    /// The NIC wrote back a frame with a receive error.
    ReceiveError {
        /// The error byte.
        errors: u8,
    },
    /// A received frame that does not end in this descriptor (this driver
    /// gives every buffer room for a whole frame).
    Fragment,
}

/// A transmit descriptor for the frame of `len` bytes at bus address `buffer`.
pub fn transmit(buffer: u64, len: usize) -> Result<[u8; LEN], DescriptorError> {
    if !(FRAME_MIN..=FRAME_MAX).contains(&len) {
        return Err(DescriptorError::FrameLength { len });
    }
    let mut descriptor = [0u8; LEN];
    descriptor[0..8].copy_from_slice(&buffer.to_le_bytes());
    descriptor[8..10].copy_from_slice(&(len as u16).to_le_bytes());
    descriptor[11] = TX_END_OF_PACKET | TX_INSERT_CRC | TX_REPORT_STATUS;
    Ok(descriptor)
}

/// Whether the NIC has sent the frame of this transmit descriptor.
pub fn transmitted(descriptor: &[u8; LEN]) -> bool {
    descriptor[12] & STATUS_DONE != 0
}

/// A receive descriptor offering the buffer at bus address `buffer`.
pub fn receive(buffer: u64) -> [u8; LEN] {
    let mut descriptor = [0u8; LEN];
    descriptor[0..8].copy_from_slice(&buffer.to_le_bytes());
    descriptor
}

/// The length of the frame the NIC wrote back into this receive
/// descriptor's buffer; `None` while it is still the NIC's.
pub fn received(descriptor: &[u8; LEN]) -> Option<Result<usize, DescriptorError>> {
    let status = descriptor[12];
    if status & STATUS_DONE == 0 {
        return None;
    }
    let errors = descriptor[13];
    Some(if errors != 0 {
        Err(DescriptorError::ReceiveError { errors })
    } else if status & STATUS_END_OF_PACKET == 0 {
        Err(DescriptorError::Fragment)
    } else {
        Ok(usize::from(u16::from_le_bytes([descriptor[8], descriptor[9]])))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transmit_descriptor_carries_the_buffer_length_and_its_commands() {
        let d = transmit(0x1_0000_2000, 60).unwrap();
        assert_eq!(u64::from_le_bytes(d[0..8].try_into().unwrap()), 0x1_0000_2000);
        assert_eq!(u16::from_le_bytes([d[8], d[9]]), 60);
        assert_eq!(d[11], 0b1011, "end of packet, insert CRC, report status");
        assert!(!transmitted(&d));
        let mut done = d;
        done[12] = 1;
        assert!(transmitted(&done));
        assert_eq!(transmit(0, 13), Err(DescriptorError::FrameLength { len: 13 }));
        assert_eq!(transmit(0, 1515), Err(DescriptorError::FrameLength { len: 1515 }));
        assert!(transmit(0, 1514).is_ok());
    }

    #[test]
    fn a_receive_descriptor_reports_its_frame_once_written_back() {
        let mut d = receive(0x8000);
        assert_eq!(received(&d), None, "still the NIC's");
        d[8..10].copy_from_slice(&98u16.to_le_bytes());
        d[12] = 0b11;
        assert_eq!(received(&d), Some(Ok(98)));
        d[13] = 0x04;
        assert_eq!(received(&d), Some(Err(DescriptorError::ReceiveError { errors: 0x04 })));
        d[13] = 0;
        d[12] = 0b01;
        assert_eq!(received(&d), Some(Err(DescriptorError::Fragment)));
    }
}
