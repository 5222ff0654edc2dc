//! Every function on one PCI segment: what the PCI server reports.

use heapless::Vec;
use serde::{Deserialize, Serialize};

use super::{Bdf, PciFunction};

/// Most functions one topology describes.
pub const MAX_FUNCTIONS: usize = 1024;

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
    use crate::pci::{BridgeBuses, BridgeKind, ClassCode, HeaderKind, PcieDeviceType};

    #[test]
    fn topology_round_trips_through_postcard() {
        let function = PciFunction {
            vendor_id: 0x1b36,
            device_id: 0x000e,
            class: ClassCode { base: 6, sub: 4, interface: 0 },
            bridge: Some(BridgeBuses { primary: 1, secondary: 2, subordinate: 2 }),
            ..crate::testing::function(
                Bdf::new(1, 0, 0).unwrap(),
                HeaderKind::PciBridge,
                Some(PcieDeviceType::PcieToPciBridge),
            )
        };
        let mut topology = Topology::default();
        topology.functions.push(function).unwrap();
        let mut buffer = [0u8; 512];
        let bytes = postcard::to_slice(&topology, &mut buffer).unwrap();
        assert_eq!(postcard::from_bytes::<Topology>(bytes).unwrap(), topology);
        assert_eq!(topology.functions[0].bridge_kind(), Some(BridgeKind::PcieToPci));
    }
}
