//! Quiescing a device between holders: no bus mastering, no MSI, and a reset if it has one.
//!
//! A function-level reset stops whatever the last holder left running (a
//! DMA engine, timers) but also clears the header, so the BARs, the ACS
//! control the groups were formed with, MSI, device control and the rest
//! of the header are saved first and restored after, as Linux's
//! `pci_reset_function` does. The same reset serves a holder that asks
//! for one (`config-write` of the reset bit never reaches the device).

use capabilities::pci::{HeaderKind, PciFunction};

use super::env::Kernel;
use super::interrupts::{COMMAND_BUS_MASTER, MsiState, disable_msi, disable_msix, rest_bus_master};
use crate::caps::LegacyCapabilities;
use crate::config::{ConfigSpace, Function};
use crate::error::PciError;
use crate::header::{Header, reg};

/// PCI Express device capabilities register (after the capability header).
const DEVICE_CAPABILITIES: u16 = 0x04;
/// Device capabilities: function-level reset supported.
const DEVICE_CAPABILITIES_FLR: u32 = 1 << 28;
/// PCI Express device control register.
pub const DEVICE_CONTROL: u16 = 0x08;
/// Device control: initiate function-level reset (endpoints).
pub const DEVICE_CONTROL_FLR: u16 = 1 << 15;
/// Legacy capability id: power management.
pub const POWER_MANAGEMENT: u8 = 0x01;
/// Power management control and status, after the capability header.
pub const POWER_CONTROL: u16 = 0x04;
/// Its power-state field (D0 to D3hot).
pub const POWER_STATE: u8 = 0x03;
/// Legacy capability id: Advanced Features (conventional PCI's FLR).
pub const ADVANCED_FEATURES: u8 = 0x13;
/// Advanced Features capabilities byte: transactions pending, FLR.
const AF_CAPABILITIES: u16 = 0x03;
const AF_CAPABLE: u8 = 0x03;
/// Advanced Features control byte: initiate function-level reset (bit 0).
pub const AF_CONTROL: u16 = 0x04;
/// Its reset bit.
pub const AF_CONTROL_FLR: u8 = 1 << 0;
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

/// How a function can be reset on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ResetMethod {
    /// PCI Express function-level reset, through the device control
    /// register of the PCI Express capability at this offset.
    Pcie(u16),
    /// Conventional PCI's function-level reset, through the control
    /// register of the Advanced Features capability at this offset.
    AdvancedFeatures(u16),
}

/// The legacy capabilities of a function the driver core mediates writes to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Controls {
    /// Its reset, if it has one.
    pub reset: Option<ResetMethod>,
    /// The power management capability's offset.
    pub power: Option<u16>,
    /// The Advanced Features capability's offset (with or without FLR).
    pub advanced_features: Option<u16>,
}

/// Finds `function`'s reset and its power-management and Advanced
/// Features capabilities. A PCI Express FLR is preferred, as Linux does;
/// bridges are never reset on their own (their bus would be).
pub fn controls<C: ConfigSpace + ?Sized>(cfg: &mut C, function: &PciFunction) -> Result<Controls, PciError> {
    let mut controls = Controls::default();
    let pointer = Header::read(cfg, function.bdf)?.and_then(|header| header.capabilities_pointer());
    for capability in LegacyCapabilities::new(cfg, function.bdf, pointer) {
        let capability = capability?;
        match u8::try_from(capability.id) {
            Ok(POWER_MANAGEMENT) if controls.power.is_none() => controls.power = Some(capability.offset),
            Ok(ADVANCED_FEATURES) if controls.advanced_features.is_none() => {
                controls.advanced_features = Some(capability.offset)
            }
            _ => {}
        }
    }
    if function.header != HeaderKind::Normal {
        return Ok(controls);
    }
    let f = &mut Function::new(cfg, function.bdf);
    if let Some(pcie) = function.pcie {
        let offset = u16::from(pcie.offset);
        if f.read32(offset + DEVICE_CAPABILITIES)? & DEVICE_CAPABILITIES_FLR != 0 {
            controls.reset = Some(ResetMethod::Pcie(offset));
            return Ok(controls);
        }
    }
    if let Some(offset) = controls.advanced_features
        && f.read8(offset + AF_CAPABILITIES)? & AF_CAPABLE == AF_CAPABLE
    {
        controls.reset = Some(ResetMethod::AdvancedFeatures(offset));
    }
    Ok(controls)
}

/// Stops `function` from mastering the bus (a bridge keeps forwarding the
/// DMA of the functions behind it) and raising interrupts, and resets it
/// with `reset` if it has one (see [`controls`]).
pub fn quiesce<C: ConfigSpace + ?Sized, K: Kernel>(
    cfg: &mut C,
    kernel: &mut K,
    function: &PciFunction,
    reset: Option<ResetMethod>,
) -> Result<(), PciError> {
    rest_bus_master(cfg, function)?;
    if let Some(msi) = function.msi {
        disable_msi(cfg, function.bdf, msi)?;
    }
    if let Some(msix) = function.msix {
        disable_msix(cfg, function.bdf, msix)?;
    }
    match reset {
        Some(method) => reset_function(cfg, kernel, function, method),
        None => Ok(()),
    }
}

/// A function-level reset with the header, ACS control, MSI and device
/// control saved and restored around it; bus mastering stays off.
pub fn reset_function<C: ConfigSpace + ?Sized, K: Kernel>(
    cfg: &mut C,
    kernel: &mut K,
    function: &PciFunction,
    method: ResetMethod,
) -> Result<(), PciError> {
    let bdf = function.bdf;
    let msi = match function.msi {
        Some(info) => Some(MsiState::save(cfg, bdf, info)?),
        None => None,
    };
    let f = &mut Function::new(cfg, bdf);
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
    let device_control = match function.pcie {
        Some(pcie) => {
            let at = u16::from(pcie.offset) + DEVICE_CONTROL;
            Some((at, f.read16(at)? & !DEVICE_CONTROL_FLR))
        }
        None => None,
    };
    match method {
        ResetMethod::Pcie(offset) => {
            let control = f.read16(offset + DEVICE_CONTROL)?;
            f.write16(offset + DEVICE_CONTROL, control | DEVICE_CONTROL_FLR)?;
        }
        ResetMethod::AdvancedFeatures(offset) => f.write8(offset + AF_CONTROL, AF_CONTROL_FLR)?,
    }
    kernel.sleep(FLR_WAIT_MICROS);
    // A function still resetting answers all ones.
    let mut retries = 0;
    while f.read32(reg::VENDOR_ID)? == u32::MAX {
        if retries == FLR_RETRIES {
            return Err(PciError::ResetTimedOut { bdf });
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
    for (offset, value) in acs.into_iter().chain(device_control) {
        f.write16(offset, value)?;
    }
    f.write16(reg::COMMAND, command & !COMMAND_BUS_MASTER)?;
    match msi {
        Some(state) => state.restore(cfg, bdf),
        None => Ok(()),
    }
}
