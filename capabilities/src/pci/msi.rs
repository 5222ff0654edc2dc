//! The MSI and MSI-X capabilities.

use serde::{Deserialize, Serialize};

/// The MSI capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MsiInfo {
    /// Offset of the capability.
    pub offset: u8,
    /// Whether the message address register is 64 bits wide.
    pub address_64bit: bool,
    /// Whether each vector can be masked on its own.
    pub per_vector_masking: bool,
    /// How many vectors the function can request: 2 to this power (0-5).
    pub vectors_log2: u8,
    /// Whether MSI is enabled.
    pub enabled: bool,
}

/// Where in a BAR an MSI-X structure lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BarLocation {
    /// BAR index (the BIR field, 0-7; 6 and 7 are reserved values).
    pub bar: u8,
    /// Byte offset within the BAR (8-byte aligned).
    pub offset: u32,
}

/// The MSI-X capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MsixInfo {
    /// Offset of the capability.
    pub offset: u8,
    /// Number of table entries (1-2048).
    pub table_size: u16,
    /// The vector table.
    pub table: BarLocation,
    /// The pending-bit array.
    pub pending: BarLocation,
    /// Whether MSI-X is enabled.
    pub enabled: bool,
    /// Whether all vectors are masked by the function mask bit.
    pub function_masked: bool,
}
