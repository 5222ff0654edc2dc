//! A PCI function's address ([`Bdf`]) and sets of addresses on one bus.

use core::fmt;

use serde::{Deserialize, Serialize};

/// A PCI function's address on its segment: bus, device (0-31) and function
/// (0-7), stored as the 16-bit requester id the IOMMU sees.
///
/// Every `u16` is a valid address, so a decoded value needs no check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Bdf(u16);

impl Bdf {
    /// The address `bus:device.function`; `None` if `device > 31` or `function > 7`.
    pub const fn new(bus: u8, device: u8, function: u8) -> Option<Self> {
        if device > 31 || function > 7 {
            return None;
        }
        Some(Self::from_devfn(bus, (device << 3) | function))
    }

    /// The address `bus:device.function` as a constant, so that a device
    /// above 31 or a function above 7 fails the build rather than a check.
    pub const fn at(bus: u8, device: u8, function: u8) -> Self {
        match Self::new(bus, device, function) {
            Some(bdf) => bdf,
            None => panic!("a PCI device number is 0-31 and a function 0-7"),
        }
    }

    /// The address with `devfn` (device in bits 7:3, function in bits 2:0) on `bus`.
    pub const fn from_devfn(bus: u8, devfn: u8) -> Self {
        Self(((bus as u16) << 8) | devfn as u16)
    }

    /// The address a 16-bit requester id names.
    pub const fn from_requester_id(id: u16) -> Self {
        Self(id)
    }

    /// The 16-bit requester id (bus in bits 15:8, devfn in bits 7:0).
    pub const fn requester_id(self) -> u16 {
        self.0
    }

    /// Bus number.
    pub const fn bus(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// Device (slot) number, 0-31.
    pub const fn device(self) -> u8 {
        (self.0 as u8) >> 3
    }

    /// Function number, 0-7.
    pub const fn function(self) -> u8 {
        self.0 as u8 & 7
    }

    /// Device and function packed as one byte.
    pub const fn devfn(self) -> u8 {
        self.0 as u8
    }
}

/// Prints `BB:DD.F` in hexadecimal, as `lspci` and Linux's sysfs names do.
impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{:x}", self.bus(), self.device(), self.function())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Bdf {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "{=u8:02x}:{=u8:02x}.{=u8:x}", self.bus(), self.device(), self.function())
    }
}

/// A set of device/function numbers on one bus (a 256-bit map).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DevfnSet {
    words: [u32; 8],
}

impl DevfnSet {
    /// The empty set.
    pub const fn new() -> Self {
        Self { words: [0; 8] }
    }

    /// Adds `devfn`.
    pub fn insert(&mut self, devfn: u8) {
        if let Some(word) = self.words.get_mut(usize::from(devfn >> 5)) {
            *word |= 1 << (devfn & 31);
        }
    }

    /// Whether `devfn` is in the set.
    pub fn contains(&self, devfn: u8) -> bool {
        self.words.get(usize::from(devfn >> 5)).is_some_and(|word| word & (1 << (devfn & 31)) != 0)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&word| word == 0)
    }

    /// The members in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=u8::MAX).filter(|&devfn| self.contains(devfn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdf_fields_and_display() {
        let bdf = Bdf::new(0x1f, 0x1c, 7).unwrap();
        assert_eq!((bdf.bus(), bdf.device(), bdf.function(), bdf.devfn()), (0x1f, 0x1c, 7, 0xe7));
        assert_eq!(bdf.requester_id(), 0x1fe7);
        assert_eq!(std::format!("{bdf}"), "1f:1c.7");
        assert_eq!(Bdf::new(0, 32, 0), None);
        assert_eq!(Bdf::new(0, 0, 8), None);
        assert!(Bdf::new(0, 5, 1) < Bdf::new(1, 0, 0));
        const CONSTANT: Bdf = Bdf::at(0x1f, 0x1c, 7);
        assert_eq!(Some(CONSTANT), Bdf::new(0x1f, 0x1c, 7));
    }

    #[test]
    fn devfn_set() {
        let mut set = DevfnSet::new();
        assert!(set.is_empty());
        set.insert(0);
        set.insert(255);
        set.insert(33);
        assert!(set.contains(33) && !set.contains(32));
        assert_eq!(set.iter().collect::<std::vec::Vec<_>>(), [0, 33, 255]);
    }
}
