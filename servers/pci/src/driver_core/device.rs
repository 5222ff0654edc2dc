//! What the driver core keeps per function: its capabilities, binding and holder.

use core::fmt;

use capabilities::config::TaskNames;
use capabilities::pci::PciFunction;
use heapless::{String, Vec};

use super::bars::{BarRegion, MAX_GRANTED_BARS};
use super::env::{MsiVector, Slot};
use super::mediation::ProtectedRanges;
use super::msix_pages::TablePlace;
use super::quiesce::{Controls, ResetMethod};

/// The group a grant names when no IOMMU server told the device's group.
pub const NO_GROUP: u16 = u16::MAX;

/// The driver bound to a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Bound {
    /// The driver task.
    pub driver: u16,
    /// Whether it does DMA (claims the group's default domain at probe).
    pub dma: bool,
}

/// How the holder came to hold the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Role {
    /// The bound driver probed it.
    Driver {
        /// It claimed the group's default domain (and got a DMA handle).
        dma: bool,
    },
    /// The user task that owns the device's group acquired it.
    User,
}

/// Most MSI-X vectors one holder may take of one device. Beyond it the
/// IOMMU server's `interrupt-entries-per-device` quota (MSI and MSI-X
/// entries together) refuses first wherever it is below.
pub const MAX_MSIX_VECTORS: usize = 8;

/// An MSI-X table entry programmed for a holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixVector {
    /// The table entry.
    pub entry: u16,
    /// The kernel's vector (the server keeps the original capability).
    pub vector: MsiVector,
    /// The message written: the IOMMU server's remapped one.
    pub address: u64,
    /// Its data.
    pub data: u32,
    /// The interrupt-remapping entry it names, when remapping is on.
    pub remap: Option<u16>,
    /// Whether the holder masked it.
    pub masked: bool,
}

/// The MSI-X vectors of a holder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsixVectors {
    /// Whether MSI-X is on (the table mapped, every other entry masked).
    pub on: bool,
    /// The entries programmed for the holder.
    pub given: [Option<MsixVector>; MAX_MSIX_VECTORS],
}

/// The one task holding a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The task.
    pub task: u16,
    /// Driver or user owner.
    pub role: Role,
    /// The MSI vector programmed for it (the server keeps the original).
    pub msi: Option<MsiVector>,
    /// The interrupt-remapping entry its MSI names, when the IOMMU server
    /// remaps interrupts.
    pub interrupt_entry: Option<u16>,
    /// Its MSI-X vectors, once it asked for any (then it has no MSI).
    pub msix: MsixVectors,
    /// The server's copy of the DMA handle the IOMMU server minted.
    pub dma_handle: Option<Slot>,
    /// The device-memory capabilities made for this holder, one per BAR of
    /// the device's (revoking one takes the holder's copy back). Made at
    /// the grant and deleted at take-back, so the server's capability
    /// space holds what its holders use, not every BAR of the machine.
    pub bars: [Option<Slot>; MAX_GRANTED_BARS],
}

/// A device whose last quiesce failed: nobody may take it until one
/// succeeds (its group stays blocked or kernel-owned meanwhile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Unquiesced {
    /// The DMA-capable driver whose claim on the group is kept until then
    /// (releasing it would let a user claim a group with a device still
    /// running in it).
    pub claim: Option<u16>,
}

/// One function and the driver core's state for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// What enumeration found.
    pub function: PciFunction,
    /// The BARs a holder is granted.
    pub bars: Vec<BarRegion, MAX_GRANTED_BARS>,
    /// Where its MSI-X table lies, if it has one the server can map.
    pub msix_table: Option<TablePlace>,
    /// Configuration ranges only the server writes.
    pub protected: ProtectedRanges,
    /// Its reset, power-management and Advanced Features capabilities.
    pub controls: Controls,
    /// Its driver.
    pub binding: Option<Bound>,
    /// Who holds it.
    pub holder: Option<Holder>,
    /// Its IOMMU group, once the IOMMU server told.
    pub group: Option<u16>,
    /// Set while the device could not be quiesced.
    pub unquiesced: Option<Unquiesced>,
}

/// Bytes in binary units ("4 KiB", "1 MiB", "300 B").
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        match UNITS.iter().find(|(unit, _)| self.0 >= *unit && self.0.is_multiple_of(*unit)) {
            Some((unit, name)) => write!(f, "{} {name}", self.0 / unit),
            None => write!(f, "{} B", self.0),
        }
    }
}

/// Longest line [`Device::describe`] writes.
pub const LINE_MAX: usize = 200;

impl Device {
    /// One readable line: address, ids, class or bridge kind, granted BARs,
    /// interrupts, reset and driver (named from `names`).
    pub fn describe(&self, names: &TaskNames) -> String<LINE_MAX> {
        super::refusal::truncated(format_args!("{}", Line { device: self, names }))
    }
}

struct Line<'a> {
    device: &'a Device,
    names: &'a TaskNames,
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let device = self.device;
        let function = &device.function;
        write!(f, "{} {:04x}:{:04x}", function.bdf, function.vendor_id, function.device_id)?;
        match (function.bridge_kind(), function.bridge) {
            (Some(kind), Some(buses)) => {
                write!(f, " {} to buses {:02x}-{:02x}", kind.name(), buses.secondary, buses.subordinate)?
            }
            _ => write!(f, " class {:06x}", function.class.value())?,
        }
        for bar in &device.bars {
            write!(f, ", BAR{} {} at {:#x}", bar.index, Size(bar.size), bar.base)?;
            if bar.pages() != bar.size.div_ceil(capabilities::abi::PAGE_SIZE) {
                write!(
                    f,
                    " (holder: {} from {:#x})",
                    Size(bar.pages() * capabilities::abi::PAGE_SIZE),
                    bar.holder_offset()
                )?;
            }
        }
        if function.msi.is_some() {
            f.write_str(", MSI")?;
        }
        if function.msix.is_some() {
            f.write_str(", MSI-X")?;
        }
        match device.controls.reset {
            Some(ResetMethod::Pcie(_)) => f.write_str(", FLR")?,
            Some(ResetMethod::AdvancedFeatures(_)) => f.write_str(", AF FLR")?,
            None => {}
        }
        match device.binding {
            Some(Bound { driver, dma: true }) => write!(f, ", driver {} (DMA)", self.names.name(driver)),
            Some(Bound { driver, dma: false }) => write!(f, ", driver {} (no DMA)", self.names.name(driver)),
            None => f.write_str(", no driver"),
        }
    }
}
