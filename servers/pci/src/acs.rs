//! The ACS extended capability: decoding, and enabling isolation as Linux does.

use capabilities::pci::{AcsFlags, AcsInfo};

use crate::caps::{Capability, check_fits};
use crate::config::{CONFIG_SPACE_SIZE, ConfigSpace, Function};
use crate::error::PciError;

/// Offset of the ACS capability register in the capability.
const CAPABILITY: u16 = 0x04;
/// Offset of the ACS control register.
const CONTROL: u16 = 0x06;

/// Decodes the ACS capability at `capability`.
pub(crate) fn decode<C: ConfigSpace + ?Sized>(
    f: &mut Function<'_, C>,
    capability: Capability,
) -> Result<AcsInfo, PciError> {
    check_fits(f.bdf(), capability, CONTROL + 2, CONFIG_SPACE_SIZE)?;
    let registers = f.read32(capability.offset + CAPABILITY)?;
    Ok(AcsInfo {
        offset: capability.offset,
        capability: AcsFlags(registers as u16),
        control: AcsFlags((registers >> 16) as u16),
    })
}

/// Turns on every isolation control the port implements (source
/// validation, request and completion redirect, upstream forwarding) and
/// returns the capability as the hardware then reads.
///
/// This is what Linux does to every function when an IOMMU is in use,
/// before it forms groups; group formation reads the control register, so
/// the PCI server must do the same first or groups come out larger than
/// Linux's. Translation blocking stays off: Linux sets it only for
/// untrusted or external-facing ports.
pub(crate) fn enable_isolation<C: ConfigSpace + ?Sized>(
    f: &mut Function<'_, C>,
    acs: AcsInfo,
) -> Result<AcsInfo, PciError> {
    if cfg!(feature = "mutant-acs-off") {
        return Ok(acs);
    }
    let wanted = acs.control.union(acs.capability.intersection(AcsFlags::ISOLATION));
    // Offsets come from decode, which checked that the registers fit.
    let control = acs.offset + CONTROL;
    if wanted != acs.control {
        f.write16(control, wanted.0)?;
    }
    Ok(AcsInfo { control: AcsFlags(f.read16(control)?), ..acs })
}
