//! One PCI function as the PCI server found it, and what kind of bridge it is.

use serde::{Deserialize, Serialize};

use super::{
    AcsFlags, AcsInfo, Bdf, BridgeBuses, CapabilityFault, ClassCode, DevfnSet, HeaderKind, MsiInfo, MsixInfo,
    PcieDeviceType, PcieInfo,
};

/// Device quirks that change which requester ids a function's DMA carries
/// (Linux's DMA alias quirks, `drivers/pci/quirks.c`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DmaAliasQuirk {
    /// Device/function numbers on the function's own bus that its DMA may
    /// also carry (for example a Marvell SATA controller using function 1).
    pub devfns: DevfnSet,
    /// A conventional bridge that is in truth a PCIe-to-PCI bridge without a
    /// PCI Express capability: devices below it alias to (secondary bus, 00.0).
    pub pcie_bridge_alias: bool,
    /// The IOMMU sits at this bridge, not at the root complex: aliasing stops here.
    pub translation_root: bool,
}

/// One PCI function as the PCI server found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PciFunction {
    /// Its address.
    pub bdf: Bdf,
    /// Vendor id.
    pub vendor_id: u16,
    /// Device id.
    pub device_id: u16,
    /// Subsystem vendor id (type 0 headers; 0 otherwise).
    pub subsystem_vendor_id: u16,
    /// Subsystem id (type 0 headers; 0 otherwise).
    pub subsystem_id: u16,
    /// Revision id.
    pub revision: u8,
    /// Class code.
    pub class: ClassCode,
    /// Header layout.
    pub header: HeaderKind,
    /// The multifunction bit (header type bit 7) as the function reports it.
    pub multifunction: bool,
    /// Bus numbers, if the function is a bridge.
    pub bridge: Option<BridgeBuses>,
    /// The PCI Express capability; `None` for a conventional PCI function.
    pub pcie: Option<PcieInfo>,
    /// The ACS extended capability.
    pub acs: Option<AcsInfo>,
    /// ACS controls a device-specific quirk says the hardware behaves as if
    /// enabled, whatever its registers say (Linux's
    /// `pci_dev_specific_acs_enabled`); `Some` overrides the standard rules.
    pub acs_quirk: Option<AcsFlags>,
    /// DMA requester-id quirks.
    pub dma_alias: DmaAliasQuirk,
    /// The MSI capability.
    pub msi: Option<MsiInfo>,
    /// The MSI-X capability.
    pub msix: Option<MsixInfo>,
    /// The first fault found in a capability list, if any.
    pub capability_fault: Option<CapabilityFault>,
}

/// What a bridge is, which decides the requester ids of DMA from below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BridgeKind {
    /// A conventional PCI-to-PCI bridge (no PCI Express capability).
    ConventionalPci,
    /// A conventional CardBus bridge.
    CardBus,
    /// A PCI Express root port.
    RootPort,
    /// A PCI Express switch upstream port.
    SwitchUpstream,
    /// A PCI Express switch downstream port.
    SwitchDownstream,
    /// A PCI Express to PCI/PCI-X bridge.
    PcieToPci,
    /// A PCI/PCI-X to PCI Express bridge.
    PciToPcie,
    /// A bridge header whose PCI Express type is not a bridge or port type.
    OtherPcie(PcieDeviceType),
}

impl BridgeKind {
    /// A short name for explanations ("PCIe-to-PCI bridge").
    pub const fn name(self) -> &'static str {
        match self {
            Self::ConventionalPci => "PCI bridge",
            Self::CardBus => "CardBus bridge",
            Self::RootPort => "root port",
            Self::SwitchUpstream => "switch upstream port",
            Self::SwitchDownstream => "switch downstream port",
            Self::PcieToPci => "PCIe-to-PCI bridge",
            Self::PciToPcie => "PCI-to-PCIe bridge",
            Self::OtherPcie(_) => "PCIe bridge",
        }
    }
}

impl PciFunction {
    /// What kind of bridge this is; `None` if it has no bridge bus numbers.
    pub fn bridge_kind(&self) -> Option<BridgeKind> {
        self.bridge?;
        Some(match self.pcie.map(|pcie| pcie.device_type) {
            None if self.header == HeaderKind::CardBus => BridgeKind::CardBus,
            None => BridgeKind::ConventionalPci,
            Some(PcieDeviceType::RootPort) => BridgeKind::RootPort,
            Some(PcieDeviceType::SwitchUpstream) => BridgeKind::SwitchUpstream,
            Some(PcieDeviceType::SwitchDownstream) => BridgeKind::SwitchDownstream,
            Some(PcieDeviceType::PcieToPciBridge) => BridgeKind::PcieToPci,
            Some(PcieDeviceType::PciToPcieBridge) => BridgeKind::PciToPcie,
            Some(other) => BridgeKind::OtherPcie(other),
        })
    }

    /// Whether Linux treats the function as part of a multifunction device:
    /// its multifunction bit is set, or it is not function 0 (a function
    /// other than 0 exists only in a multifunction device).
    pub fn is_multifunction(&self) -> bool {
        self.multifunction || self.bdf.function() != 0
    }
}
