//! The PCI Express capability: the device/port type and where it sits.

use serde::{Deserialize, Serialize};

/// The device/port type field of the PCI Express capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PcieDeviceType {
    /// 0: a PCI Express endpoint.
    Endpoint,
    /// 1: a legacy PCI Express endpoint.
    LegacyEndpoint,
    /// 4: a root port of the root complex.
    RootPort,
    /// 5: the upstream port of a switch.
    SwitchUpstream,
    /// 6: a downstream port of a switch.
    SwitchDownstream,
    /// 7: a PCI Express to PCI/PCI-X bridge.
    PcieToPciBridge,
    /// 8: a PCI/PCI-X to PCI Express bridge.
    PciToPcieBridge,
    /// 9: an endpoint integrated into the root complex.
    RootComplexEndpoint,
    /// 10: a root complex event collector.
    RootComplexEventCollector,
    /// A value the specification reserves.
    Reserved(u8),
}

impl PcieDeviceType {
    /// Decodes the 4-bit field.
    pub const fn from_field(field: u8) -> Self {
        match field & 0xf {
            0 => Self::Endpoint,
            1 => Self::LegacyEndpoint,
            4 => Self::RootPort,
            5 => Self::SwitchUpstream,
            6 => Self::SwitchDownstream,
            7 => Self::PcieToPciBridge,
            8 => Self::PciToPcieBridge,
            9 => Self::RootComplexEndpoint,
            10 => Self::RootComplexEventCollector,
            other => Self::Reserved(other),
        }
    }

    /// Whether this port is the upstream end of a link (root port, switch
    /// downstream port, or PCI-to-PCIe bridge), so the bus below it holds
    /// only device 0.
    pub const fn is_downstream_port(self) -> bool {
        matches!(self, Self::RootPort | Self::SwitchDownstream | Self::PciToPcieBridge)
    }

    /// The type Linux assumes when a switch port misreports its direction:
    /// a "downstream" port below a downstream port is really an upstream
    /// port, and an "upstream" port below an upstream port is really a
    /// downstream port. `parent` is the effective type of the bridge above
    /// (`None` on a root bus or below a conventional bridge).
    pub const fn corrected(self, parent: Option<PcieDeviceType>) -> Self {
        match (self, parent) {
            (Self::SwitchDownstream, Some(parent)) if parent.is_downstream_port() => Self::SwitchUpstream,
            (Self::SwitchUpstream, Some(Self::SwitchUpstream)) => Self::SwitchDownstream,
            (reported, _) => reported,
        }
    }
}

/// The PCI Express capability, as far as topology needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PcieInfo {
    /// Offset of the capability in configuration space.
    pub offset: u8,
    /// Capability version (bits 3:0 of its flags).
    pub version: u8,
    /// The device/port type topology rules use: the reported type,
    /// corrected for switch ports that misreport their direction.
    pub device_type: PcieDeviceType,
    /// The type the register reports.
    pub reported_type: PcieDeviceType,
    /// Whether the port has a slot (flags bit 8).
    pub slot_implemented: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_type_correction_follows_the_parent() {
        use PcieDeviceType::*;
        assert_eq!(SwitchDownstream.corrected(Some(SwitchDownstream)), SwitchUpstream);
        assert_eq!(SwitchDownstream.corrected(Some(RootPort)), SwitchUpstream);
        assert_eq!(SwitchDownstream.corrected(Some(SwitchUpstream)), SwitchDownstream);
        assert_eq!(SwitchUpstream.corrected(Some(SwitchUpstream)), SwitchDownstream);
        assert_eq!(SwitchUpstream.corrected(Some(RootPort)), SwitchUpstream);
        assert_eq!(SwitchDownstream.corrected(None), SwitchDownstream);
    }
}
