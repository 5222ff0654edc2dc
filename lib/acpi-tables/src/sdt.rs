//! The header every ACPI system description table starts with, and its checksum.

use core::fmt;

use crate::bytes::{array_at, byte_sum, u8_at, u32_at};

/// Bytes in a system description table header.
pub const HEADER_LENGTH: usize = 36;

/// A four-character table signature such as `*b"DMAR"`.
pub type Signature = [u8; 4];

/// Why a system description table was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// Fewer bytes were given than the header (or the table's length) needs.
    Truncated {
        /// Bytes the table needs.
        needed: usize,
        /// Bytes that were available.
        available: usize,
    },
    /// The header's length field is smaller than the header itself.
    Length {
        /// The table's signature.
        signature: Signature,
        /// The length field.
        length: u32,
    },
    /// The bytes of the table do not sum to zero.
    Checksum {
        /// The table's signature.
        signature: Signature,
        /// What the bytes summed to, modulo 256.
        sum: u8,
    },
    /// The table is larger than the buffer it was to be read into.
    BufferTooSmall {
        /// The table's signature.
        signature: Signature,
        /// The length field.
        length: u32,
        /// Bytes the buffer holds.
        capacity: usize,
    },
    /// Physical memory at the table's address could not be read.
    Unreadable {
        /// Physical address of the table.
        address: u64,
    },
    /// The table has another signature than the one expected.
    Signature {
        /// The signature wanted.
        expected: Signature,
        /// The signature found.
        found: Signature,
    },
}

impl fmt::Display for TableError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, available } => {
                write!(formatter, "table truncated: needs {needed} bytes, {available} available")
            }
            Self::Length { signature, length } => {
                write!(formatter, "{} length {length} is shorter than its header", Name(signature))
            }
            Self::Checksum { signature, sum } => {
                write!(formatter, "{} checksum: bytes sum to {sum:#04x}", Name(signature))
            }
            Self::BufferTooSmall { signature, length, capacity } => {
                write!(formatter, "{} length {length} exceeds the {capacity}-byte buffer", Name(signature))
            }
            Self::Unreadable { address } => write!(formatter, "table at {address:#x} is not readable"),
            Self::Signature { expected, found } => {
                write!(formatter, "expected a {} table, found {}", Name(expected), Name(found))
            }
        }
    }
}

/// Prints a signature as text, escaping bytes that are not printable ASCII.
pub(crate) struct Name<'a>(pub(crate) &'a Signature);

impl fmt::Display for Name<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            if byte.is_ascii_graphic() || *byte == b' ' {
                write!(formatter, "{}", char::from(*byte))?;
            } else {
                write!(formatter, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

/// The decoded fields of a system description table header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdtHeader {
    /// The table's signature, e.g. `*b"DMAR"`.
    pub signature: Signature,
    /// Length of the whole table in bytes, header included.
    pub length: u32,
    /// The table's revision.
    pub revision: u8,
    /// The checksum byte (chosen so the table sums to zero).
    pub checksum: u8,
    /// The OEM that built the table.
    pub oem_id: [u8; 6],
    /// The OEM's name for the table.
    pub oem_table_id: [u8; 8],
    /// The OEM's revision of the table.
    pub oem_revision: u32,
    /// The tool that built the table.
    pub creator_id: [u8; 4],
    /// The revision of that tool.
    pub creator_revision: u32,
}

impl SdtHeader {
    /// Decodes the header at the start of `bytes`; checks only that it is
    /// complete and that its length covers at least the header.
    pub fn parse(bytes: &[u8]) -> Result<Self, TableError> {
        let truncated = TableError::Truncated { needed: HEADER_LENGTH, available: bytes.len() };
        let field = |offset| u32_at(bytes, offset).ok_or(truncated);
        let header = Self {
            signature: array_at(bytes, 0).ok_or(truncated)?,
            length: field(4)?,
            revision: u8_at(bytes, 8).ok_or(truncated)?,
            checksum: u8_at(bytes, 9).ok_or(truncated)?,
            oem_id: array_at(bytes, 10).ok_or(truncated)?,
            oem_table_id: array_at(bytes, 16).ok_or(truncated)?,
            oem_revision: field(24)?,
            creator_id: array_at(bytes, 28).ok_or(truncated)?,
            creator_revision: field(32)?,
        };
        if (header.length as usize) < HEADER_LENGTH {
            return Err(TableError::Length { signature: header.signature, length: header.length });
        }
        Ok(header)
    }
}

/// A table whose header is complete and whose checksum is right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sdt<'a> {
    header: SdtHeader,
    bytes: &'a [u8],
}

impl<'a> Sdt<'a> {
    /// Checks the table at the start of `bytes` (bytes past its length field
    /// are ignored): complete header, complete body, zero checksum.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, TableError> {
        let header = SdtHeader::parse(bytes)?;
        let length = header.length as usize;
        let table = bytes.get(..length).ok_or(TableError::Truncated { needed: length, available: bytes.len() })?;
        let sum = byte_sum(table);
        if sum != 0 {
            return Err(TableError::Checksum { signature: header.signature, sum });
        }
        Ok(Self { header, bytes: table })
    }

    /// Like [`Sdt::parse`], and also requires the signature `expected`.
    pub fn parse_signed(bytes: &'a [u8], expected: Signature) -> Result<Self, TableError> {
        let table = Self::parse(bytes)?;
        table.expect_signature(expected)?;
        Ok(table)
    }

    /// Fails unless the table's signature is `expected`.
    pub fn expect_signature(&self, expected: Signature) -> Result<(), TableError> {
        if self.header.signature == expected {
            Ok(())
        } else {
            Err(TableError::Signature { expected, found: self.header.signature })
        }
    }

    /// The decoded header.
    pub fn header(&self) -> &SdtHeader {
        &self.header
    }

    /// The whole table, header included.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The bytes after the header.
    pub fn body(&self) -> &'a [u8] {
        self.bytes.get(HEADER_LENGTH..).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::table;

    #[test]
    fn a_good_table_parses_and_exposes_its_body() {
        let bytes = table(*b"TEST", 3, &[1, 2, 3]);
        let parsed = Sdt::parse(&bytes).unwrap();
        assert_eq!(parsed.header().signature, *b"TEST");
        assert_eq!(parsed.header().length, 39);
        assert_eq!(parsed.header().revision, 3);
        assert_eq!(parsed.body(), &[1, 2, 3]);
        assert_eq!(parsed.header().oem_id, *b"OEMID ");
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        let mut bytes = table(*b"TEST", 1, &[9]);
        bytes.extend_from_slice(&[0xaa; 10]);
        assert_eq!(Sdt::parse(&bytes).unwrap().bytes().len(), 37);
    }

    #[test]
    fn every_header_truncation_is_an_error() {
        let bytes = table(*b"TEST", 1, &[]);
        for cut in 0..HEADER_LENGTH {
            assert_eq!(
                Sdt::parse(&bytes[..cut]),
                Err(TableError::Truncated { needed: HEADER_LENGTH, available: cut }),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_body_shorter_than_the_length_field_is_an_error() {
        let bytes = table(*b"TEST", 1, &[1, 2, 3, 4]);
        assert_eq!(Sdt::parse(&bytes[..38]), Err(TableError::Truncated { needed: 40, available: 38 }));
    }

    #[test]
    fn a_length_below_the_header_is_an_error() {
        let mut bytes = table(*b"TEST", 1, &[]);
        bytes[4..8].copy_from_slice(&35u32.to_le_bytes());
        assert_eq!(Sdt::parse(&bytes), Err(TableError::Length { signature: *b"TEST", length: 35 }));
    }

    #[test]
    fn every_single_bit_flip_in_the_body_breaks_the_checksum() {
        let bytes = table(*b"TEST", 1, &[5, 6, 7]);
        for position in 10..bytes.len() {
            for bit in 0..8 {
                let mut corrupt = bytes.clone();
                corrupt[position] ^= 1 << bit;
                assert!(matches!(Sdt::parse(&corrupt), Err(TableError::Checksum { .. })), "{position}:{bit}");
            }
        }
    }

    #[test]
    fn signature_is_checked_on_request() {
        let bytes = table(*b"APIC", 1, &[]);
        assert_eq!(
            Sdt::parse_signed(&bytes, *b"DMAR"),
            Err(TableError::Signature { expected: *b"DMAR", found: *b"APIC" })
        );
        assert!(Sdt::parse_signed(&bytes, *b"APIC").is_ok());
    }

    #[test]
    fn errors_display_the_signature_escaped() {
        let error = TableError::Checksum { signature: *b"DM\x00R", sum: 3 };
        assert_eq!(error.to_string(), "DM\\x00R checksum: bytes sum to 0x03");
    }
}
