//! Programming and silencing a function's MSI and MSI-X capabilities, and its command register.

use capabilities::pci::{Bdf, HeaderKind, MsiInfo, MsixInfo, PciFunction};

use crate::config::{ConfigSpace, Function};
use crate::error::PciError;
use crate::header::{COMMAND_MEMORY, reg};

/// Command register: the function may master the bus (DMA, and MSI writes).
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command register: legacy INTx messages are disabled.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;

/// MSI message control: enable.
const MSI_ENABLE: u16 = 1 << 0;
/// MSI message control: multiple message enable (bits 6:4).
const MSI_MULTIPLE_ENABLE: u16 = 0x7 << 4;
/// MSI-X message control: enable.
const MSIX_ENABLE: u16 = 1 << 15;
/// MSI-X message control: every vector masked, whatever its entry says.
const MSIX_FUNCTION_MASK: u16 = 1 << 14;

/// Offsets of the MSI registers after the control word.
struct MsiLayout {
    address_high: Option<u16>,
    data: u16,
    mask: Option<u16>,
}

fn layout(msi: MsiInfo) -> MsiLayout {
    let base = u16::from(msi.offset);
    if msi.address_64bit {
        MsiLayout { address_high: Some(base + 8), data: base + 12, mask: msi.per_vector_masking.then_some(base + 16) }
    } else {
        MsiLayout { address_high: None, data: base + 8, mask: msi.per_vector_masking.then_some(base + 12) }
    }
}

/// Points the function's single MSI vector at `address`/`data`, unmasks it,
/// enables MSI and disables INTx (a device raising both would raise twice).
pub fn program_msi<C: ConfigSpace + ?Sized>(
    cfg: &mut C,
    bdf: Bdf,
    msi: MsiInfo,
    address: u64,
    data: u32,
) -> Result<(), PciError> {
    let f = &mut Function::new(cfg, bdf);
    let control_at = u16::from(msi.offset) + 2;
    let control = f.read16(control_at)?;
    // Disabled while the message changes, so no half-written message fires.
    f.write16(control_at, control & !(MSI_ENABLE | MSI_MULTIPLE_ENABLE))?;
    let registers = layout(msi);
    f.write32(u16::from(msi.offset) + 4, address as u32)?;
    if let Some(high) = registers.address_high {
        f.write32(high, (address >> 32) as u32)?;
    }
    // The data register is 16 bits (extended message data is not used).
    f.write16(registers.data, data as u16)?;
    if let Some(mask) = registers.mask {
        let masked = f.read32(mask)?;
        f.write32(mask, masked & !1)?;
    }
    f.write16(control_at, (control & !MSI_MULTIPLE_ENABLE) | MSI_ENABLE)?;
    let command = f.read16(reg::COMMAND)?;
    f.write16(reg::COMMAND, command | COMMAND_INTX_DISABLE)
}

/// A function's MSI registers, saved across a reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiState {
    msi: MsiInfo,
    control: u16,
    address: u32,
    address_high: Option<u32>,
    data: u16,
    mask: Option<u32>,
}

impl MsiState {
    /// Reads the registers of `bdf`'s MSI capability.
    pub fn save<C: ConfigSpace + ?Sized>(cfg: &mut C, bdf: Bdf, msi: MsiInfo) -> Result<Self, PciError> {
        let f = &mut Function::new(cfg, bdf);
        let registers = layout(msi);
        let address_high = match registers.address_high {
            Some(at) => Some(f.read32(at)?),
            None => None,
        };
        let mask = match registers.mask {
            Some(at) => Some(f.read32(at)?),
            None => None,
        };
        Ok(Self {
            msi,
            control: f.read16(u16::from(msi.offset) + 2)?,
            address: f.read32(u16::from(msi.offset) + 4)?,
            address_high,
            data: f.read16(registers.data)?,
            mask,
        })
    }

    /// Writes them back, the message first and the control word (and with
    /// it the enable bit) last.
    pub fn restore<C: ConfigSpace + ?Sized>(&self, cfg: &mut C, bdf: Bdf) -> Result<(), PciError> {
        let f = &mut Function::new(cfg, bdf);
        let registers = layout(self.msi);
        let control_at = u16::from(self.msi.offset) + 2;
        f.write16(control_at, self.control & !MSI_ENABLE)?;
        f.write32(u16::from(self.msi.offset) + 4, self.address)?;
        if let (Some(at), Some(value)) = (registers.address_high, self.address_high) {
            f.write32(at, value)?;
        }
        f.write16(registers.data, self.data)?;
        if let (Some(at), Some(value)) = (registers.mask, self.mask) {
            f.write32(at, value)?;
        }
        f.write16(control_at, self.control)
    }
}

/// Turns MSI off.
pub fn disable_msi<C: ConfigSpace + ?Sized>(cfg: &mut C, bdf: Bdf, msi: MsiInfo) -> Result<(), PciError> {
    let f = &mut Function::new(cfg, bdf);
    let control_at = u16::from(msi.offset) + 2;
    let control = f.read16(control_at)?;
    if control & MSI_ENABLE != 0 {
        f.write16(control_at, control & !MSI_ENABLE)?;
    }
    Ok(())
}

/// Turns MSI-X off.
pub fn disable_msix<C: ConfigSpace + ?Sized>(cfg: &mut C, bdf: Bdf, msix: MsixInfo) -> Result<(), PciError> {
    let f = &mut Function::new(cfg, bdf);
    let control_at = u16::from(msix.offset) + 2;
    let control = f.read16(control_at)?;
    if control & MSIX_ENABLE != 0 {
        f.write16(control_at, control & !MSIX_ENABLE)?;
    }
    Ok(())
}

/// Turns MSI-X on, with every vector held masked while `function_masked`,
/// and disables INTx (a device raising both would raise twice).
pub fn enable_msix<C: ConfigSpace + ?Sized>(
    cfg: &mut C,
    bdf: Bdf,
    msix: MsixInfo,
    function_masked: bool,
) -> Result<(), PciError> {
    let f = &mut Function::new(cfg, bdf);
    let control_at = u16::from(msix.offset) + 2;
    let control = f.read16(control_at)? | MSIX_ENABLE;
    let control = if function_masked { control | MSIX_FUNCTION_MASK } else { control & !MSIX_FUNCTION_MASK };
    f.write16(control_at, control)?;
    let command = f.read16(reg::COMMAND)?;
    f.write16(reg::COMMAND, command | COMMAND_INTX_DISABLE)
}

/// Sets and clears command-register bits.
pub fn update_command<C: ConfigSpace + ?Sized>(cfg: &mut C, bdf: Bdf, set: u16, clear: u16) -> Result<(), PciError> {
    let f = &mut Function::new(cfg, bdf);
    let command = f.read16(reg::COMMAND)?;
    let updated = (command | set) & !clear;
    if updated != command {
        f.write16(reg::COMMAND, updated)?;
    }
    Ok(())
}

/// Bus mastering for `function` between holders and when a holder takes
/// it: off for an endpoint (a DMA-capable holder turns it on itself once
/// it has set the device up, and a no-DMA one never does; MSI delivery
/// needs it too, a message being a memory write by the device), on for a
/// bridge, where it only forwards the DMA of the functions behind it
/// (each of which the IOMMU checks on its own requester id).
pub fn bus_master_at_rest(function: &PciFunction) -> bool {
    matches!(function.header, HeaderKind::PciBridge | HeaderKind::CardBus)
}

/// Sets the command register's bus-master bit to what [`bus_master_at_rest`] says.
pub fn rest_bus_master<C: ConfigSpace + ?Sized>(cfg: &mut C, function: &PciFunction) -> Result<(), PciError> {
    if bus_master_at_rest(function) {
        update_command(cfg, function.bdf, COMMAND_BUS_MASTER, 0)
    } else {
        update_command(cfg, function.bdf, 0, COMMAND_BUS_MASTER)
    }
}

/// What a holder gets from the grant: memory decoding (bus mastering as at rest).
pub const HOLDER_COMMAND: u16 = COMMAND_MEMORY;
