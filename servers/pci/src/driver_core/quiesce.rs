//! Quiescing a device between holders: no bus mastering, no MSI, and a reset if it has one.
//!
//! A function-level reset stops whatever the last holder left running (a
//! DMA engine, timers) but also clears the header, so the BARs, the ACS
//! control the groups were formed with and the rest of the header are
//! saved first and restored after, as Linux's `pci_reset_function` does.

use capabilities::pci::{HeaderKind, PciFunction};

use super::env::Kernel;
use super::interrupts::{COMMAND_BUS_MASTER, disable_msi, disable_msix, rest_bus_master};
use crate::config::{ConfigSpace, Function};
use crate::error::PciError;
use crate::header::reg;

/// PCI Express device capabilities register (after the capability header).
const DEVICE_CAPABILITIES: u16 = 0x04;
/// Device capabilities: function-level reset supported.
const DEVICE_CAPABILITIES_FLR: u32 = 1 << 28;
/// PCI Express device control register.
const DEVICE_CONTROL: u16 = 0x08;
/// Device control: initiate function-level reset.
const DEVICE_CONTROL_FLR: u16 = 1 << 15;
/// How long a reset takes before the function may be accessed (PCIe 6.6.2).
pub const FLR_WAIT_MICROS: u64 = 100_000;
/// Further waits for a function that is not back yet.
const FLR_RETRIES: u32 = 10;
/// Header dwords restored after a reset: the BARs and the expansion ROM.
const RESTORED_DWORDS: [u16; 7] = [0x10, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x30];
/// Header words restored after them: cache line size and latency timer
/// (not the BIST byte beside them, whose write would start a self-test),
/// and the interrupt line. The command register comes last.
const RESTORED_WORDS: [u16; 2] = [0x0c, 0x3c];

/// Whether the function advertises a function-level reset (a PCI Express
/// endpoint with the FLR bit in its device capabilities).
pub fn flr_capable<C: ConfigSpace + ?Sized>(cfg: &mut C, function: &PciFunction) -> Result<bool, PciError> {
    let Some(pcie) = function.pcie else { return Ok(false) };
    if function.header != HeaderKind::Normal {
        return Ok(false);
    }
    let f = &mut Function::new(cfg, function.bdf);
    Ok(f.read32(u16::from(pcie.offset) + DEVICE_CAPABILITIES)? & DEVICE_CAPABILITIES_FLR != 0)
}

/// Stops `function` from mastering the bus (a bridge keeps forwarding the
/// DMA of the functions behind it) and raising interrupts, and resets it
/// if `flr` (see [`flr_capable`]).
pub fn quiesce<C: ConfigSpace + ?Sized, K: Kernel>(
    cfg: &mut C,
    kernel: &mut K,
    function: &PciFunction,
    flr: bool,
) -> Result<(), PciError> {
    rest_bus_master(cfg, function)?;
    if let Some(msi) = function.msi {
        disable_msi(cfg, function.bdf, msi)?;
    }
    if let Some(msix) = function.msix {
        disable_msix(cfg, function.bdf, msix)?;
    }
    match function.pcie {
        Some(pcie) if flr => reset(cfg, kernel, function, u16::from(pcie.offset)),
        _ => Ok(()),
    }
}

/// A function-level reset with the header saved and restored around it.
fn reset<C: ConfigSpace + ?Sized, K: Kernel>(
    cfg: &mut C,
    kernel: &mut K,
    function: &PciFunction,
    pcie: u16,
) -> Result<(), PciError> {
    let f = &mut Function::new(cfg, function.bdf);
    let mut dwords = [0u32; RESTORED_DWORDS.len()];
    for (value, &offset) in dwords.iter_mut().zip(&RESTORED_DWORDS) {
        *value = f.read32(offset)?;
    }
    let mut words = [0u16; RESTORED_WORDS.len()];
    for (value, &offset) in words.iter_mut().zip(&RESTORED_WORDS) {
        *value = f.read16(offset)?;
    }
    let command = f.read16(reg::COMMAND)?;
    let acs = match function.acs {
        Some(acs) => Some((acs.offset + 6, f.read16(acs.offset + 6)?)),
        None => None,
    };
    let control = f.read16(pcie + DEVICE_CONTROL)?;
    f.write16(pcie + DEVICE_CONTROL, control | DEVICE_CONTROL_FLR)?;
    kernel.sleep(FLR_WAIT_MICROS);
    // A function still resetting answers all ones.
    let mut retries = 0;
    while f.read32(reg::VENDOR_ID)? == u32::MAX {
        if retries == FLR_RETRIES {
            return Err(PciError::ResetTimedOut { bdf: function.bdf });
        }
        kernel.sleep(FLR_WAIT_MICROS);
        retries += 1;
    }
    for (&value, &offset) in dwords.iter().zip(&RESTORED_DWORDS) {
        f.write32(offset, value)?;
    }
    for (&value, &offset) in words.iter().zip(&RESTORED_WORDS) {
        f.write16(offset, value)?;
    }
    if let Some((offset, value)) = acs {
        f.write16(offset, value)?;
    }
    f.write16(reg::COMMAND, command & !COMMAND_BUS_MASTER)
}
