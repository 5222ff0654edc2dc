//! Which configuration registers a device's holder may write, and which only the server.
//!
//! A holder may read anything and write the rest of the header (command,
//! status, latency...) and device-specific space, but not what decides
//! where the device decodes, what a bridge forwards, how DMA is isolated or
//! where interrupts go: BARs and expansion ROM (they would move the device
//! over another's registers or RAM), bridge bus numbers, windows and
//! control (forwarding, secondary bus reset of other holders' devices), the
//! ACS control register (group formation assumed it), MSI and MSI-X (the
//! server routes interrupts), and the SR-IOV and resizable-BAR extended
//! capabilities (they create or resize BARs).

use core::fmt;

use capabilities::pci::{HeaderKind, PciFunction};
use heapless::Vec;

use super::interrupts::bus_master_at_rest;
use super::quiesce::{AF_CONTROL, Controls, DEVICE_CONTROL, POWER_STATE};
use crate::caps::ExtendedCapabilities;
use crate::config::{CONFIG_SPACE_SIZE, ConfigSpace, LEGACY_SPACE_SIZE, access_is_valid};

/// Extended capability id: single-root I/O virtualisation (virtual function BARs).
const SRIOV: u16 = 0x0010;
/// Extended capability id: resizable BAR.
const RESIZABLE_BAR: u16 = 0x0015;
/// Extended capability id: resizable BAR of virtual functions.
const VF_RESIZABLE_BAR: u16 = 0x0024;
/// Bytes of an SR-IOV capability (through the last VF BAR and the migration pointer).
const SRIOV_LEN: u16 = 0x40;
/// Bytes of a resizable-BAR capability with its most entries (six).
const RESIZABLE_BAR_LEN: u16 = 4 + 6 * 8;

/// What a protected range holds, for the refusal's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Register {
    /// Base address register `n`.
    Bar(u8),
    /// The expansion ROM base address.
    ExpansionRom,
    /// A bridge's primary, secondary and subordinate bus numbers.
    BusNumbers,
    /// A bridge's I/O, memory and prefetchable windows.
    Windows,
    /// A bridge's control register (secondary bus reset, VGA and ISA forwarding).
    BridgeControl,
    /// A header layout the server does not know: all of it is protected.
    UnknownHeader,
    /// The MSI capability.
    Msi,
    /// The MSI-X capability.
    Msix,
    /// The ACS control register.
    AcsControl,
    /// The SR-IOV capability.
    SrIov,
    /// A resizable-BAR capability.
    ResizableBar,
    /// Extended space of a device listing more capabilities than the
    /// server tracks: all of it is protected.
    ExtendedSpace,
    /// The bus-master bit, which a driver bound without DMA may not set.
    BusMaster,
    /// A bridge's bus-master bit, which forwards the DMA of the functions
    /// behind it.
    BridgeBusMaster,
    /// The power-management state field.
    PowerState,
}

impl fmt::Display for Register {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bar(index) => write!(f, "BAR {index} (the server places BARs)"),
            Self::ExpansionRom => write!(f, "the expansion ROM base (the server places it)"),
            Self::BusNumbers => write!(f, "the bridge's bus numbers"),
            Self::Windows => write!(f, "the bridge's forwarding windows"),
            Self::BridgeControl => write!(f, "the bridge control register (resets and forwards for other devices)"),
            Self::UnknownHeader => write!(f, "a header of unknown layout"),
            Self::Msi => write!(f, "the MSI capability (the server routes interrupts)"),
            Self::Msix => write!(f, "the MSI-X capability (the server routes interrupts)"),
            Self::AcsControl => write!(f, "the ACS control register (IOMMU groups depend on it)"),
            Self::SrIov => write!(f, "the SR-IOV capability (it creates functions and BARs)"),
            Self::ResizableBar => write!(f, "a resizable-BAR capability (it resizes BARs)"),
            Self::ExtendedSpace => write!(f, "extended space with more capabilities than the server tracks"),
            Self::BusMaster => write!(f, "bus mastering, which a driver bound without DMA never turns on"),
            Self::PowerState => write!(
                f,
                "the power state (the server keeps the function in D0: leaving D3hot resets it, undoing what the server set up)"
            ),
            Self::BridgeBusMaster => {
                write!(
                    f,
                    "a bridge's bus mastering (it forwards the DMA of the functions behind it; the server keeps it on)"
                )
            }
        }
    }
}

/// A range of configuration space only the server writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Protected {
    /// First byte.
    pub start: u16,
    /// One past the last byte.
    pub end: u16,
    /// What it is.
    pub register: Register,
}

/// Most protected ranges one function has.
pub const MAX_PROTECTED: usize = 24;

/// The protected ranges of one function.
pub type ProtectedRanges = Vec<Protected, MAX_PROTECTED>;

/// Adds a range; the header and legacy capabilities always fit (at most
/// ten), extended ones are bounded by the caller.
fn push(ranges: &mut ProtectedRanges, start: u16, len: u16, register: Register) {
    let _ = ranges.push(Protected { start, end: start.saturating_add(len), register });
}

/// The header ranges of a layout.
fn header_ranges(kind: HeaderKind, ranges: &mut ProtectedRanges) {
    match kind {
        HeaderKind::Normal => {
            for index in 0..6 {
                push(ranges, 0x10 + 4 * u16::from(index), 4, Register::Bar(index));
            }
            push(ranges, 0x30, 4, Register::ExpansionRom);
        }
        HeaderKind::PciBridge => {
            push(ranges, 0x10, 4, Register::Bar(0));
            push(ranges, 0x14, 4, Register::Bar(1));
            push(ranges, 0x18, 3, Register::BusNumbers);
            // I/O base and limit; the secondary status beside them is left writable.
            push(ranges, 0x1c, 2, Register::Windows);
            // Memory, prefetchable, their upper halves and the I/O upper halves.
            push(ranges, 0x20, 0x14, Register::Windows);
            push(ranges, 0x38, 4, Register::ExpansionRom);
            push(ranges, 0x3e, 2, Register::BridgeControl);
        }
        HeaderKind::CardBus => {
            push(ranges, 0x10, 4, Register::Bar(0));
            push(ranges, 0x18, 3, Register::BusNumbers);
            push(ranges, 0x1c, 0x20, Register::Windows);
            push(ranges, 0x3e, 2, Register::BridgeControl);
        }
        HeaderKind::Unknown(_) => push(ranges, 0x10, 0x30, Register::UnknownHeader),
    }
}

/// Bytes of an MSI capability with the control bits `function` describes.
fn msi_len(function: &PciFunction) -> u16 {
    let Some(msi) = function.msi else { return 0 };
    let address = if msi.address_64bit { 14 } else { 10 };
    if msi.per_vector_masking { address + 10 } else { address }
}

/// Every range of `function` its holder may not write. Reads the extended
/// capability list (for SR-IOV and resizable BARs) of PCI Express functions.
pub fn protected_ranges<C: ConfigSpace + ?Sized>(cfg: &mut C, function: &PciFunction) -> ProtectedRanges {
    let mut ranges = ProtectedRanges::new();
    header_ranges(function.header, &mut ranges);
    if let Some(msi) = function.msi {
        push(&mut ranges, u16::from(msi.offset), msi_len(function), Register::Msi);
    }
    if let Some(msix) = function.msix {
        push(&mut ranges, u16::from(msix.offset), 12, Register::Msix);
    }
    if let Some(acs) = function.acs {
        push(&mut ranges, acs.offset + 6, 2, Register::AcsControl);
    }
    if function.pcie.is_some() {
        // The walk is loop-safe: a looping list ends at its first repeat,
        // after every capability on it was seen.
        for capability in ExtendedCapabilities::new(cfg, function.bdf).map_while(Result::ok) {
            let (len, register) = match capability.id {
                SRIOV => (SRIOV_LEN, Register::SrIov),
                RESIZABLE_BAR | VF_RESIZABLE_BAR => (RESIZABLE_BAR_LEN, Register::ResizableBar),
                _ => continue,
            };
            if ranges.len() + 1 == MAX_PROTECTED {
                // No room to list them all: protect the whole extended space.
                push(&mut ranges, LEGACY_SPACE_SIZE, CONFIG_SPACE_SIZE - LEGACY_SPACE_SIZE, Register::ExtendedSpace);
                break;
            }
            push(&mut ranges, capability.offset, len, register);
        }
    }
    ranges
}

/// Why a holder's write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WriteRefusal {
    /// Width not 1, 2 or 4, offset not aligned to it, or past the end.
    BadAccess,
    /// The access touches a protected register.
    Protected(Register),
}

/// Whether the holder may write `width` bytes at `offset`.
pub fn check_write(ranges: &ProtectedRanges, offset: u16, width: u8) -> Result<(), WriteRefusal> {
    if !matches!(width, 1 | 2 | 4) || !access_is_valid(offset, u16::from(width)) {
        return Err(WriteRefusal::BadAccess);
    }
    let end = offset + u16::from(width);
    match ranges.iter().find(|range| range.start < end && offset < range.end) {
        Some(range) => Err(WriteRefusal::Protected(range.register)),
        None => Ok(()),
    }
}

/// The configuration byte at `register` as a write of `width` bytes of
/// `value` at `offset` leaves it, if the write covers that byte. The
/// access must have passed [`check_write`].
pub fn written_byte(offset: u16, width: u8, value: u32, register: u16) -> Option<u8> {
    let end = offset.saturating_add(u16::from(width));
    if !(offset..end).contains(&register) {
        return None;
    }
    Some(value.checked_shr(8 * u32::from(register - offset)).unwrap_or(0) as u8)
}

/// Bit `bit` of the configuration byte at `register` as such a write leaves it.
pub fn written_bit(offset: u16, width: u8, value: u32, register: u16, bit: u8) -> Option<bool> {
    written_byte(offset, width, value, register).map(|byte| byte.checked_shr(u32::from(bit)).unwrap_or(0) & 1 != 0)
}

/// `value`, a write at `offset`, with bit `bit` of the byte at `register` clear.
pub fn without_bit(offset: u16, value: u32, register: u16, bit: u8) -> u32 {
    let shift = 8 * u32::from(register.saturating_sub(offset)) + u32::from(bit);
    value & !1u32.checked_shl(shift).unwrap_or(0)
}

/// The bits a holder would start a reset with (register, bit): a PCI
/// Express endpoint's Initiate FLR (device control bit 15; a bridge's bit
/// 15 is something else) and Advanced Features' Initiate FLR. The server
/// takes them out of the write and resets the function itself, saving and
/// restoring what the reset clears (ACS control among it), as VFIO does.
pub fn reset_requests(function: &PciFunction, controls: &Controls) -> Vec<(u16, u8), 2> {
    let mut bits = Vec::new();
    if let (Some(pcie), HeaderKind::Normal) = (function.pcie, function.header) {
        let _ = bits.push((u16::from(pcie.offset) + DEVICE_CONTROL + 1, 7));
    }
    if let Some(offset) = controls.advanced_features {
        let _ = bits.push((offset + AF_CONTROL, 0));
    }
    bits
}

/// Whether a write that leaves the power-management control byte (`wanted`)
/// keeps the power state it has (`current`): the holder may not change it.
pub fn check_power_state(current: u8, wanted: u8) -> Result<(), Register> {
    if (current ^ wanted) & POWER_STATE == 0 { Ok(()) } else { Err(Register::PowerState) }
}

/// Whether a holder that `may_dma` may change `function`'s bus-master bit
/// from `current` to `wanted`: a DMA-capable holder of an endpoint may
/// (it starts with it off and turns it on once its device is set up), a
/// no-DMA driver may only turn it off, and a bridge's is the server's.
pub fn check_bus_master(function: &PciFunction, may_dma: bool, current: bool, wanted: bool) -> Result<(), Register> {
    if wanted == current {
        Ok(())
    } else if bus_master_at_rest(function) {
        Err(Register::BridgeBusMaster)
    } else if wanted && !may_dma {
        Err(Register::BusMaster)
    } else {
        Ok(())
    }
}

/// Whether the holder may read `width` bytes at `offset` (anything in range).
pub fn check_read(offset: u16, width: u8) -> Result<(), WriteRefusal> {
    if matches!(width, 1 | 2 | 4) && access_is_valid(offset, u16::from(width)) {
        Ok(())
    } else {
        Err(WriteRefusal::BadAccess)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeConfig, FakeFunction, bdf};

    fn function(cfg: &mut FakeConfig, at: &str) -> PciFunction {
        let topology =
            crate::enumerate(cfg, &[0], crate::Options { segment: 0, extended_config: true, enable_acs: false })
                .unwrap();
        *topology.function(bdf(at)).unwrap()
    }

    #[test]
    fn accesses_are_checked_before_ranges() {
        let ranges = ProtectedRanges::new();
        assert_eq!(check_write(&ranges, 0x40, 4), Ok(()));
        for (offset, width) in [(0x41, 4), (0x41, 2), (0xffe, 4), (0x1000, 1), (0, 3), (0, 0)] {
            assert_eq!(check_write(&ranges, offset, width), Err(WriteRefusal::BadAccess), "{offset:#x}/{width}");
        }
        assert_eq!(check_read(0xfff, 1), Ok(()));
        assert_eq!(check_read(0xfff, 2), Err(WriteRefusal::BadAccess));
    }

    #[test]
    fn an_unknown_header_is_protected_whole() {
        let mut odd = FakeFunction::endpoint(1, 1);
        odd.bytes[0x0e] = 0x05;
        let mut cfg = FakeConfig::default().with("00:01.0", odd);
        let found = function(&mut cfg, "00:01.0");
        let ranges = protected_ranges(&mut cfg, &found);
        assert_eq!(check_write(&ranges, 0x3c, 1), Err(WriteRefusal::Protected(Register::UnknownHeader)));
        assert_eq!(check_write(&ranges, 0x04, 2), Ok(()));
    }

    #[test]
    fn sr_iov_is_protected_and_too_many_capabilities_protect_all_extended_space() {
        let mut device = FakeFunction::endpoint(1, 1).pcie(0x40, 0, 0).extended_cap(0x100, SRIOV, 0x200);
        device = device.extended_cap(0x200, 0x0001, 0);
        let mut cfg = FakeConfig::default().with("00:01.0", device);
        let found = function(&mut cfg, "00:01.0");
        let ranges = protected_ranges(&mut cfg, &found);
        assert_eq!(check_write(&ranges, 0x124, 4), Err(WriteRefusal::Protected(Register::SrIov)));
        assert_eq!(check_write(&ranges, 0x204, 4), Ok(()));
        // Twenty resizable-BAR capabilities: more than the table holds.
        let mut crowded = FakeFunction::endpoint(1, 1).pcie(0x40, 0, 0);
        for index in 0..20u16 {
            let offset = 0x100 + index * 0x40;
            let next = if index == 19 { 0 } else { offset + 0x40 };
            crowded = crowded.extended_cap(offset, RESIZABLE_BAR, next);
        }
        let mut cfg = FakeConfig::default().with("00:01.0", crowded);
        let found = function(&mut cfg, "00:01.0");
        let ranges = protected_ranges(&mut cfg, &found);
        assert_eq!(ranges.len(), MAX_PROTECTED);
        assert_eq!(check_write(&ranges, 0xffc, 4), Err(WriteRefusal::Protected(Register::ExtendedSpace)));
        assert_eq!(check_write(&ranges, 0x80, 4), Ok(()));
    }
}
