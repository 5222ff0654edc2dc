//! Ranges a capability holds itself, device registers and I/O ports, and the arithmetic of their parts.

use serde::{Deserialize, Serialize};

use crate::abi::PAGE_SIZE;

/// Device registers `[base, base + pages * 4096)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RegisterRange {
    /// Page-aligned physical address.
    pub base: u64,
    /// Length in pages.
    pub pages: u32,
}

impl RegisterRange {
    /// Pages `[offset, offset + length)` of it, if they lie inside.
    pub fn slice(self, offset: u64, length: u64) -> Option<Self> {
        let pages = u32::try_from(length).ok().filter(|&pages| pages > 0)?;
        (offset.checked_add(length)? <= u64::from(self.pages))
            .then(|| Self { base: self.base + offset * PAGE_SIZE, pages })
    }
}

/// I/O ports `[base, base + count)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PortRange {
    /// First port.
    pub base: u16,
    /// Number of ports.
    pub count: u16,
}

impl PortRange {
    /// Ports `[offset, offset + length)` of it, if they lie inside.
    pub fn slice(self, offset: u64, length: u64) -> Option<Self> {
        let count = u16::try_from(length).ok().filter(|&count| count > 0)?;
        let first = u16::try_from(offset).ok()?;
        let base = self.base.checked_add(first)?;
        (offset.checked_add(length)? <= u64::from(self.count)).then_some(Self { base, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_lies_inside_or_is_none() {
        let registers = RegisterRange { base: 0xfed9_0000, pages: 4 };
        assert_eq!(registers.slice(1, 2), Some(RegisterRange { base: 0xfed9_1000, pages: 2 }));
        assert_eq!(registers.slice(3, 2), None);
        assert_eq!(registers.slice(0, 0), None);
        assert_eq!(registers.slice(u64::MAX, 2), None);
        let ports = PortRange { base: 0x70, count: 2 };
        assert_eq!(ports.slice(1, 1), Some(PortRange { base: 0x71, count: 1 }));
        assert_eq!(ports.slice(1, 2), None);
        assert_eq!(ports.slice(0x1_0000, 1), None);
    }
}
