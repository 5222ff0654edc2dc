//! The configuration-space accessor every other module reads through.
//!
//! The PCI server implements [`ConfigSpace`] over ECAM (see [`crate::ecam`]);
//! host tests implement it over recorded bytes. The logic in this crate only
//! ever passes offsets below [`CONFIG_SPACE_SIZE`] that are naturally aligned
//! for the access width, so an implementation may treat anything else as a
//! bug and return an error.

use capabilities::pci::Bdf;

use crate::error::PciError;

/// Bytes of configuration space per function with extended (PCIe) space.
pub const CONFIG_SPACE_SIZE: u16 = 4096;

/// Bytes of the conventional PCI configuration space.
pub const LEGACY_SPACE_SIZE: u16 = 256;

/// Why one configuration access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AccessError {
    /// The offset is beyond configuration space or not aligned to the width.
    BadOffset,
    /// The bus is outside the ECAM window the accessor covers.
    BusOutsideWindow,
}

/// Reads and writes of one function's configuration registers.
///
/// Writes must be real accesses of the given width, never read-modify-write
/// of a wider register: status and error registers have write-one-to-clear
/// bits that a wider write would clear by accident.
pub trait ConfigSpace {
    /// Reads the byte at `offset`.
    fn read8(&mut self, bdf: Bdf, offset: u16) -> Result<u8, AccessError>;
    /// Reads the 16-bit register at `offset` (2-byte aligned).
    fn read16(&mut self, bdf: Bdf, offset: u16) -> Result<u16, AccessError>;
    /// Reads the 32-bit register at `offset` (4-byte aligned).
    fn read32(&mut self, bdf: Bdf, offset: u16) -> Result<u32, AccessError>;
    /// Writes the byte at `offset`.
    fn write8(&mut self, bdf: Bdf, offset: u16, value: u8) -> Result<(), AccessError>;
    /// Writes the 16-bit register at `offset` (2-byte aligned).
    fn write16(&mut self, bdf: Bdf, offset: u16, value: u16) -> Result<(), AccessError>;
    /// Writes the 32-bit register at `offset` (4-byte aligned).
    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) -> Result<(), AccessError>;
}

/// Whether an access of `width` bytes at `offset` is one an implementation
/// must serve: inside configuration space and naturally aligned.
pub const fn access_is_valid(offset: u16, width: u16) -> bool {
    width != 0 && offset.is_multiple_of(width) && offset < CONFIG_SPACE_SIZE && CONFIG_SPACE_SIZE - offset >= width
}

/// One function's registers, with failures turned into [`PciError`]s that
/// name the function and offset.
pub(crate) struct Function<'a, C: ConfigSpace + ?Sized> {
    cfg: &'a mut C,
    bdf: Bdf,
}

impl<'a, C: ConfigSpace + ?Sized> Function<'a, C> {
    /// Accesses `bdf` through `cfg`.
    pub(crate) fn new(cfg: &'a mut C, bdf: Bdf) -> Self {
        Self { cfg, bdf }
    }

    /// The function's address.
    pub(crate) fn bdf(&self) -> Bdf {
        self.bdf
    }

    /// The accessor, for walks that borrow it themselves.
    pub(crate) fn cfg(&mut self) -> &mut C {
        self.cfg
    }

    fn error(&self, offset: u16) -> impl Fn(AccessError) -> PciError {
        let bdf = self.bdf;
        move |error| PciError::Access { bdf, offset, error }
    }

    /// Reads a byte.
    pub(crate) fn read8(&mut self, offset: u16) -> Result<u8, PciError> {
        self.cfg.read8(self.bdf, offset).map_err(self.error(offset))
    }

    /// Reads a 16-bit register.
    pub(crate) fn read16(&mut self, offset: u16) -> Result<u16, PciError> {
        self.cfg.read16(self.bdf, offset).map_err(self.error(offset))
    }

    /// Reads a 32-bit register.
    pub(crate) fn read32(&mut self, offset: u16) -> Result<u32, PciError> {
        self.cfg.read32(self.bdf, offset).map_err(self.error(offset))
    }

    /// Writes an 8-bit register.
    pub(crate) fn write8(&mut self, offset: u16, value: u8) -> Result<(), PciError> {
        self.cfg.write8(self.bdf, offset, value).map_err(self.error(offset))
    }

    /// Writes a 16-bit register.
    pub(crate) fn write16(&mut self, offset: u16, value: u16) -> Result<(), PciError> {
        self.cfg.write16(self.bdf, offset, value).map_err(self.error(offset))
    }

    /// Writes a 32-bit register.
    pub(crate) fn write32(&mut self, offset: u16, value: u32) -> Result<(), PciError> {
        self.cfg.write32(self.bdf, offset, value).map_err(self.error(offset))
    }
}
