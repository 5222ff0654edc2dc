//! Device quirks that change DMA requester ids or ACS behaviour.
//!
//! The ids are the ones Linux 6.1 lists in `drivers/pci/quirks.c`, written
//! here as data. All DMA-alias quirks that can be decided from configuration
//! space are here, because a missing one makes a group too small, which
//! breaks isolation. Of the ACS quirks only the one QEMU needs is here (Intel
//! root-complex integrated endpoints, which QEMU's `e1000e` is on the root
//! bus): the others grant isolation to specific real hardware, so leaving
//! them out can only make groups larger than Linux's, never smaller.
//! Not covered: Switchtec NTB aliases, which Linux reads from the device's
//! MMIO registers, not from configuration space.

use capabilities::pci::{AcsFlags, Bdf, DevfnSet, PcieDeviceType};

/// Vendor ids the tables use.
mod vendor {
    pub const INTEL: u16 = 0x8086;
    pub const RICOH: u16 = 0x1180;
    pub const GLENFLY: u16 = 0x6766;
    pub const MARVELL_EXT: u16 = 0x1b4b;
    pub const TTI: u16 = 0x1103;
    pub const JMICRON: u16 = 0x197b;
    pub const LITE_ON: u16 = 0x1c28;
    pub const ADAPTEC2: u16 = 0x9005;
    pub const ASMEDIA: u16 = 0x1b21;
    pub const TUNDRA: u16 = 0x10e3;
    pub const ITE: u16 = 0x1283;
    pub const PLX: u16 = 0x10b5;
    pub const BROADCOM: u16 = 0x14e4;
}

/// Devices that DMA with function 0's requester id.
const FUNCTION0_ALIAS: &[(u16, u16)] =
    &[(vendor::RICOH, 0xe832), (vendor::RICOH, 0xe476), (vendor::GLENFLY, 0x3d40), (vendor::GLENFLY, 0x3d41)];

/// Devices that DMA with function 1's requester id (Marvell SATA and kin).
const FUNCTION1_ALIAS: &[(u16, u16)] = &[
    (vendor::MARVELL_EXT, 0x9120),
    (vendor::MARVELL_EXT, 0x9123),
    (vendor::MARVELL_EXT, 0x9125),
    (vendor::MARVELL_EXT, 0x9128),
    (vendor::MARVELL_EXT, 0x9130),
    (vendor::MARVELL_EXT, 0x9170),
    (vendor::MARVELL_EXT, 0x9172),
    (vendor::MARVELL_EXT, 0x917a),
    (vendor::MARVELL_EXT, 0x9182),
    (vendor::MARVELL_EXT, 0x9183),
    (vendor::MARVELL_EXT, 0x91a0),
    (vendor::MARVELL_EXT, 0x9215),
    (vendor::MARVELL_EXT, 0x9220),
    (vendor::MARVELL_EXT, 0x9230),
    (vendor::MARVELL_EXT, 0x9235),
    (vendor::TTI, 0x0642),
    (vendor::TTI, 0x0645),
    (vendor::JMICRON, 0x2392),
    (vendor::LITE_ON, 0x0122),
];

/// Adaptec RAID cards (vendor, device, subsystem vendor, subsystem) whose
/// DMA engine is a hidden function at 01.0.
const FIXED_ALIAS_01_0: &[(u16, u16, u16, u16)] =
    &[(vendor::ADAPTEC2, 0x0285, vendor::ADAPTEC2, 0x02bb), (vendor::ADAPTEC2, 0x0285, vendor::ADAPTEC2, 0x02bc)];

/// Intel MIC x200 NTBs, which forward DMA with the requester ids 10.0, 11.0, 12.3.
const MIC_X200: &[u16] = &[0x2260, 0x2264];

/// Intel Visual Compute Accelerator NTBs: DMA with functions 0-4 of every slot.
const INTEL_VCA: &[u16] = &[0x2954, 0x2955, 0x2956, 0x2958, 0x2959, 0x295a];

/// PLX NTBs, which may DMA with any requester id on their bus.
const PLX_NTB: &[u16] = &[0x87b0, 0x87b1];

/// Conventional-looking bridges that are PCIe-to-PCI bridges in truth.
const PCIE_BRIDGE_ALIAS: &[(u16, u16)] = &[
    (vendor::ASMEDIA, 0x1080),
    (vendor::TUNDRA, 0x8113),
    (vendor::ITE, 0x8892),
    (vendor::ITE, 0x8893),
    (vendor::INTEL, 0x244e),
];

/// Broadcom Vulcan / Cavium ThunderX2 root ports, where the IOMMU sits.
const TRANSLATION_ROOT: &[(u16, u16)] = &[(vendor::BROADCOM, 0x9000), (vendor::BROADCOM, 0x9084)];

/// Identity of a function as the quirk tables match it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuirkIds {
    /// Vendor id.
    pub vendor_id: u16,
    /// Device id.
    pub device_id: u16,
    /// Subsystem vendor id.
    pub subsystem_vendor_id: u16,
    /// Subsystem id.
    pub subsystem_id: u16,
}

/// The extra devfns `bdf`'s DMA may carry on its own bus.
pub fn dma_alias_devfns(ids: QuirkIds, bdf: Bdf) -> DevfnSet {
    let pair = (ids.vendor_id, ids.device_id);
    let mut devfns = DevfnSet::new();
    let slot = bdf.devfn() & !7;
    if FUNCTION0_ALIAS.contains(&pair) && bdf.function() != 0 {
        devfns.insert(slot);
    }
    if FUNCTION1_ALIAS.contains(&pair) && bdf.function() != 1 {
        devfns.insert(slot | 1);
    }
    let full = (ids.vendor_id, ids.device_id, ids.subsystem_vendor_id, ids.subsystem_id);
    if FIXED_ALIAS_01_0.contains(&full) {
        devfns.insert(1 << 3);
    }
    if ids.vendor_id == vendor::INTEL && MIC_X200.contains(&ids.device_id) {
        for devfn in [0x10 << 3, 0x11 << 3, (0x12 << 3) | 3] {
            devfns.insert(devfn);
        }
    }
    if ids.vendor_id == vendor::INTEL && INTEL_VCA.contains(&ids.device_id) {
        for devfn in (0..=u8::MAX).filter(|devfn| devfn & 7 < 5) {
            devfns.insert(devfn);
        }
    }
    if ids.vendor_id == vendor::PLX && PLX_NTB.contains(&ids.device_id) {
        for devfn in 0..=u8::MAX {
            devfns.insert(devfn);
        }
    }
    devfns
}

/// Whether the device is a bridge known to hide that it is a PCIe-to-PCI
/// bridge. The alias applies only where Linux applies it: a bridge header
/// without a PCI Express capability, not on a root bus, whose parent is a
/// PCI Express port other than a PCIe-to-PCI bridge (see the enumerator).
pub fn claims_pcie_bridge_alias(ids: QuirkIds) -> bool {
    PCIE_BRIDGE_ALIAS.contains(&(ids.vendor_id, ids.device_id))
}

/// Whether the IOMMU translates at this bridge rather than at the root.
pub fn is_translation_root(ids: QuirkIds) -> bool {
    TRANSLATION_ROOT.contains(&(ids.vendor_id, ids.device_id))
}

/// ACS controls the device behaves as if enabled whatever its registers say.
///
/// Intel's root-complex integrated endpoints may only reach peers through
/// translated addresses (VT-d specification, "Root-Complex Peer to Peer
/// Considerations"), so Linux treats them as fully isolated.
pub fn acs_quirk(ids: QuirkIds, device_type: Option<PcieDeviceType>) -> Option<AcsFlags> {
    match (ids.vendor_id, device_type) {
        (vendor::INTEL, Some(PcieDeviceType::RootComplexEndpoint)) => Some(AcsFlags::ISOLATION),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(vendor_id: u16, device_id: u16) -> QuirkIds {
        QuirkIds { vendor_id, device_id, subsystem_vendor_id: 0, subsystem_id: 0 }
    }

    #[test]
    fn marvell_sata_aliases_function_one() {
        let set = dma_alias_devfns(ids(0x1b4b, 0x9123), Bdf::new(3, 0, 0).unwrap());
        assert_eq!(set.iter().collect::<std::vec::Vec<_>>(), [1]);
        assert!(dma_alias_devfns(ids(0x1b4b, 0x9123), Bdf::new(3, 0, 1).unwrap()).is_empty());
    }

    #[test]
    fn ricoh_aliases_function_zero_of_its_slot() {
        let set = dma_alias_devfns(ids(0x1180, 0xe832), Bdf::new(3, 4, 2).unwrap());
        assert_eq!(set.iter().collect::<std::vec::Vec<_>>(), [4 << 3]);
    }

    #[test]
    fn adaptec_alias_needs_the_subsystem() {
        let bdf = Bdf::new(5, 0xe, 0).unwrap();
        assert!(dma_alias_devfns(ids(0x9005, 0x0285), bdf).is_empty());
        let card = QuirkIds { subsystem_vendor_id: 0x9005, subsystem_id: 0x02bb, ..ids(0x9005, 0x0285) };
        assert_eq!(dma_alias_devfns(card, bdf).iter().collect::<std::vec::Vec<_>>(), [8]);
    }

    #[test]
    fn ntb_aliases() {
        let bdf = Bdf::new(2, 0, 0).unwrap();
        assert_eq!(dma_alias_devfns(ids(0x10b5, 0x87b0), bdf).iter().count(), 256);
        assert_eq!(dma_alias_devfns(ids(0x8086, 0x2954), bdf).iter().count(), 32 * 5);
        assert_eq!(dma_alias_devfns(ids(0x8086, 0x2260), bdf).iter().collect::<std::vec::Vec<_>>(), [0x80, 0x88, 0x93]);
    }

    #[test]
    fn only_intel_integrated_endpoints_get_the_acs_quirk() {
        let rciep = Some(PcieDeviceType::RootComplexEndpoint);
        assert_eq!(acs_quirk(ids(0x8086, 0x10d3), rciep), Some(AcsFlags::ISOLATION));
        assert_eq!(acs_quirk(ids(0x8086, 0x10d3), Some(PcieDeviceType::Endpoint)), None);
        assert_eq!(acs_quirk(ids(0x1b36, 0x0010), rciep), None);
        assert_eq!(acs_quirk(ids(0x8086, 0x100e), None), None);
    }
}
