//! Why a DMAR table was refused, naming the structure and field at fault.

use core::fmt;

use crate::sdt::TableError;

/// Why a DMAR table was refused. `index` counts remapping structures from 0
/// in table order, `kind` names the structure ("DRHD", "RMRR", ...), and
/// `scope` counts device scopes within it from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarError {
    /// The table's header, length or checksum is wrong.
    Table(TableError),
    /// The table ends before the 48-byte DMAR header does.
    HeaderTruncated {
        /// The table's length.
        length: usize,
    },
    /// The host address width field is outside what x86-64 can address.
    HostAddressWidth {
        /// The width in bits (the field plus one).
        width: u16,
    },
    /// Fewer than the four bytes of a structure header remain.
    StructureTruncated {
        /// The structure's position.
        index: usize,
        /// Bytes left in the table.
        remaining: usize,
    },
    /// A structure's length is below its fixed part (zero included).
    StructureLength {
        /// The structure's position.
        index: usize,
        /// The structure's name.
        kind: &'static str,
        /// The length field.
        length: u16,
    },
    /// A structure's length runs past the end of the table.
    StructureOverrun {
        /// The structure's position.
        index: usize,
        /// The structure's name.
        kind: &'static str,
        /// The length field.
        length: u16,
        /// Bytes left in the table.
        remaining: usize,
    },
    /// A DRHD's register base is zero or not 4 KiB aligned.
    RegisterBase {
        /// The structure's position.
        index: usize,
        /// The address field.
        address: u64,
    },
    /// An RMRR's range is empty, inverted or not 4 KiB aligned.
    ReservedRange {
        /// The structure's position.
        index: usize,
        /// The base address field.
        base: u64,
        /// The limit (last byte) field.
        limit: u64,
    },
    /// A device scope's length is too short, odd, or runs past its structure.
    ScopeLength {
        /// The structure's position.
        index: usize,
        /// The structure's name.
        kind: &'static str,
        /// The scope's position within the structure.
        scope: usize,
        /// The scope's length field.
        length: u8,
    },
    /// A device scope's type is unknown, or not allowed in this structure.
    ScopeType {
        /// The structure's position.
        index: usize,
        /// The structure's name.
        kind: &'static str,
        /// The scope's position within the structure.
        scope: usize,
        /// The type field.
        scope_type: u8,
    },
    /// A path element names a device above 31 or a function above 7.
    ScopePath {
        /// The structure's position.
        index: usize,
        /// The structure's name.
        kind: &'static str,
        /// The scope's position within the structure.
        scope: usize,
        /// The device number.
        device: u8,
        /// The function number.
        function: u8,
    },
}

impl From<TableError> for DmarError {
    fn from(error: TableError) -> Self {
        Self::Table(error)
    }
}

impl fmt::Display for DmarError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Table(error) => write!(formatter, "DMAR: {error}"),
            Self::HeaderTruncated { length } => write!(formatter, "DMAR length {length} is below the 48-byte header"),
            Self::HostAddressWidth { width } => write!(formatter, "DMAR host address width {width} is out of range"),
            Self::StructureTruncated { index, remaining } => {
                write!(formatter, "DMAR structure {index}: only {remaining} bytes left for its header")
            }
            Self::StructureLength { index, kind, length } => {
                write!(formatter, "DMAR structure {index} ({kind}): length {length} is too short")
            }
            Self::StructureOverrun { index, kind, length, remaining } => write!(
                formatter,
                "DMAR structure {index} ({kind}): length {length} runs past the table's {remaining} remaining bytes"
            ),
            Self::RegisterBase { index, address } => {
                write!(formatter, "DMAR structure {index} (DRHD): register base {address:#x} is not a 4 KiB page")
            }
            Self::ReservedRange { index, base, limit } => {
                write!(
                    formatter,
                    "DMAR structure {index} (RMRR): range {base:#x}..={limit:#x} is not whole 4 KiB pages"
                )
            }
            Self::ScopeLength { index, kind, scope, length } => {
                write!(formatter, "DMAR structure {index} ({kind}) scope {scope}: bad length {length}")
            }
            Self::ScopeType { index, kind, scope, scope_type } => {
                write!(formatter, "DMAR structure {index} ({kind}) scope {scope}: type {scope_type} not allowed")
            }
            Self::ScopePath { index, kind, scope, device, function } => write!(
                formatter,
                "DMAR structure {index} ({kind}) scope {scope}: path element {device:#x}.{function:#x} out of range"
            ),
        }
    }
}
