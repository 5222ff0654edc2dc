//! The MSI and MSI-X capabilities.

use capabilities::pci::{BarLocation, MsiInfo, MsixInfo};

use crate::caps::{Capability, check_fits};
use crate::config::{ConfigSpace, Function, LEGACY_SPACE_SIZE};
use crate::error::PciError;

/// MSI message control: MSI enabled.
const MSI_ENABLE: u16 = 1 << 0;
/// MSI message control: the message address is 64 bits wide.
const MSI_64BIT: u16 = 1 << 7;
/// MSI message control: per-vector masking.
const MSI_MASKING: u16 = 1 << 8;
/// MSI-X message control: all vectors masked.
const MSIX_FUNCTION_MASK: u16 = 1 << 14;
/// MSI-X message control: MSI-X enabled.
const MSIX_ENABLE: u16 = 1 << 15;

/// Bytes of an MSI capability: 10, plus 4 for a 64-bit address, plus 10
/// for the mask and pending registers (with their alignment padding).
fn msi_len(control: u16) -> u16 {
    let address = if control & MSI_64BIT != 0 { 14 } else { 10 };
    if control & MSI_MASKING != 0 { address + 10 } else { address }
}

/// Decodes the MSI capability at `capability`.
pub(crate) fn decode_msi<C: ConfigSpace + ?Sized>(
    f: &mut Function<'_, C>,
    capability: Capability,
) -> Result<MsiInfo, PciError> {
    check_fits(f.bdf(), capability, 4, LEGACY_SPACE_SIZE)?;
    let control = f.read16(capability.offset + 2)?;
    check_fits(f.bdf(), capability, msi_len(control), LEGACY_SPACE_SIZE)?;
    Ok(MsiInfo {
        offset: capability.offset as u8,
        address_64bit: control & MSI_64BIT != 0,
        per_vector_masking: control & MSI_MASKING != 0,
        // Values 6 and 7 are reserved; 5 (32 vectors) is the most there is.
        vectors_log2: ((control >> 1) & 7).min(5) as u8,
        enabled: control & MSI_ENABLE != 0,
    })
}

/// Splits a table or PBA register into its BAR indicator and offset.
fn location(register: u32) -> BarLocation {
    BarLocation { bar: (register & 7) as u8, offset: register & !7 }
}

/// Decodes the MSI-X capability at `capability`.
pub(crate) fn decode_msix<C: ConfigSpace + ?Sized>(
    f: &mut Function<'_, C>,
    capability: Capability,
) -> Result<MsixInfo, PciError> {
    check_fits(f.bdf(), capability, 12, LEGACY_SPACE_SIZE)?;
    let control = (f.read32(capability.offset)? >> 16) as u16;
    let table = f.read32(capability.offset + 4)?;
    let pending = f.read32(capability.offset + 8)?;
    Ok(MsixInfo {
        offset: capability.offset as u8,
        table_size: (control & 0x7ff) + 1,
        table: location(table),
        pending: location(pending),
        enabled: control & MSIX_ENABLE != 0,
        function_masked: control & MSIX_FUNCTION_MASK != 0,
    })
}
