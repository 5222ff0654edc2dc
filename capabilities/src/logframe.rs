//! Serial log framing: how binary `defmt` frames and plain text share COM1.
//!
//! The kernel writes every `defmt` frame, its own and the ones tasks hand it,
//! as one *record*: [`RECORD_MARKER`], a tag naming the writer, the payload
//! length (little-endian `u16`), the time in microseconds since the machine
//! started (little-endian `u64`) and the payload. Any other byte on the line is
//! plain text, which is how a kernel panic stays readable even when nothing
//! can be decoded: ASCII text never contains the marker byte.

/// First byte of every binary record; never part of plain text.
pub const RECORD_MARKER: u8 = 0x00;

/// Length of the record header: marker, tag, `u16` length, `u64` time.
pub const HEADER_LEN: usize = 12;

/// Tag of records the kernel wrote about itself.
pub const TAG_KERNEL: u8 = 0;

/// The tag of the task with boot-manifest index `index`.
pub const fn task_tag(index: usize) -> u8 {
    // The manifest holds fewer than 255 tasks (checked when it is decoded).
    (index + 1) as u8
}

/// The record header for a payload of `len` bytes written by `tag` at
/// `micros` microseconds since the machine started.
pub const fn header(tag: u8, len: u16, micros: u64) -> [u8; HEADER_LEN] {
    let len = len.to_le_bytes();
    let t = micros.to_le_bytes();
    [RECORD_MARKER, tag, len[0], len[1], t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]]
}

/// A decoded record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Who wrote the record.
    pub tag: u8,
    /// Payload length in bytes.
    pub len: u16,
    /// Microseconds since the machine started.
    pub micros: u64,
}

/// Decodes a record header; `None` if it does not start with the marker.
pub fn parse_header(bytes: &[u8; HEADER_LEN]) -> Option<Header> {
    if bytes[0] != RECORD_MARKER {
        return None;
    }
    let mut micros = [0u8; 8];
    micros.copy_from_slice(&bytes[4..12]);
    Some(Header { tag: bytes[1], len: u16::from_le_bytes([bytes[2], bytes[3]]), micros: u64::from_le_bytes(micros) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let bytes = header(task_tag(4), 300, 1_234_567);
        assert_eq!(parse_header(&bytes), Some(Header { tag: 5, len: 300, micros: 1_234_567 }));
        let mut text = bytes;
        text[0] = b'x';
        assert_eq!(parse_header(&text), None);
    }
}
