//! Builds hand-made topologies for the group-formation tests.

use capabilities::pci::{AcsFlags, AcsInfo, Bdf, BridgeBuses, ClassCode, HeaderKind, PciFunction, PcieDeviceType};
use capabilities::testing::function;

/// Parses `BB:DD.F`.
pub fn bdf(text: &str) -> Bdf {
    let (bus, rest) = text.split_once(':').unwrap();
    let (device, function) = rest.split_once('.').unwrap();
    let hex = |s: &str| u8::from_str_radix(s, 16).unwrap();
    Bdf::new(hex(bus), hex(device), hex(function)).unwrap()
}

/// A conventional PCI endpoint at `at`.
pub fn conventional(at: &str) -> PciFunction {
    function(bdf(at), HeaderKind::Normal, None)
}

/// A PCI Express function of `kind` at `at`.
pub fn pcie(at: &str, kind: PcieDeviceType) -> PciFunction {
    function(bdf(at), HeaderKind::Normal, Some(kind))
}

/// Builder steps on a function.
pub trait With {
    /// Makes it a bridge to `secondary` (subordinate the same).
    fn bridge_to(self, secondary: u8) -> Self;
    /// Sets the multifunction bit.
    fn multifunction(self) -> Self;
    /// Gives it an ACS capability with these capability and control bits.
    fn acs(self, capability: AcsFlags, control: AcsFlags) -> Self;
    /// Gives it an ACS capability implementing and enabling every isolation control.
    fn full_acs(self) -> Self;
    /// Sets an ACS quirk.
    fn acs_quirk(self, flags: AcsFlags) -> Self;
    /// Adds a quirk DMA alias to `devfn` on its bus.
    fn alias_devfn(self, devfn: u8) -> Self;
}

impl With for PciFunction {
    fn bridge_to(self, secondary: u8) -> Self {
        let header = HeaderKind::PciBridge;
        let bridge = Some(BridgeBuses { primary: self.bdf.bus(), secondary, subordinate: secondary });
        PciFunction { header, bridge, class: ClassCode { base: 6, sub: 4, interface: 0 }, ..self }
    }
    fn multifunction(self) -> Self {
        PciFunction { multifunction: true, ..self }
    }
    fn acs(self, capability: AcsFlags, control: AcsFlags) -> Self {
        PciFunction { acs: Some(AcsInfo { offset: 0x148, capability, control }), ..self }
    }
    fn full_acs(self) -> Self {
        self.acs(AcsFlags(0x5f), AcsFlags::ISOLATION)
    }
    fn acs_quirk(self, flags: AcsFlags) -> Self {
        PciFunction { acs_quirk: Some(flags), ..self }
    }
    fn alias_devfn(mut self, devfn: u8) -> Self {
        self.dma_alias.devfns.insert(devfn);
        self
    }
}

/// Groups as sorted lists of addresses, sorted.
pub fn partition(groups: &iommu_groups::Groups) -> Vec<Vec<String>> {
    let mut all: Vec<Vec<String>> = groups
        .ids()
        .map(|id| {
            let mut members: Vec<String> = groups.members(id).map(|b| b.to_string()).collect();
            members.sort();
            members
        })
        .collect();
    all.sort();
    all
}

/// `partition` of the expected groups, written as slices of addresses.
pub fn expected(groups: &[&[&str]]) -> Vec<Vec<String>> {
    let mut all: Vec<Vec<String>> = groups
        .iter()
        .map(|group| {
            let mut members: Vec<String> = group.iter().map(|s| s.to_string()).collect();
            members.sort();
            members
        })
        .collect();
    all.sort();
    all
}

/// The explanation of the group holding `at`.
pub fn explain(groups: &iommu_groups::Groups, at: &str) -> String {
    groups.explain(groups.group_of(bdf(at)).unwrap()).to_string()
}
