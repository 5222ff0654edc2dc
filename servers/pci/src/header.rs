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
    /// Status register (16 bits).
    pub const STATUS: u16 = 0x06;
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
