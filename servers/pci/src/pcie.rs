//! The PCI Express capability: version and device/port type.

use capabilities::pci::{PcieDeviceType, PcieInfo};

use crate::caps::{Capability, check_fits};
use crate::config::{ConfigSpace, Function, LEGACY_SPACE_SIZE};
use crate::error::PciError;

/// Offset of the PCI Express capabilities register (flags) in the capability.
const FLAGS: u16 = 0x02;

/// Flags bit 8: the port is connected to a slot.
const FLAGS_SLOT: u16 = 1 << 8;

/// Decodes the PCI Express capability at `capability`. `parent` is the
/// effective type of the bridge above the function (`None` on a root bus or
/// below a conventional bridge), used to correct misreported switch ports.
pub(crate) fn decode<C: ConfigSpace + ?Sized>(
    f: &mut Function<'_, C>,
    capability: Capability,
    parent: Option<PcieDeviceType>,
) -> Result<PcieInfo, PciError> {
    check_fits(f.bdf(), capability, FLAGS + 2, LEGACY_SPACE_SIZE)?;
    let flags = f.read16(capability.offset + FLAGS)?;
    let reported_type = PcieDeviceType::from_field((flags >> 4) as u8);
    Ok(PcieInfo {
        // check_fits bounded the offset below 256.
        offset: capability.offset as u8,
        version: (flags & 0xf) as u8,
        device_type: reported_type.corrected(parent),
        reported_type,
        slot_implemented: flags & FLAGS_SLOT != 0,
    })
}
