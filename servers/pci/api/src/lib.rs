//! The PCI server's protocol: the driver core's side (probing, binding)
//! and the device holder's side (BARs, interrupts, mediated config space).
//!
//! A device has at most one *holder* at a time: the driver bound to it by
//! the policy, or the user task that owns its IOMMU group. Only the holder
//! gets the device's BAR and interrupt capabilities, and the PCI server
//! takes them back (revokes them) before the device changes hands.
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "client")]
pub mod client;

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use capabilities::ErrorCode;
use capabilities::pci::Bdf;

capabilities::operations! {
    /// Operations granted by the policy (their numbers are badge bits).
    protocol "pci";
    /// A driver takes the `index`th device bound to it (the probe).
    Probe = 0 => "probe",
    /// A user task takes a device of a group it owns.
    Acquire = 1 => "acquire",
    /// The holder gives a device back.
    Release = 2 => "release",
    /// The holder reads the device's configuration space.
    ConfigRead = 3 => "config-read",
    /// The holder writes it, mediated.
    ConfigWrite = 4 => "config-write",
    /// An administrator binds a driver to a device at run time.
    Bind = 5 => "bind",
    /// An administrator unbinds a device's driver.
    Unbind = 6 => "unbind",
    /// Anyone granted it: the devices found.
    Devices = 7 => "devices",
    /// The holder takes MSI-X vectors, one interrupt capability each.
    MsixVectors = 8 => "msix-vectors",
    /// The holder masks or unmasks one of its MSI-X vectors.
    MsixMask = 9 => "msix-mask",
}

/// Most MSI-X vectors one `MsixVectors` reply carries (one capability each).
pub const MSIX_PAGE: usize = 4;

/// Longest explanation in a refusal.
pub use capabilities::protocol::REASON_MAX;

/// A request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Request {
    /// Driver: take the `index`th device the policy binds to me. The
    /// reply carries its capabilities (see [`DeviceGrant`]).
    Probe {
        /// 0 for the first.
        index: u8,
    },
    /// User task: take `device`, whose group I own.
    Acquire {
        /// A function of a group the caller owns.
        device: Bdf,
    },
    /// Holder: give `device` back (its capabilities are revoked).
    Release {
        /// A function the caller holds.
        device: Bdf,
    },
    /// Holder: read `width` (1, 2 or 4) bytes at `offset`.
    ConfigRead {
        /// A function the caller holds.
        device: Bdf,
        /// Offset in its configuration space.
        offset: u16,
        /// Bytes read: 1, 2 or 4, naturally aligned.
        width: u8,
    },
    /// Holder: write `value`, refused where it would break isolation (BARs,
    /// bridge windows and bus numbers, ACS, MSI/MSI-X).
    ConfigWrite {
        /// A function the caller holds.
        device: Bdf,
        /// Offset in its configuration space.
        offset: u16,
        /// Bytes written: 1, 2 or 4, naturally aligned.
        width: u8,
        /// What to write (its low `width` bytes).
        value: u32,
    },
    /// Administrator: bind `driver` (a driver task) to `device`, with the
    /// same rules as at boot; whether it does DMA is the driver's own word
    /// in the policy, never the binder's.
    Bind {
        /// The function to bind.
        device: Bdf,
        /// The driver's task index.
        driver: u16,
    },
    /// Administrator: unbind `device`'s driver.
    Unbind {
        /// The function whose driver goes.
        device: Bdf,
    },
    /// The `index`th device found.
    Devices {
        /// 0 for the first.
        index: u16,
    },
    /// Holder: program MSI-X table entries `first` to `first + count - 1`
    /// (at most [`MSIX_PAGE`] a request) for me, each with a fresh vector
    /// whose message the IOMMU server remapped, unmasked, with MSI-X
    /// enabled (and MSI, if it had it, given up). The reply carries one
    /// interrupt capability per entry, in order.
    MsixVectors {
        /// A function the caller holds.
        device: Bdf,
        /// The first table entry.
        first: u16,
        /// How many (1 to [`MSIX_PAGE`]).
        count: u8,
    },
    /// Holder: mask (`true`) or unmask one table entry it was given.
    MsixMask {
        /// A function the caller holds.
        device: Bdf,
        /// The table entry.
        entry: u16,
        /// Masked from now on.
        masked: bool,
    },
}

impl Request {
    /// The operation a request invokes (its badge bit).
    pub const fn operation(&self) -> Operation {
        match self {
            Request::Probe { .. } => Operation::Probe,
            Request::Acquire { .. } => Operation::Acquire,
            Request::Release { .. } => Operation::Release,
            Request::ConfigRead { .. } => Operation::ConfigRead,
            Request::ConfigWrite { .. } => Operation::ConfigWrite,
            Request::Bind { .. } => Operation::Bind,
            Request::Unbind { .. } => Operation::Unbind,
            Request::Devices { .. } => Operation::Devices,
            Request::MsixVectors { .. } => Operation::MsixVectors,
            Request::MsixMask { .. } => Operation::MsixMask,
        }
    }
}

/// One memory BAR of a granted device; its capability travels with the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BarGrant {
    /// BAR number.
    pub index: u8,
    /// Size of the BAR in bytes.
    pub size: u64,
    /// Where in the BAR the capability starts (page-aligned): past the
    /// MSI-X table and PBA when they lie at its start.
    pub offset: u64,
    /// Bytes the capability covers: whole pages, none of them the MSI-X
    /// table's or PBA's, which the PCI server keeps.
    pub len: u64,
}

/// The group a grant names when no IOMMU server told the PCI server the
/// device's group.
pub const NO_GROUP: u16 = u16::MAX;

/// What a probe or acquire grants. The capabilities travel in this order:
/// each BAR's device memory, then the interrupt (if `vector` is set), then
/// the DMA handle (if `dma`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DeviceGrant {
    /// The function now held.
    pub device: Bdf,
    /// Its vendor id, from configuration space.
    pub vendor: u16,
    /// Its device id, from configuration space.
    pub device_id: u16,
    /// Its IOMMU group (`NO_GROUP` if no IOMMU server told it).
    pub group: u16,
    /// Memory BARs granted (at most two).
    pub bars: Vec<BarGrant, 2>,
    /// The MSI vector programmed for it, if any.
    pub vector: Option<u8>,
    /// Whether a DMA handle travels with the reply.
    pub dma: bool,
}

/// A reply.
#[expect(clippy::large_enum_variant, reason = "built once per reply on the stack; encoded compactly by postcard")]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Reply {
    /// The request was carried out; nothing to report.
    Done,
    /// `Probe` or `Acquire`.
    Granted(DeviceGrant),
    /// `ConfigRead`.
    Value(u32),
    /// `Devices`.
    Device {
        /// The function's address.
        device: Bdf,
        /// Its vendor id, from configuration space.
        vendor: u16,
        /// Its device id, from configuration space.
        device_id: u16,
        /// Holder's task index, if held.
        holder: Option<u16>,
    },
    /// `MsixVectors`: the CPU vector of each entry, in order; one
    /// interrupt capability for each travels with the reply.
    Vectors(Vec<u8, MSIX_PAGE>),
    /// Refused, with the reason in words.
    Refused {
        /// The error.
        code: ErrorCode,
        /// What blocks it (devices, groups, holders by name).
        reason: String<REASON_MAX>,
    },
}

capabilities::refusal_reply!(Reply);
