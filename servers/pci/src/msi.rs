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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeConfig, FakeFunction, bdf};

    fn msi_with(control: u16, offset: u8) -> Result<MsiInfo, PciError> {
        let mut function = FakeFunction::endpoint(1, 1).legacy_cap(offset, 0x05, 0);
        function.set16(usize::from(offset) + 2, control);
        let mut cfg = FakeConfig::default().with("00:01.0", function);
        decode_msi(&mut Function::new(&mut cfg, bdf("00:01.0")), Capability { id: 5, offset: offset.into() })
    }

    #[test]
    fn msi_control_bits() {
        let msi = msi_with(0x018a, 0x40).unwrap();
        assert_eq!((msi.address_64bit, msi.per_vector_masking, msi.vectors_log2, msi.enabled), (true, true, 5, false));
        // Reserved vector counts are read as the largest defined one.
        assert_eq!(msi_with(0x000e, 0x40).unwrap().vectors_log2, 5);
        // A 32-bit MSI without masking fits in the last 12 bytes; with masking it does not.
        assert!(msi_with(0x0000, 0xf4).is_ok());
        assert_eq!(
            msi_with(0x0100, 0xf4),
            Err(PciError::CapabilityTruncated { bdf: bdf("00:01.0"), id: 5, offset: 0xf4 })
        );
    }

    #[test]
    fn msix_table_and_pending_array() {
        let mut function = FakeFunction::endpoint(1, 1).legacy_cap(0x60, 0x11, 0);
        function.set16(0x62, 0x47ff);
        function.set32(0x64, 0x0000_4002);
        function.set32(0x68, 0x0000_6002);
        let mut cfg = FakeConfig::default().with("00:01.0", function);
        let capability = Capability { id: 0x11, offset: 0x60 };
        let msix = decode_msix(&mut Function::new(&mut cfg, bdf("00:01.0")), capability).unwrap();
        assert_eq!(msix.table_size, 2048);
        assert_eq!(msix.table, BarLocation { bar: 2, offset: 0x4000 });
        assert_eq!(msix.pending, BarLocation { bar: 2, offset: 0x6000 });
        assert!(msix.function_masked && !msix.enabled);
    }
}
