//! Which PCI functions the driven remapping unit translates, as its DMAR scope says.
//!
//! A DRHD either lists devices (endpoints, and bridges standing for the
//! hierarchy below them) or is its segment's catch-all (INCLUDE_PCI_ALL),
//! which translates every function no other unit of the segment lists:
//! the specification has explicit scopes take precedence. A function no
//! driven unit translates reaches memory untranslated, so its group must
//! never be handed out for DMA, to a driver or a user.

use acpi_tables::Dmar;
use acpi_tables::dmar::{DeviceScope, ScopeKind};
use capabilities::pci::{Bdf, PciFunction};
use heapless::Vec;

use super::reserved::{MAX_HOPS, ScopePath, TooMany};

/// Most explicit device scopes kept, this unit's and the others' each:
/// one per function (QEMU lists every device of each root bus).
pub const MAX_UNIT_SCOPES: usize = capabilities::pci::MAX_FUNCTIONS;

/// One explicit scope: a function, or a bridge and everything below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeEntry {
    /// The function the scope names.
    pub path: ScopePath,
    /// A sub-hierarchy scope: the bridge and its secondary buses.
    pub below: bool,
}

/// The scope of the unit the server drives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitScope {
    /// The unit is its segment's catch-all.
    pub include_all: bool,
    /// Its own explicit scopes.
    pub listed: Vec<ScopeEntry, MAX_UNIT_SCOPES>,
    /// The explicit scopes of the segment's other units, which a catch-all
    /// does not translate.
    pub elsewhere: Vec<ScopeEntry, MAX_UNIT_SCOPES>,
}

impl UnitScope {
    /// A unit that translates every function (a platform with one
    /// catch-all unit): what the server assumes until told otherwise.
    pub const fn everything() -> Self {
        Self { include_all: true, listed: Vec::new(), elsewhere: Vec::new() }
    }

    /// The scope DMAR gives the unit at `register_base`, whose segment is
    /// `segment`.
    pub fn from_dmar(dmar: &Dmar<'_>, segment: u16, register_base: u64) -> Result<Self, TooMany> {
        let mut scope = Self { include_all: false, listed: Vec::new(), elsewhere: Vec::new() };
        for unit in dmar.units().filter(|unit| unit.segment == segment) {
            let ours = unit.register_base == register_base;
            if ours {
                scope.include_all = unit.include_pci_all();
            }
            let list = if ours { &mut scope.listed } else { &mut scope.elsewhere };
            for device in unit.scopes() {
                if let Some(entry) = entry(&device)? {
                    list.push(entry).map_err(|_| TooMany)?;
                }
            }
        }
        Ok(scope)
    }

    /// Whether the unit translates `device` of `topology`.
    pub fn covers(&self, topology: &[PciFunction], device: Bdf) -> bool {
        let named = |entries: &[ScopeEntry]| entries.iter().any(|entry| names(entry, topology, device));
        named(&self.listed) || (self.include_all && !named(&self.elsewhere))
    }
}

/// The scope entry of a PCI device scope (`None` for IO APICs, HPETs and
/// ACPI namespace devices, which are not PCI functions).
fn entry(scope: &DeviceScope<'_>) -> Result<Option<ScopeEntry>, TooMany> {
    let below = match scope.kind {
        ScopeKind::PciEndpoint => false,
        ScopeKind::PciSubHierarchy => true,
        _ => return Ok(None),
    };
    let hops = Vec::from_iter(scope.path().map(|hop| (hop.device, hop.function)).take(MAX_HOPS + 1));
    if hops.len() > MAX_HOPS {
        return Err(TooMany);
    }
    Ok(Some(ScopeEntry { path: ScopePath { start_bus: scope.start_bus, hops }, below }))
}

/// Whether `entry` names `device`: the function itself, or, for a
/// sub-hierarchy, anything on the bridge's secondary buses.
fn names(entry: &ScopeEntry, topology: &[PciFunction], device: Bdf) -> bool {
    let Some(named) = entry.path.resolve(topology) else { return false };
    if named == device {
        return true;
    }
    let buses = topology.iter().find(|f| f.bdf == named).and_then(|f| f.bridge);
    entry.below && buses.is_some_and(|buses| (buses.secondary..=buses.subordinate).contains(&device.bus()))
}

#[cfg(test)]
mod tests {
    use acpi_tables::testing::{dmar, drhd, scope};
    use capabilities::pci::{BridgeBuses, HeaderKind, PcieDeviceType};

    use super::*;
    use crate::testing::function;

    const ENDPOINT: u8 = 1;
    const BRIDGE: u8 = 2;
    const IOAPIC: u8 = 3;

    fn bdf(bus: u8, device: u8) -> Bdf {
        Bdf::new(bus, device, 0).unwrap()
    }

    /// 00:02.0 an endpoint, 00:03.0 a bridge to buses 1-2 with 01:00.0
    /// and 02:00.0 below, 00:04.0 and 00:1f.0 endpoints.
    fn topology() -> std::vec::Vec<PciFunction> {
        let mut bridge = function(0, 3, 0, HeaderKind::PciBridge, Some(PcieDeviceType::RootPort));
        bridge.bridge = Some(BridgeBuses { primary: 0, secondary: 1, subordinate: 2 });
        vec![
            function(0, 2, 0, HeaderKind::Normal, None),
            bridge,
            function(1, 0, 0, HeaderKind::Normal, None),
            function(2, 0, 0, HeaderKind::Normal, None),
            function(0, 4, 0, HeaderKind::Normal, None),
            function(0, 0x1f, 0, HeaderKind::Normal, None),
        ]
    }

    fn covered(table: &[u8], base: u64) -> std::vec::Vec<Bdf> {
        let dmar = Dmar::parse(table).expect("valid");
        let scope = UnitScope::from_dmar(&dmar, 0, base).expect("fits");
        let functions = topology();
        functions.iter().map(|f| f.bdf).filter(|&device| scope.covers(&functions, device)).collect()
    }

    #[test]
    fn two_units_an_explicit_one_and_the_catch_all_split_the_functions() {
        // Unit A lists 00:02.0 and the bridge's hierarchy; unit B takes the rest.
        let a = drhd(0, 0, 0xfed9_0000, &[scope(ENDPOINT, 0, 0, &[(2, 0)]), scope(BRIDGE, 0, 0, &[(3, 0)])]);
        let b = drhd(1, 0, 0xfed9_1000, &[scope(IOAPIC, 0, 0xff, &[(0, 0)])]);
        let table = dmar(38, 1, &[a, b]);
        assert_eq!(covered(&table, 0xfed9_0000), [bdf(0, 2), bdf(0, 3), bdf(1, 0), bdf(2, 0)]);
        assert_eq!(covered(&table, 0xfed9_1000), [bdf(0, 4), bdf(0, 0x1f)], "explicit scopes take precedence");
    }

    #[test]
    fn three_units_and_a_function_no_unit_lists_without_a_catch_all() {
        let a = drhd(0, 0, 0xfed9_0000, &[scope(ENDPOINT, 0, 0, &[(2, 0)])]);
        let b = drhd(0, 0, 0xfed9_1000, &[scope(BRIDGE, 0, 0, &[(3, 0)])]);
        let c = drhd(0, 0, 0xfed9_2000, &[scope(ENDPOINT, 0, 0, &[(0x1f, 0)])]);
        let table = dmar(38, 0, &[a, b, c]);
        assert_eq!(covered(&table, 0xfed9_0000), [bdf(0, 2)]);
        assert_eq!(covered(&table, 0xfed9_1000), [bdf(0, 3), bdf(1, 0), bdf(2, 0)]);
        assert_eq!(covered(&table, 0xfed9_2000), [bdf(0, 0x1f)]);
        for base in [0xfed9_0000, 0xfed9_1000, 0xfed9_2000] {
            assert!(!covered(&table, base).contains(&bdf(0, 4)), "00:04.0 is in no unit's scope");
        }
    }

    #[test]
    fn another_segments_units_do_not_narrow_a_catch_all() {
        let ours = drhd(1, 0, 0xfed9_0000, &[]);
        let theirs = drhd(0, 1, 0xfed9_1000, &[scope(ENDPOINT, 0, 0, &[(2, 0)])]);
        let table = dmar(38, 0, &[theirs, ours]);
        assert_eq!(covered(&table, 0xfed9_0000).len(), topology().len());
    }
}
