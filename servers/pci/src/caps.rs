//! Capability list walks that a looping or out-of-range list cannot hang.
//!
//! Both lists are linked through next pointers the device supplies, so a
//! broken or malicious device can make them loop. Each walk remembers every
//! dword it visited and stops with [`PciError::CapabilityLoop`] on a
//! revisit, which bounds it by the size of configuration space (48 legacy,
//! 960 extended positions) whatever the device answers.

use capabilities::pci::{Bdf, CapabilityList};

use crate::config::{CONFIG_SPACE_SIZE, ConfigSpace, Function, LEGACY_SPACE_SIZE};
use crate::error::PciError;

/// The first offset a legacy capability may occupy (below it is the header).
const LEGACY_FIRST: u8 = 0x40;

/// Legacy capability ids this crate decodes.
pub mod id {
    /// Power management.
    pub const POWER_MANAGEMENT: u16 = 0x01;
    /// MSI.
    pub const MSI: u16 = 0x05;
    /// PCI-X.
    pub const PCIX: u16 = 0x07;
    /// PCI Express.
    pub const PCIE: u16 = 0x10;
    /// MSI-X.
    pub const MSIX: u16 = 0x11;
    /// Extended list: Access Control Services.
    pub const ACS: u16 = 0x000d;
}

/// One entry of a capability list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Capability {
    /// The capability id (8 bits in the legacy list, 16 in the extended).
    pub id: u16,
    /// Its offset in configuration space.
    pub offset: u16,
}

/// Which dwords of configuration space a walk has visited.
struct Visited([u64; CONFIG_SPACE_SIZE as usize / 4 / 64]);

impl Visited {
    /// Marks the dword at `offset`; false if it was marked already.
    fn insert(&mut self, offset: u16) -> bool {
        let dword = usize::from(offset / 4);
        let (word, bit) = (dword / 64, dword % 64);
        match self.0.get_mut(word) {
            Some(bits) if *bits & (1 << bit) == 0 => {
                *bits |= 1 << bit;
                true
            }
            _ => false,
        }
    }
}

/// The legacy capability list (first 256 bytes), in list order.
///
/// Follows Linux's reading of the list: pointers have their low two bits
/// ignored, a pointer below 0x40 ends the list, and so does id 0xff (what an
/// absent function reads as).
pub struct LegacyCapabilities<'a, C: ConfigSpace + ?Sized> {
    f: Function<'a, C>,
    /// Where the next pointer is to be read from; `None` once the walk ended.
    pointer_at: Option<u16>,
    visited: Visited,
}

impl<'a, C: ConfigSpace + ?Sized> LegacyCapabilities<'a, C> {
    /// Walks `bdf`'s list whose first pointer is at `pointer_at` (see
    /// [`crate::header::Header::capabilities_pointer`]; `None`: no list).
    pub fn new(cfg: &'a mut C, bdf: Bdf, pointer_at: Option<u16>) -> Self {
        Self { f: Function::new(cfg, bdf), pointer_at, visited: Visited([0; 16]) }
    }

    fn step(&mut self, pointer_at: u16) -> Result<Option<Capability>, PciError> {
        let pointer = self.f.read8(pointer_at)?;
        if pointer < LEGACY_FIRST {
            return Ok(None);
        }
        let offset = u16::from(pointer & !3);
        if !self.visited.insert(offset) {
            return Err(PciError::CapabilityLoop { bdf: self.f.bdf(), list: CapabilityList::Legacy, offset });
        }
        let id = self.f.read8(offset)?;
        if id == 0xff {
            return Ok(None);
        }
        // The next pointer follows the id byte; offset is at most 0xfc, so it fits.
        self.pointer_at = Some(offset + 1);
        Ok(Some(Capability { id: u16::from(id), offset }))
    }
}

impl<C: ConfigSpace + ?Sized> Iterator for LegacyCapabilities<'_, C> {
    type Item = Result<Capability, PciError>;

    fn next(&mut self) -> Option<Self::Item> {
        let pointer_at = self.pointer_at.take()?;
        self.step(pointer_at).transpose()
    }
}

/// The PCI Express extended capability list (from 0x100), in list order.
///
/// A header of zero (no capabilities) or all ones (no extended space) ends
/// the list, as does a next pointer below 0x100.
pub struct ExtendedCapabilities<'a, C: ConfigSpace + ?Sized> {
    f: Function<'a, C>,
    /// Offset of the next header to read; `None` once the walk ended.
    at: Option<u16>,
    visited: Visited,
}

impl<'a, C: ConfigSpace + ?Sized> ExtendedCapabilities<'a, C> {
    /// Walks `bdf`'s extended list. Call only for a function with extended
    /// configuration space (see [`crate::enumerate`]).
    pub fn new(cfg: &'a mut C, bdf: Bdf) -> Self {
        Self { f: Function::new(cfg, bdf), at: Some(LEGACY_SPACE_SIZE), visited: Visited([0; 16]) }
    }

    fn step(&mut self, offset: u16) -> Result<Option<Capability>, PciError> {
        if !self.visited.insert(offset) {
            return Err(PciError::CapabilityLoop { bdf: self.f.bdf(), list: CapabilityList::Extended, offset });
        }
        let header = self.f.read32(offset)?;
        if header == 0 || header == u32::MAX {
            return Ok(None);
        }
        // Bits 31:20 point to the next header; the mask keeps it dword aligned
        // and below 0x1000, so every later read is in range.
        let next = ((header >> 20) & 0xffc) as u16;
        if next >= LEGACY_SPACE_SIZE {
            self.at = Some(next);
        }
        Ok(Some(Capability { id: header as u16, offset }))
    }
}

impl<C: ConfigSpace + ?Sized> Iterator for ExtendedCapabilities<'_, C> {
    type Item = Result<Capability, PciError>;

    fn next(&mut self) -> Option<Self::Item> {
        let offset = self.at.take()?;
        self.step(offset).transpose()
    }
}

/// Fails with [`PciError::CapabilityTruncated`] unless a capability at
/// `offset` with `len` bytes of registers ends within `limit`.
pub(crate) fn check_fits(bdf: Bdf, capability: Capability, len: u16, limit: u16) -> Result<(), PciError> {
    match capability.offset.checked_add(len) {
        Some(end) if end <= limit => Ok(()),
        _ => Err(PciError::CapabilityTruncated { bdf, id: capability.id, offset: capability.offset }),
    }
}
