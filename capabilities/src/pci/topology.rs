//! Every function on one PCI segment: what the PCI server reports.

use heapless::Vec;
use serde::{Deserialize, Serialize};

use super::{Bdf, PciFunction};

/// Most functions one topology describes.
pub const MAX_FUNCTIONS: usize = 64;

/// Every function on one PCI segment, in the order the PCI server found
/// them: a bus's functions by device and function number, then the buses
/// below each of its bridges, depth first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Topology {
    /// PCI segment (ECAM group) number.
    pub segment: u16,
    /// The functions.
    pub functions: Vec<PciFunction, MAX_FUNCTIONS>,
}

impl Topology {
    /// The function at `bdf`, if the topology has it.
    pub fn function(&self, bdf: Bdf) -> Option<&PciFunction> {
        self.functions.iter().find(|function| function.bdf == bdf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::{BridgeBuses, BridgeKind, ClassCode, DmaAliasQuirk, HeaderKind, PcieDeviceType, PcieInfo};

    #[test]
    fn topology_round_trips_through_postcard() {
        let function = PciFunction {
            bdf: Bdf::new(1, 0, 0).unwrap(),
            vendor_id: 0x1b36,
            device_id: 0x000e,
            subsystem_vendor_id: 0,
            subsystem_id: 0,
            revision: 0,
            class: ClassCode { base: 6, sub: 4, interface: 0 },
            header: HeaderKind::PciBridge,
            multifunction: false,
            bridge: Some(BridgeBuses { primary: 1, secondary: 2, subordinate: 2 }),
            pcie: Some(PcieInfo {
                offset: 0x48,
                version: 2,
                device_type: PcieDeviceType::PcieToPciBridge,
                reported_type: PcieDeviceType::PcieToPciBridge,
                slot_implemented: false,
            }),
            acs: None,
            acs_quirk: None,
            dma_alias: DmaAliasQuirk::default(),
            msi: None,
            msix: None,
            capability_fault: None,
        };
        let mut topology = Topology::default();
        topology.functions.push(function).unwrap();
        let mut buffer = [0u8; 512];
        let bytes = postcard::to_slice(&topology, &mut buffer).unwrap();
        assert_eq!(postcard::from_bytes::<Topology>(bytes).unwrap(), topology);
        assert_eq!(topology.functions[0].bridge_kind(), Some(BridgeKind::PcieToPci));
    }
}
