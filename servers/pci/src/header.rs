//! The standard configuration header: identity, class, layout, bus numbers.

use capabilities::pci::{Bdf, BridgeBuses, ClassCode, HeaderKind};

use crate::config::{ConfigSpace, Function};
use crate::error::PciError;

/// Register offsets of the standard header shared by all layouts.
pub mod reg {
    /// Vendor id (16 bits), device id above it.
    pub const VENDOR_ID: u16 = 0x00;
    /// Command register (16 bits), status above it.
    pub const COMMAND: u16 = 0x04;
    /// Revision id, then programming interface, sub-class and base class.
    pub const CLASS_REVISION: u16 = 0x08;
    /// Cache line size, latency timer, header type, BIST.
    pub const HEADER_TYPE_DWORD: u16 = 0x0c;
    /// First BAR.
    pub const BAR0: u16 = 0x10;
    /// Type 0: subsystem vendor id (16 bits), subsystem id above it.
    pub const SUBSYSTEM: u16 = 0x2c;
    /// Types 0 and 1: the capabilities pointer (8 bits).
    pub const CAPABILITIES_POINTER: u16 = 0x34;
    /// CardBus: the capabilities pointer.
    pub const CARDBUS_CAPABILITIES_POINTER: u16 = 0x14;
    /// Types 1 and 2: primary, secondary, subordinate bus numbers.
    pub const BUS_NUMBERS: u16 = 0x18;
}

/// Command register: the function answers I/O-space accesses.
pub const COMMAND_IO: u16 = 1 << 0;
/// Command register: the function answers memory-space accesses.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Status register: the function has a capability list.
pub const STATUS_CAPABILITIES: u16 = 1 << 4;

/// The decoded standard header of one function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// Vendor id.
    pub vendor_id: u16,
    /// Device id.
    pub device_id: u16,
    /// Command register.
    pub command: u16,
    /// Status register.
    pub status: u16,
    /// Revision id.
    pub revision: u8,
    /// Class code.
    pub class: ClassCode,
    /// Header layout.
    pub kind: HeaderKind,
    /// The multifunction bit of the header type register.
    pub multifunction: bool,
    /// Subsystem vendor id (type 0 only; 0 otherwise).
    pub subsystem_vendor_id: u16,
    /// Subsystem id (type 0 only; 0 otherwise).
    pub subsystem_id: u16,
    /// Bus numbers of a type 1 or CardBus bridge.
    pub bridge: Option<BridgeBuses>,
}

/// Whether the first dword of a function means "nothing there": all ones
/// (no device answered) or one of the half-valid patterns Linux also
/// rejects, which some broken devices return while not ready.
const fn absent(ids: u32) -> bool {
    matches!(ids, 0xffff_ffff | 0x0000_0000 | 0x0000_ffff | 0xffff_0000)
}

impl Header {
    /// Reads the header of `bdf`; `None` if no function answers there.
    pub fn read<C: ConfigSpace + ?Sized>(cfg: &mut C, bdf: Bdf) -> Result<Option<Self>, PciError> {
        Self::read_function(&mut Function::new(cfg, bdf))
    }

    pub(crate) fn read_function<C: ConfigSpace + ?Sized>(f: &mut Function<'_, C>) -> Result<Option<Self>, PciError> {
        let ids = f.read32(reg::VENDOR_ID)?;
        if absent(ids) {
            return Ok(None);
        }
        let command_status = f.read32(reg::COMMAND)?;
        let [revision, interface, sub, base] = f.read32(reg::CLASS_REVISION)?.to_le_bytes();
        let header_type = f.read32(reg::HEADER_TYPE_DWORD)?.to_le_bytes()[2];
        let kind = match header_type & 0x7f {
            0 => HeaderKind::Normal,
            1 => HeaderKind::PciBridge,
            2 => HeaderKind::CardBus,
            other => HeaderKind::Unknown(other),
        };
        let (subsystem_vendor_id, subsystem_id) = match kind {
            HeaderKind::Normal => {
                let subsystem = f.read32(reg::SUBSYSTEM)?;
                (subsystem as u16, (subsystem >> 16) as u16)
            }
            _ => (0, 0),
        };
        let bridge = match kind {
            HeaderKind::PciBridge | HeaderKind::CardBus => {
                let [primary, secondary, subordinate, _] = f.read32(reg::BUS_NUMBERS)?.to_le_bytes();
                Some(BridgeBuses { primary, secondary, subordinate })
            }
            _ => None,
        };
        Ok(Some(Self {
            vendor_id: ids as u16,
            device_id: (ids >> 16) as u16,
            command: command_status as u16,
            status: (command_status >> 16) as u16,
            revision,
            class: ClassCode { base, sub, interface },
            kind,
            multifunction: header_type & 0x80 != 0,
            subsystem_vendor_id,
            subsystem_id,
            bridge,
        }))
    }

    /// Where the capabilities pointer lives, if the function says it has a
    /// capability list and its layout defines one.
    pub fn capabilities_pointer(&self) -> Option<u16> {
        if self.status & STATUS_CAPABILITIES == 0 {
            return None;
        }
        match self.kind {
            HeaderKind::Normal | HeaderKind::PciBridge => Some(reg::CAPABILITIES_POINTER),
            HeaderKind::CardBus => Some(reg::CARDBUS_CAPABILITIES_POINTER),
            HeaderKind::Unknown(_) => None,
        }
    }

    /// Whether this is a host bridge (class 06/00), which may have extended
    /// configuration space without a PCI Express capability.
    pub fn is_host_bridge(&self) -> bool {
        self.class.base == 0x06 && self.class.sub == 0x00
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeConfig, FakeFunction, bdf};

    #[test]
    fn decodes_type_0_and_type_1_headers() {
        let mut endpoint = FakeFunction::endpoint(0x1234, 0x11e8).multifunction();
        endpoint.set32(0x08, 0x00ff_0010);
        endpoint.set32(0x2c, 0x1100_1af4);
        let mut cfg = FakeConfig::default()
            .with("00:05.0", endpoint)
            .with("00:06.0", FakeFunction::bridge(0x1b36, 0x0001, 0, 1, 4).legacy_cap(0x40, 5, 0));
        let header = Header::read(&mut cfg, bdf("00:05.0")).unwrap().unwrap();
        assert_eq!((header.vendor_id, header.device_id, header.revision), (0x1234, 0x11e8, 0x10));
        assert_eq!((header.class.value(), header.kind, header.multifunction), (0x00_ff00, HeaderKind::Normal, true));
        assert_eq!((header.subsystem_vendor_id, header.subsystem_id), (0x1af4, 0x1100));
        assert_eq!((header.bridge, header.capabilities_pointer()), (None, None));
        let bridge = Header::read(&mut cfg, bdf("00:06.0")).unwrap().unwrap();
        assert_eq!(bridge.bridge, Some(BridgeBuses { primary: 0, secondary: 1, subordinate: 4 }));
        assert_eq!((bridge.kind, bridge.subsystem_vendor_id), (HeaderKind::PciBridge, 0));
        assert_eq!(bridge.capabilities_pointer(), Some(reg::CAPABILITIES_POINTER));
        assert_eq!(Header::read(&mut cfg, bdf("00:07.0")), Ok(None));
    }

    #[test]
    fn cardbus_and_unknown_layouts() {
        let mut cardbus = FakeFunction::bridge(0x104c, 0xac56, 0, 2, 5).legacy_cap(0x80, 1, 0);
        cardbus.bytes[0x0e] = 2;
        let mut odd = FakeFunction::endpoint(1, 1).legacy_cap(0x40, 5, 0);
        odd.bytes[0x0e] = 0x7f;
        let mut cfg = FakeConfig::default().with("00:01.0", cardbus).with("00:02.0", odd);
        let cardbus = Header::read(&mut cfg, bdf("00:01.0")).unwrap().unwrap();
        assert_eq!((cardbus.kind, cardbus.capabilities_pointer()), (HeaderKind::CardBus, Some(0x14)));
        assert_eq!(cardbus.bridge.map(|buses| buses.secondary), Some(2));
        let odd = Header::read(&mut cfg, bdf("00:02.0")).unwrap().unwrap();
        assert_eq!((odd.kind, odd.capabilities_pointer(), odd.bridge), (HeaderKind::Unknown(0x7f), None, None));
    }
}
