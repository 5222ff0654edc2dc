//! A PCI function to build test topologies from, for this and other crates' tests (`testing` feature).

use crate::pci::{Bdf, ClassCode, DmaAliasQuirk, HeaderKind, PciFunction, PcieDeviceType, PcieInfo};

/// An edu-like function at `bdf` with `header` and nothing found beyond
/// its header, but for a PCI Express capability of `pcie`'s type at 0x40
/// if given; tests change the fields they care about.
pub fn function(bdf: Bdf, header: HeaderKind, pcie: Option<PcieDeviceType>) -> PciFunction {
    PciFunction {
        bdf,
        vendor_id: 0x1234,
        device_id: 0x11e8,
        subsystem_vendor_id: 0,
        subsystem_id: 0,
        revision: 0,
        class: ClassCode { base: 0, sub: 0xff, interface: 0 },
        header,
        multifunction: false,
        bridge: None,
        pcie: pcie.map(|device_type| PcieInfo {
            offset: 0x40,
            version: 2,
            device_type,
            reported_type: device_type,
            slot_implemented: false,
        }),
        acs: None,
        acs_quirk: None,
        dma_alias: DmaAliasQuirk::default(),
        msi: None,
        msix: None,
        capability_fault: None,
    }
}
