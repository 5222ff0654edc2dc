//! The unit's register page, mapped uncached, as the library's register trait.

use iommu_server::registers::{Register32, Register64, Registers};
use userlib::cap::DeviceMemory;
use userlib::mmio::Mapping;

/// The mapped register set of one remapping unit.
pub struct MmioRegisters {
    /// The register page(s).
    pub mapping: Mapping<DeviceMemory>,
}

// Register offsets come from the specification or from the capability
// register, which the library checks against the mapped window before any
// access; an offset outside it reads as all ones, like an unclaimed bus
// read, and writes to it are dropped.
impl Registers for MmioRegisters {
    fn read32(&mut self, register: Register32) -> u32 {
        self.mapping.read32(register.offset.into()).unwrap_or(u32::MAX)
    }

    fn read64(&mut self, register: Register64) -> u64 {
        self.mapping.read64(register.offset.into()).unwrap_or(u64::MAX)
    }

    fn write32(&mut self, register: Register32, value: u32) {
        let _ = self.mapping.write32(register.offset.into(), value);
    }

    fn write64(&mut self, register: Register64, value: u64) {
        let _ = self.mapping.write64(register.offset.into(), value);
    }
}
