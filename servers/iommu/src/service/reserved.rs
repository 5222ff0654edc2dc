//! Reserved memory regions (DMAR RMRRs): memory firmware-set-up DMA of some devices targets.
//!
//! Firmware may leave a device (a USB controller emulating a legacy
//! keyboard, a graphics engine) doing DMA to a region it reserved, and
//! lists the region with the devices in an RMRR. Those devices' default
//! domains map the region one to one, from before translation is turned
//! on; and because a user's address space would not, their groups are
//! kernel-owned only (Linux refuses them to VFIO for the same reason).

use acpi_tables::Dmar;
use acpi_tables::dmar::ScopeKind;
use capabilities::pci::{Bdf, PciFunction};
use heapless::Vec;

/// Most regions kept.
pub const MAX_REGIONS: usize = 8;
/// Most devices one region names.
pub const MAX_SCOPES: usize = 8;
/// Most bridges on a scope's path.
pub const MAX_HOPS: usize = 8;

/// A device an RMRR names: a path of device/function hops from a bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopePath {
    /// The bus the path starts on.
    pub start_bus: u8,
    /// (device, function) hops; all but the last are bridges.
    pub hops: Vec<(u8, u8), MAX_HOPS>,
}

impl ScopePath {
    /// The function the path names in `topology`, following bridges'
    /// secondary buses; `None` if a hop is missing or not a bridge.
    pub fn resolve(&self, topology: &[PciFunction]) -> Option<Bdf> {
        let mut bus = self.start_bus;
        let mut current: Option<Bdf> = None;
        for &(device, function) in &self.hops {
            if let Some(bridge) = current {
                bus = topology.iter().find(|f| f.bdf == bridge)?.bridge?.secondary;
            }
            current = Some(Bdf::new(bus, device, function)?);
        }
        current
    }
}

/// One reserved region and the devices that use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservedRegion {
    /// First byte (4 KiB aligned).
    pub base: u64,
    /// Last byte.
    pub limit: u64,
    /// The devices.
    pub scopes: Vec<ScopePath, MAX_SCOPES>,
}

impl ReservedRegion {
    /// Its 4 KiB pages.
    pub fn pages(&self) -> u64 {
        ((self.limit - self.base) >> 12) + 1
    }
}

/// More reserved regions, devices or hops than the server keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooMany;

/// The RMRRs of `segment` in `dmar` (whose parser already checked each
/// range is whole, ordered pages). Sub-hierarchy scopes name the bridge.
pub fn from_dmar(dmar: &Dmar<'_>, segment: u16) -> Result<Vec<ReservedRegion, MAX_REGIONS>, TooMany> {
    let mut regions = Vec::new();
    for rmrr in dmar.reserved_regions().filter(|rmrr| rmrr.segment == segment) {
        let mut scopes = Vec::new();
        for scope in
            rmrr.scopes().filter(|scope| matches!(scope.kind, ScopeKind::PciEndpoint | ScopeKind::PciSubHierarchy))
        {
            let hops = scope.path().map(|hop| (hop.device, hop.function));
            let hops = Vec::from_iter(hops.take(MAX_HOPS + 1));
            if hops.len() > MAX_HOPS {
                return Err(TooMany);
            }
            scopes.push(ScopePath { start_bus: scope.start_bus, hops }).map_err(|_| TooMany)?;
        }
        regions.push(ReservedRegion { base: rmrr.base, limit: rmrr.limit, scopes }).map_err(|_| TooMany)?;
    }
    Ok(regions)
}

#[cfg(test)]
mod tests {
    use acpi_tables::testing::{dmar, rmrr, scope};

    use super::*;

    /// A DMAR table with one DRHD-less RMRR of `scopes` (each a start bus and hops).
    fn dmar_with_rmrr(base: u64, limit: u64, scopes: &[(u8, &[(u8, u8)])]) -> std::vec::Vec<u8> {
        let scopes: std::vec::Vec<_> = scopes.iter().map(|(bus, hops)| scope(1, 0, *bus, hops)).collect();
        dmar(38, 0, &[rmrr(0, base, limit, &scopes)])
    }

    #[test]
    fn regions_come_out_of_the_dmar_table_with_their_device_paths() {
        let bytes = dmar_with_rmrr(0xe8000, 0xe8fff, &[(0, &[(0x1d, 0)]), (0, &[(0x1c, 0), (0, 1)])]);
        let dmar = Dmar::parse(&bytes).expect("a valid table");
        let regions = from_dmar(&dmar, 0).expect("fits");
        assert_eq!(regions.len(), 1);
        assert_eq!((regions[0].base, regions[0].limit, regions[0].pages()), (0xe8000, 0xe8fff, 1));
        assert_eq!(regions[0].scopes[1].hops.as_slice(), &[(0x1c, 0), (0, 1)]);
        assert!(from_dmar(&dmar, 1).expect("fits").is_empty(), "another segment's regions are not ours");
    }

    #[test]
    fn paths_resolve_through_bridges_and_fail_where_the_topology_differs() {
        use capabilities::pci::{HeaderKind, PcieDeviceType};
        let mut bridge = crate::testing::function(0, 0x1c, 0, HeaderKind::PciBridge, Some(PcieDeviceType::RootPort));
        bridge.bridge = Some(capabilities::pci::BridgeBuses { primary: 0, secondary: 3, subordinate: 3 });
        let topology = [bridge];
        let direct = ScopePath { start_bus: 0, hops: Vec::from_slice(&[(0x1d, 0)]).unwrap() };
        assert_eq!(direct.resolve(&topology), Bdf::new(0, 0x1d, 0));
        let behind = ScopePath { start_bus: 0, hops: Vec::from_slice(&[(0x1c, 0), (0, 1)]).unwrap() };
        assert_eq!(behind.resolve(&topology), Bdf::new(3, 0, 1));
        let missing = ScopePath { start_bus: 0, hops: Vec::from_slice(&[(0x1b, 0), (0, 0)]).unwrap() };
        assert_eq!(missing.resolve(&topology), None, "no bridge at 00:1b.0");
    }
}
