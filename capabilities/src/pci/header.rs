//! What a function's configuration header says: class, layout, bridge buses.

use serde::{Deserialize, Serialize};

/// The class code register: what kind of function this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClassCode {
    /// Base class (0x06: bridge, 0x02: network, 0x01: storage...).
    pub base: u8,
    /// Sub-class within the base class.
    pub sub: u8,
    /// Register-level programming interface.
    pub interface: u8,
}

impl ClassCode {
    /// The code as the 24-bit value Linux's sysfs `class` file shows.
    pub const fn value(self) -> u32 {
        ((self.base as u32) << 16) | ((self.sub as u32) << 8) | self.interface as u32
    }
}

/// The layout of the configuration header (header type bits 6:0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HeaderKind {
    /// Type 0: an ordinary function with six BARs.
    Normal,
    /// Type 1: a PCI-to-PCI bridge (including PCI Express ports).
    PciBridge,
    /// Type 2: a CardBus bridge.
    CardBus,
    /// A layout the specification does not define (the raw value).
    Unknown(u8),
}

/// Bus numbers a bridge (type 1 or CardBus header) forwards between.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BridgeBuses {
    /// The bus the bridge sits on, as its register says.
    pub primary: u8,
    /// The bus directly below the bridge.
    pub secondary: u8,
    /// The highest bus number below the bridge.
    pub subordinate: u8,
}
