//! ECAM: where a function's configuration registers sit in physical memory.
//!
//! An ACPI MCFG allocation gives a base address, a segment and a bus range.
//! Each bus takes 1 MiB, each device 32 KiB, each function 4 KiB; the base is
//! where bus 0 would be, even when the window starts at a later bus (the PCI
//! firmware specification's definition, which Linux follows).

use capabilities::pci::Bdf;

use crate::config::{AccessError, access_is_valid};

/// Bytes of ECAM space per bus.
pub const BUS_SIZE: u64 = 1 << 20;

/// Why an MCFG allocation cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EcamError {
    /// The end bus is below the start bus.
    BusRange {
        /// First bus.
        start_bus: u8,
        /// Last bus.
        end_bus: u8,
    },
    /// The base is zero, not 1 MiB aligned, or the window wraps around.
    Base {
        /// The base address.
        base: u64,
    },
}

/// One checked ECAM window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Ecam {
    base: u64,
    segment: u16,
    start_bus: u8,
    end_bus: u8,
}

impl Ecam {
    /// Checks an allocation: buses in order, base non-zero, 1 MiB aligned,
    /// and the window's end representable.
    pub fn new(base: u64, segment: u16, start_bus: u8, end_bus: u8) -> Result<Self, EcamError> {
        if end_bus < start_bus {
            return Err(EcamError::BusRange { start_bus, end_bus });
        }
        let end = base.checked_add((u64::from(end_bus) + 1) * BUS_SIZE);
        if base == 0 || !base.is_multiple_of(BUS_SIZE) || end.is_none() {
            return Err(EcamError::Base { base });
        }
        Ok(Self { base, segment, start_bus, end_bus })
    }

    /// The PCI segment the window serves.
    pub fn segment(&self) -> u16 {
        self.segment
    }

    /// First and last bus the window decodes.
    pub fn buses(&self) -> (u8, u8) {
        (self.start_bus, self.end_bus)
    }

    /// Physical address of the window's first byte (the start bus).
    pub fn window_start(&self) -> u64 {
        // new() checked that the whole window fits below 2^64.
        self.base + u64::from(self.start_bus) * BUS_SIZE
    }

    /// Bytes the window decodes.
    pub fn window_size(&self) -> u64 {
        (u64::from(self.end_bus) - u64::from(self.start_bus) + 1) * BUS_SIZE
    }

    /// Offset of a register from [`Self::window_start`], for an accessor
    /// that maps the window once. Fails for a bus outside the window or an
    /// offset that is out of range or unaligned for `width` bytes.
    pub fn offset_in_window(&self, bdf: Bdf, offset: u16, width: u16) -> Result<u64, AccessError> {
        if !access_is_valid(offset, width) {
            return Err(AccessError::BadOffset);
        }
        if bdf.bus() < self.start_bus || bdf.bus() > self.end_bus {
            return Err(AccessError::BusOutsideWindow);
        }
        let bus = u64::from(bdf.bus() - self.start_bus);
        Ok((bus << 20) | (u64::from(bdf.devfn()) << 12) | u64::from(offset))
    }

    /// Physical address of a register (see [`Self::offset_in_window`]).
    pub fn address(&self, bdf: Bdf, offset: u16, width: u16) -> Result<u64, AccessError> {
        Ok(self.window_start() + self.offset_in_window(bdf, offset, width)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_the_ecam_layout() {
        // QEMU q35: base 0xb000_0000, buses 0-255.
        let ecam = Ecam::new(0xb000_0000, 0, 0, 255).unwrap();
        let bdf = Bdf::new(1, 2, 3).unwrap();
        assert_eq!(ecam.address(bdf, 0x100, 4), Ok(0xb000_0000 + (1 << 20) + (2 << 15) + (3 << 12) + 0x100));
        assert_eq!(ecam.window_size(), 256 << 20);
    }

    #[test]
    fn the_base_is_where_bus_zero_would_be() {
        let ecam = Ecam::new(0xe000_0000, 1, 0x80, 0x8f).unwrap();
        assert_eq!(ecam.window_start(), 0xe800_0000);
        let bdf = Bdf::new(0x81, 0, 0).unwrap();
        assert_eq!(ecam.offset_in_window(bdf, 0, 4), Ok(1 << 20));
        assert_eq!(ecam.address(bdf, 0, 4), Ok(0xe810_0000));
        assert_eq!(ecam.address(Bdf::new(0x7f, 0, 0).unwrap(), 0, 4), Err(AccessError::BusOutsideWindow));
        assert_eq!(ecam.address(Bdf::new(0x90, 0, 0).unwrap(), 0, 4), Err(AccessError::BusOutsideWindow));
    }

    #[test]
    fn bad_offsets_and_allocations_are_refused() {
        let ecam = Ecam::new(0xb000_0000, 0, 0, 0).unwrap();
        let bdf = Bdf::new(0, 0, 0).unwrap();
        assert_eq!(ecam.address(bdf, 0x1000, 1), Err(AccessError::BadOffset));
        assert_eq!(ecam.address(bdf, 0xffe, 4), Err(AccessError::BadOffset));
        assert_eq!(ecam.address(bdf, 0x2, 4), Err(AccessError::BadOffset));
        assert_eq!(ecam.address(bdf, 0xffc, 4), Ok(0xb000_0ffc));
        assert_eq!(Ecam::new(0xb000_0000, 0, 5, 4), Err(EcamError::BusRange { start_bus: 5, end_bus: 4 }));
        assert_eq!(Ecam::new(0xb000_1000, 0, 0, 0), Err(EcamError::Base { base: 0xb000_1000 }));
        assert_eq!(Ecam::new(0, 0, 0, 0), Err(EcamError::Base { base: 0 }));
        assert_eq!(
            Ecam::new(u64::MAX - (1 << 20) + 1, 0, 0, 1),
            Err(EcamError::Base { base: u64::MAX - (1 << 20) + 1 })
        );
    }
}
