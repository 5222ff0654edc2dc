//! One fault recording register, decoded.

use acpi_tables::dmar::PciAddress;

use super::reason::FaultReason;
use crate::registers::frcd;

/// The kind of request that faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAccess {
    /// A DMA read (or an interrupt request, for remapping faults).
    Read,
    /// A DMA write.
    Write,
}

/// A decoded fault record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultRecord {
    /// The requester (its source id as bus, device, function).
    pub source: PciAddress,
    /// Why it faulted.
    pub reason: FaultReason,
    /// The page address of the request; for interrupt-remapping faults,
    /// bits 63:48 hold the interrupt index instead.
    pub address: u64,
    /// Read or write.
    pub access: FaultAccess,
    /// The request's PASID, if it carried one.
    pub pasid: Option<u32>,
    /// The request was for supervisor privilege.
    pub privileged: bool,
    /// The request was for execute permission.
    pub execute: bool,
}

impl FaultRecord {
    /// Decodes the low and high halves of a fault recording register;
    /// `None` if its F bit is clear (no fault recorded).
    pub fn decode(low: u64, high: u64) -> Option<Self> {
        if high & frcd::F == 0 {
            return None;
        }
        let pasid_present = high >> 31 & 1 != 0;
        Some(Self {
            source: PciAddress::from_source_id(high as u16),
            reason: FaultReason((high >> 32) as u8),
            address: low & !0xfff,
            access: if high & frcd::T1 != 0 { FaultAccess::Read } else { FaultAccess::Write },
            pasid: pasid_present.then_some((high >> 40 & 0xf_ffff) as u32),
            privileged: high >> 29 & 1 != 0,
            execute: high >> 30 & 1 != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_qemu_style_record() {
        // What QEMU 7.2 records for edu at 00:03.0 reading IOVA 0x4000
        // through a blocked (zeroed) context entry.
        let high = frcd::F | frcd::T1 | 2 << 32 | 0x0018;
        let record = FaultRecord::decode(0x4123, high).unwrap();
        assert_eq!(record.source, PciAddress { bus: 0, device: 3, function: 0 });
        assert_eq!(record.reason, FaultReason::CONTEXT_NOT_PRESENT);
        assert_eq!(record.address, 0x4000);
        assert_eq!(record.access, FaultAccess::Read);
        assert_eq!(record.pasid, None);
        let write = FaultRecord::decode(0x1_0000_0000, frcd::F | 5 << 32 | 0x0108 | 1 << 31 | 0x123 << 40).unwrap();
        assert_eq!(write.access, FaultAccess::Write);
        assert_eq!(write.source, PciAddress { bus: 1, device: 1, function: 0 });
        assert_eq!(write.pasid, Some(0x123));
        assert_eq!(FaultRecord::decode(0x4000, high & !frcd::F), None);
    }
}
