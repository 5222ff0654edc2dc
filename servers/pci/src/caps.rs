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

/// Capability ids this crate decodes (8-bit legacy, 16-bit extended).
pub mod id {
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
    /// configuration space (see [`crate::enumerate()`]).
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

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use super::*;
    use crate::testing::{FakeConfig, FakeFunction, bdf};

    fn legacy(function: FakeFunction) -> Vec<Result<Capability, PciError>> {
        let mut cfg = FakeConfig::default().with("00:01.0", function);
        LegacyCapabilities::new(&mut cfg, bdf("00:01.0"), Some(0x34)).collect()
    }

    fn extended(function: FakeFunction) -> Vec<Result<Capability, PciError>> {
        let mut cfg = FakeConfig::default().with("00:01.0", function);
        ExtendedCapabilities::new(&mut cfg, bdf("00:01.0")).collect()
    }

    fn cap(id: u16, offset: u16) -> Result<Capability, PciError> {
        Ok(Capability { id, offset })
    }

    fn looped(list: CapabilityList, offset: u16) -> Result<Capability, PciError> {
        Err(PciError::CapabilityLoop { bdf: bdf("00:01.0"), list, offset })
    }

    #[test]
    fn legacy_list_in_order() {
        let function = FakeFunction::endpoint(1, 2).legacy_cap(0x40, 0x05, 0x50).legacy_cap(0x50, 0x10, 0x00);
        assert_eq!(legacy(function), [cap(5, 0x40), cap(0x10, 0x50)]);
    }

    #[test]
    fn legacy_pointers_ignore_their_low_bits_and_end_below_0x40() {
        let mut function = FakeFunction::endpoint(1, 2).legacy_cap(0x40, 0x05, 0x3c);
        function.bytes[0x34] = 0x43;
        assert_eq!(legacy(function), [cap(5, 0x40)]);
    }

    #[test]
    fn legacy_id_0xff_ends_the_list() {
        let function = FakeFunction::endpoint(1, 2).legacy_cap(0x40, 0xff, 0x50).legacy_cap(0x50, 0x10, 0);
        assert!(legacy(function).is_empty());
    }

    #[test]
    fn legacy_loops_are_reported_where_they_close() {
        let function = FakeFunction::endpoint(1, 2).legacy_cap(0x40, 0x05, 0x50).legacy_cap(0x50, 0x10, 0x40);
        assert_eq!(legacy(function), [cap(5, 0x40), cap(0x10, 0x50), looped(CapabilityList::Legacy, 0x40)]);
        let function = FakeFunction::endpoint(1, 2).legacy_cap(0x40, 0x05, 0x41);
        assert_eq!(legacy(function), [cap(5, 0x40), looped(CapabilityList::Legacy, 0x40)]);
    }

    #[test]
    fn the_longest_legacy_list_is_walked_whole() {
        let mut function = FakeFunction::endpoint(1, 2);
        for offset in (0x40..=0xfc).step_by(4) {
            let next = if offset == 0xfc { 0 } else { offset + 4 };
            function = function.legacy_cap(offset as u8, 0x09, next as u8);
        }
        let caps = legacy(function);
        assert_eq!(caps.len(), 48);
        assert!(caps.iter().all(Result::is_ok));
    }

    #[test]
    fn a_device_that_answers_nothing_has_no_capabilities() {
        let mut cfg = FakeConfig::default();
        assert_eq!(LegacyCapabilities::new(&mut cfg, bdf("00:01.0"), Some(0x34)).count(), 0);
        assert_eq!(ExtendedCapabilities::new(&mut cfg, bdf("00:01.0")).count(), 0);
    }

    #[test]
    fn extended_list_in_order_until_a_pointer_below_0x100() {
        let function =
            FakeFunction::endpoint(1, 2).extended_cap(0x100, 0x0001, 0x148).extended_cap(0x148, 0x000d, 0x0fc);
        assert_eq!(extended(function), [cap(1, 0x100), cap(0xd, 0x148)]);
    }

    #[test]
    fn extended_loops_are_reported() {
        let function =
            FakeFunction::endpoint(1, 2).extended_cap(0x100, 0x0001, 0x200).extended_cap(0x200, 0x000d, 0x100);
        assert_eq!(extended(function), [cap(1, 0x100), cap(0xd, 0x200), looped(CapabilityList::Extended, 0x100)]);
        let function = FakeFunction::endpoint(1, 2).extended_cap(0x100, 0x0001, 0x100);
        assert_eq!(extended(function), [cap(1, 0x100), looped(CapabilityList::Extended, 0x100)]);
    }

    #[test]
    fn extended_pointers_stay_inside_config_space() {
        // A next pointer of 0xfff: masked to 0xffc, the last dword.
        let mut function = FakeFunction::endpoint(1, 2).extended_cap(0x100, 0x0001, 0);
        function.set32(0x100, 0xfff1_0001);
        let function = function.extended_cap(0xffc, 0x000d, 0);
        assert_eq!(extended(function), [cap(1, 0x100), cap(0xd, 0xffc)]);
    }

    #[test]
    fn check_fits_refuses_registers_past_the_end() {
        let at_end = Capability { id: id::ACS, offset: 0xffc };
        assert_eq!(
            check_fits(bdf("00:01.0"), at_end, 8, CONFIG_SPACE_SIZE),
            Err(PciError::CapabilityTruncated { bdf: bdf("00:01.0"), id: id::ACS, offset: 0xffc })
        );
        assert_eq!(check_fits(bdf("00:01.0"), Capability { id: 1, offset: 0xf8 }, 8, LEGACY_SPACE_SIZE), Ok(()));
    }

    #[test]
    fn access_failures_name_the_function_and_offset() {
        let mut cfg = FakeConfig::default().with("00:01.0", FakeFunction::endpoint(1, 2).legacy_cap(0x40, 5, 0));
        cfg.fail_at = Some((bdf("00:01.0"), 0x40));
        let walked: Vec<_> = LegacyCapabilities::new(&mut cfg, bdf("00:01.0"), Some(0x34)).collect();
        assert_eq!(
            walked,
            [Err(PciError::Access { bdf: bdf("00:01.0"), offset: 0x40, error: crate::config::AccessError::BadOffset })]
        );
    }
}
