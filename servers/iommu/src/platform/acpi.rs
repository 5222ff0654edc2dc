//! Finding the granted units in the DMAR table of the kernel's ACPI snapshot.

use acpi_tables::Dmar;
use acpi_tables::dmar::{Drhd, ScopeKind};
use capabilities::abi::PAGE_SIZE;
use heapless::Vec;
use iommu_server::service::MAX_UNITS;
use iommu_server::service::reserved::{self, MAX_HOPS, MAX_REGIONS, ReservedRegion};
use iommu_server::service::scope::{MAX_DMAR_UNITS, MAX_UNIT_SCOPES, Scopes};
use userlib::acpi::{TableReader, granted_region};
use userlib::cap::{Cap, DeviceMemory, Frame};

/// What DMAR says about one granted unit.
pub struct UnitDescription {
    /// Its register capability.
    pub registers: Cap<DeviceMemory>,
    /// Its register base.
    pub base: u64,
    /// Bytes of its register set.
    pub register_size: u64,
    /// The source id of the IO APIC in its scope, if one is (the
    /// requester id its interrupt messages carry).
    pub ioapic_source: Option<u16>,
}

/// What DMAR says about the granted units and their segment.
pub struct Description {
    /// Physical address bits the platform decodes (DMAR's host address width).
    pub host_address_width: u8,
    /// The granted units DMAR lists, in grant order.
    pub units: Vec<UnitDescription, MAX_UNITS>,
    /// The reserved memory regions of their segment.
    pub reserved: Vec<ReservedRegion, MAX_REGIONS>,
    /// Which unit translates each function of their segment.
    pub scopes: Scopes,
}

/// The DMAR entries of the units `grants` grant (unused slots are skipped),
/// read from the ACPI snapshot in `acpi`. A grant that is no DMAR unit,
/// or is smaller than its unit's register set, or is of another segment
/// than the first unit's, is refused and logged; `None` if no grant is
/// left, or DMAR cannot be read.
pub fn describe(acpi: Cap<Frame>, grants: &[Cap<DeviceMemory>]) -> Option<Description> {
    let mut reader = TableReader::new();
    let dmar = reader.read(acpi, "DMAR", "no VT-d unit to drive", Dmar::find)?;
    let mut units = Vec::new();
    let mut segment = None;
    for &registers in grants.iter().filter(|grant| grant.slot() != 0) {
        let Some(unit) = granted_unit(&dmar, registers) else { continue };
        if *segment.get_or_insert(unit.segment) != unit.segment {
            defmt::error!(
                "the VT-d unit at {=u64:#x} is on segment {=u16}, the others on {=u16}: not driven",
                unit.register_base,
                unit.segment,
                segment.unwrap_or_default()
            );
            continue;
        }
        let ioapic_source = ioapic_source(&unit);
        let description =
            UnitDescription { registers, base: unit.register_base, register_size: unit.register_size(), ioapic_source };
        let _ = units.push(description);
    }
    let Some(segment) = segment else {
        defmt::error!("no remapping-unit capability names a DMAR unit: no VT-d unit to drive");
        return None;
    };
    defmt::info!("DMAR: host address width {=u8}, segment {=u16}", dmar.host_address_width, segment);
    let reserved = reserved_regions(&dmar, segment)?;
    let Ok(scopes) = Scopes::from_dmar(&dmar, segment) else {
        defmt::error!(
            "DMAR lists more units, device scopes or longer paths than the server keeps (MAX_DMAR_UNITS = {=usize}, MAX_UNIT_SCOPES = {=usize}, MAX_HOPS = {=usize})",
            MAX_DMAR_UNITS,
            MAX_UNIT_SCOPES,
            MAX_HOPS
        );
        return None;
    };
    log_scopes(&scopes, &units, dmar.flags.interrupt_remapping());
    Some(Description { host_address_width: dmar.host_address_width, units, reserved, scopes })
}

/// The DMAR unit `registers` grants, if its base is a unit's and it
/// covers the unit's register set; logged either way.
fn granted_unit<'a>(dmar: &Dmar<'a>, registers: Cap<DeviceMemory>) -> Option<Drhd<'a>> {
    let (base, pages) = granted_region(registers, "remapping-unit")?;
    let Some(unit) = dmar.units().find(|unit| unit.register_base == base) else {
        defmt::error!("the remapping-unit capability at {=u64:#x} is no DMAR unit: not driven", base);
        return None;
    };
    if pages * PAGE_SIZE < unit.register_size() {
        defmt::error!(
            "the remapping-unit capability at {=u64:#x} has {=u64} pages; DMAR says {=u64}: not driven",
            base,
            pages,
            unit.register_size() / PAGE_SIZE
        );
        return None;
    }
    defmt::info!("VT-d unit at {=u64:#x} (DMAR and capability agree), segment {=u16}", base, unit.segment);
    Some(unit)
}

/// The source id of the IO APIC `unit`'s scope lists, if it lists one.
fn ioapic_source(unit: &Drhd<'_>) -> Option<u16> {
    unit.scopes()
        .filter(|scope| scope.kind == ScopeKind::IoApic)
        .find_map(|scope| scope.direct_address())
        .map(|address| address.source_id())
}

/// The reserved memory regions of `segment`, logged; `None` if DMAR lists
/// more than the server keeps.
fn reserved_regions(dmar: &Dmar<'_>, segment: u16) -> Option<Vec<ReservedRegion, MAX_REGIONS>> {
    let Ok(reserved) = reserved::from_dmar(dmar, segment) else {
        defmt::error!("DMAR lists more reserved regions, devices or bridges than the server keeps");
        return None;
    };
    for region in &reserved {
        defmt::info!(
            "reserved memory region {=u64:#x}..={=u64:#x} for {=usize} devices",
            region.base,
            region.limit,
            region.scopes.len()
        );
    }
    Some(reserved)
}

/// Logs what each unit translates and where its IO APIC is.
fn log_scopes(scopes: &Scopes, units: &[UnitDescription], platform_remaps: bool) {
    for dmar_unit in scopes.units() {
        let driven = units.iter().any(|unit| unit.base == dmar_unit.base);
        defmt::info!(
            "the unit at {=u64:#x} translates {=usize} listed scopes{=str}{=str}",
            dmar_unit.base,
            scopes.listed_by(dmar_unit.base),
            if dmar_unit.include_all { " and every other function of its segment (INCLUDE_PCI_ALL)" } else { "" },
            if driven { "" } else { "; it is not granted to this server, so those go to no one" }
        );
    }
    if scopes.catch_all_out_of_order() {
        defmt::warn!(
            "DMAR reports a catch-all unit before another unit of its segment: explicit scopes still match first"
        );
    }
    for unit in units {
        match unit.ioapic_source {
            Some(source) => defmt::info!(
                "IO APIC in the scope of the unit at {=u64:#x}, source id {=u16:#06x}; DMAR says the platform {=str} interrupt remapping",
                unit.base,
                source,
                if platform_remaps { "supports" } else { "does not support" }
            ),
            None => defmt::info!("no IO APIC in the scope of the unit at {=u64:#x}", unit.base),
        }
    }
}
