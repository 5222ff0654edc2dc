//! Which remapping unit translates each PCI function, as DMAR's device scopes say.
//!
//! A DRHD either lists devices (endpoints, and bridges standing for the
//! hierarchy below them) or is its segment's catch-all (INCLUDE_PCI_ALL),
//! which translates every function no other unit of the segment lists.
//! The specification orders the matching: explicit scopes first, then the
//! catch-all, which firmware must report after every other unit of its
//! segment. A function DMAR puts under two units (two units' scopes name
//! it, or two catch-alls take it) has no unit anyone can rely on, and a
//! function no driven unit translates reaches memory untranslated: groups
//! holding either are never handed out for DMA, to a driver or a user.

use acpi_tables::Dmar;
use acpi_tables::dmar::{DeviceScope, ScopeKind};
use capabilities::pci::{Bdf, PciFunction};
use heapless::Vec;

use super::reserved::{MAX_HOPS, ScopePath, TooMany};

/// Most explicit device scopes kept over every unit of the segment: one
/// per function (QEMU lists every device of each root bus).
pub const MAX_UNIT_SCOPES: usize = capabilities::pci::MAX_FUNCTIONS;
/// Most DRHDs of one segment kept, granted to this server or not.
pub const MAX_DMAR_UNITS: usize = 16;

/// One explicit scope: a function, or a bridge and everything below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeEntry {
    /// The function the scope names.
    pub path: ScopePath,
    /// A sub-hierarchy scope: the bridge and its secondary buses.
    pub below: bool,
}

/// One DRHD of the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmarUnit {
    /// Its register base, which names it.
    pub base: u64,
    /// It is the segment's catch-all (INCLUDE_PCI_ALL).
    pub include_all: bool,
}

/// Which unit DMAR has translate a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// The unit with this register base.
    Unit(u64),
    /// Two units at once (these register bases): DMAR contradicts itself.
    Ambiguous(u64, u64),
    /// No unit: its DMA is not remapped at all.
    Nothing,
}

/// The device scopes of every DRHD of one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scopes {
    /// The units, in DMAR order.
    units: Vec<DmarUnit, MAX_DMAR_UNITS>,
    /// Every explicit scope, with the position of its unit in `units`.
    listed: Vec<(u8, ScopeEntry), MAX_UNIT_SCOPES>,
}

impl Scopes {
    /// One catch-all unit at `base` that translates every function (a
    /// platform with one unit): what the server assumes until told
    /// otherwise.
    pub fn catch_all(base: u64) -> Self {
        let mut units = Vec::new();
        let _ = units.push(DmarUnit { base, include_all: true });
        Self { units, listed: Vec::new() }
    }

    /// The scopes of `dmar`'s units of `segment`.
    pub fn from_dmar(dmar: &Dmar<'_>, segment: u16) -> Result<Self, TooMany> {
        let mut scopes = Self { units: Vec::new(), listed: Vec::new() };
        for unit in dmar.units().filter(|unit| unit.segment == segment) {
            let position = scopes.units.len() as u8;
            let record = DmarUnit { base: unit.register_base, include_all: unit.include_pci_all() };
            scopes.units.push(record).map_err(|_| TooMany)?;
            for device in unit.scopes() {
                if let Some(entry) = entry(&device)? {
                    scopes.listed.push((position, entry)).map_err(|_| TooMany)?;
                }
            }
        }
        Ok(scopes)
    }

    /// The segment's units, in DMAR order.
    pub fn units(&self) -> &[DmarUnit] {
        &self.units
    }

    /// How many explicit scopes the unit at `base` lists.
    pub fn listed_by(&self, base: u64) -> usize {
        self.listed.iter().filter(|(position, _)| self.base_at(*position) == Some(base)).count()
    }

    /// Whether a catch-all comes before another unit of the segment, which
    /// the specification forbids (matching does not depend on the order).
    pub fn catch_all_out_of_order(&self) -> bool {
        self.units.iter().skip_while(|unit| !unit.include_all).any(|unit| !unit.include_all)
    }

    /// The unit that translates `device` of `topology`: the one whose
    /// explicit scope names it, else the segment's catch-all.
    pub fn unit_of(&self, topology: &[PciFunction], device: Bdf) -> Coverage {
        let named = self.listed.iter().filter(|(_, entry)| names(entry, topology, device)).map(|(at, _)| *at);
        if let Some(coverage) = one_of(named.filter_map(|position| self.base_at(position))) {
            return coverage;
        }
        let catch_alls = self.units.iter().filter(|unit| unit.include_all).map(|unit| unit.base);
        one_of(catch_alls).unwrap_or(Coverage::Nothing)
    }

    fn base_at(&self, position: u8) -> Option<u64> {
        self.units.get(usize::from(position)).map(|unit| unit.base)
    }
}

/// The one unit of `bases` (repeats allowed), two if they differ, or
/// `None` if there are none.
fn one_of(mut bases: impl Iterator<Item = u64>) -> Option<Coverage> {
    let first = bases.next()?;
    Some(match bases.find(|&base| base != first) {
        Some(second) => Coverage::Ambiguous(first, second),
        None => Coverage::Unit(first),
    })
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

    fn scopes(table: &[u8]) -> Scopes {
        Scopes::from_dmar(&Dmar::parse(table).expect("valid"), 0).expect("fits")
    }

    fn covered(table: &[u8], base: u64) -> std::vec::Vec<Bdf> {
        let scopes = scopes(table);
        let functions = topology();
        let ours = |device: &Bdf| scopes.unit_of(&functions, *device) == Coverage::Unit(base);
        functions.iter().map(|f| f.bdf).filter(ours).collect()
    }

    #[test]
    fn two_units_an_explicit_one_and_the_catch_all_split_the_functions() {
        // Unit A lists 00:02.0 and the bridge's hierarchy; unit B takes the rest.
        let a = drhd(0, 0, 0xfed9_0000, &[scope(ENDPOINT, 0, 0, &[(2, 0)]), scope(BRIDGE, 0, 0, &[(3, 0)])]);
        let b = drhd(1, 0, 0xfed9_1000, &[scope(IOAPIC, 0, 0xff, &[(0, 0)])]);
        let table = dmar(38, 1, &[a, b]);
        assert_eq!(covered(&table, 0xfed9_0000), [bdf(0, 2), bdf(0, 3), bdf(1, 0), bdf(2, 0)]);
        assert_eq!(covered(&table, 0xfed9_1000), [bdf(0, 4), bdf(0, 0x1f)], "explicit scopes take precedence");
        assert_eq!(scopes(&table).listed_by(0xfed9_0000), 2, "the IO APIC is no PCI function");
        assert!(!scopes(&table).catch_all_out_of_order());
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
        assert_eq!(scopes(&table).unit_of(&topology(), bdf(0, 4)), Coverage::Nothing, "in no unit's scope");
    }

    #[test]
    fn three_units_two_explicit_and_a_catch_all_reported_first_still_match_explicit_first() {
        // Firmware broke the rule that the catch-all comes last: matching
        // does not depend on the order, and the break is reported.
        let all = drhd(1, 0, 0xfed9_2000, &[]);
        let a = drhd(0, 0, 0xfed9_0000, &[scope(BRIDGE, 0, 0, &[(3, 0)])]);
        let b = drhd(0, 0, 0xfed9_1000, &[scope(ENDPOINT, 0, 0, &[(0x1f, 0)])]);
        let table = dmar(38, 0, &[all, a, b]);
        assert!(scopes(&table).catch_all_out_of_order());
        assert_eq!(covered(&table, 0xfed9_0000), [bdf(0, 3), bdf(1, 0), bdf(2, 0)]);
        assert_eq!(covered(&table, 0xfed9_1000), [bdf(0, 0x1f)]);
        assert_eq!(covered(&table, 0xfed9_2000), [bdf(0, 2), bdf(0, 4)]);
    }

    #[test]
    fn a_function_dmar_puts_under_two_units_is_under_neither() {
        // A names the bridge's hierarchy, B an endpoint inside it; and two
        // catch-alls contend for the rest.
        let a = drhd(0, 0, 0xfed9_0000, &[scope(BRIDGE, 0, 0, &[(3, 0)]), scope(ENDPOINT, 0, 0, &[(3, 0)])]);
        let b = drhd(0, 0, 0xfed9_1000, &[scope(ENDPOINT, 1, 0, &[(3, 0), (0, 0)])]);
        let first = drhd(1, 0, 0xfed9_2000, &[]);
        let second = drhd(1, 0, 0xfed9_3000, &[]);
        let scopes = scopes(&dmar(38, 0, &[a, b, first, second]));
        let functions = topology();
        assert_eq!(scopes.unit_of(&functions, bdf(0, 3)), Coverage::Unit(0xfed9_0000), "named twice by one unit");
        assert_eq!(scopes.unit_of(&functions, bdf(1, 0)), Coverage::Ambiguous(0xfed9_0000, 0xfed9_1000));
        assert_eq!(scopes.unit_of(&functions, bdf(2, 0)), Coverage::Unit(0xfed9_0000));
        assert_eq!(scopes.unit_of(&functions, bdf(0, 4)), Coverage::Ambiguous(0xfed9_2000, 0xfed9_3000));
    }

    #[test]
    fn another_segments_units_do_not_narrow_a_catch_all() {
        let ours = drhd(1, 0, 0xfed9_0000, &[]);
        let theirs = drhd(0, 1, 0xfed9_1000, &[scope(ENDPOINT, 0, 0, &[(2, 0)])]);
        let table = dmar(38, 0, &[theirs, ours]);
        assert_eq!(covered(&table, 0xfed9_0000).len(), topology().len());
        assert_eq!(scopes(&table).units().len(), 1, "the other segment's unit is not kept");
    }

    #[test]
    fn the_assumed_catch_all_covers_everything() {
        let scopes = Scopes::catch_all(0xfed9_0000);
        let functions = topology();
        assert!(functions.iter().all(|f| scopes.unit_of(&functions, f.bdf) == Coverage::Unit(0xfed9_0000)));
    }
}
