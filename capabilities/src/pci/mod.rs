//! PCI topology vocabulary: what the PCI server tells the IOMMU server.
//!
//! The PCI server enumerates configuration space and describes every function
//! it found as a [`PciFunction`]; the list of them is a [`Topology`]. The IOMMU
//! server forms IOMMU groups from that description alone, so each field here
//! is a fact group formation or the driver core needs: identity, bridge bus
//! numbers, the PCI Express device/port type, the ACS capability and control
//! registers, device quirks that change DMA requester ids or ACS behaviour,
//! and MSI/MSI-X presence.
//!
//! Everything is fixed-size (`heapless`), so a topology encodes with postcard
//! without allocation. Nothing here is trusted by its receiver: group
//! formation checks the topology's consistency before using it.

mod acs;
mod address;
mod capability_fault;
mod express;
mod function;
mod header;
mod msi;
mod topology;

pub use acs::{AcsFlags, AcsInfo};
pub use address::{Bdf, DevfnSet};
pub use capability_fault::{CapabilityFault, CapabilityFaultKind, CapabilityList};
pub use express::{PcieDeviceType, PcieInfo};
pub use function::{BridgeKind, DmaAliasQuirk, PciFunction};
pub use header::{BridgeBuses, ClassCode, HeaderKind};
pub use msi::{BarLocation, MsiInfo, MsixInfo};
pub use topology::{MAX_FUNCTIONS, Topology};
