//! Finding the granted unit in the DMAR table of the kernel's ACPI snapshot.

use acpi_tables::Dmar;
use acpi_tables::dmar::ScopeKind;
use capabilities::abi::PAGE_SIZE;
use heapless::Vec;
use iommu_server::service::reserved::{self, MAX_HOPS, MAX_REGIONS, ReservedRegion};
use iommu_server::service::scope::{MAX_UNIT_SCOPES, UnitScope};
use userlib::acpi::{TableReader, granted_region};
use userlib::cap::{Cap, DeviceMemory, Frame};

/// What DMAR says about the granted unit.
pub struct UnitDescription {
    /// Physical address bits the platform decodes (DMAR's host address width).
    pub host_address_width: u8,
    /// Bytes of its register set.
    pub register_size: u64,
    /// The reserved memory regions of its segment.
    pub reserved: Vec<ReservedRegion, MAX_REGIONS>,
    /// The functions it translates.
    pub scope: UnitScope,
    /// The source id of the IO APIC in its scope, if one is (the
    /// requester id its interrupt messages carry).
    pub ioapic_source: Option<u16>,
}

/// The DMAR entry of the unit whose registers `registers` grants, read from
/// the ACPI snapshot in `acpi`. Problems are logged.
pub fn describe_unit(acpi: Cap<Frame>, registers: Cap<DeviceMemory>) -> Option<UnitDescription> {
    let (base, pages) = granted_region(registers, "remapping-unit")?;
    let mut reader = TableReader::new();
    let dmar = reader.read(acpi, "DMAR", "no VT-d unit to drive", Dmar::find)?;
    let Some(unit) = dmar.units().find(|unit| unit.register_base == base) else {
        defmt::error!("the remapping-unit capability at {=u64:#x} is no DMAR unit", base);
        return None;
    };
    if pages * PAGE_SIZE < unit.register_size() {
        defmt::error!(
            "the remapping-unit capability has {=u64} pages; DMAR says {=u64}",
            pages,
            unit.register_size() / PAGE_SIZE
        );
        return None;
    }
    defmt::info!(
        "VT-d unit at {=u64:#x} (DMAR and capability agree): segment {=u16}, host address width {=u8}",
        base,
        unit.segment,
        dmar.host_address_width
    );
    let reserved = match reserved::from_dmar(&dmar, unit.segment) {
        Ok(reserved) => reserved,
        Err(reserved::TooMany) => {
            defmt::error!("DMAR lists more reserved regions, devices or bridges than the server keeps");
            return None;
        }
    };
    for region in &reserved {
        defmt::info!(
            "reserved memory region {=u64:#x}..={=u64:#x} for {=usize} devices",
            region.base,
            region.limit,
            region.scopes.len()
        );
    }
    let Ok(scope) = UnitScope::from_dmar(&dmar, unit.segment, base) else {
        defmt::error!(
            "DMAR lists more device scopes, or longer paths, than the server keeps (MAX_UNIT_SCOPES = {=usize}, MAX_HOPS = {=usize})",
            MAX_UNIT_SCOPES,
            MAX_HOPS
        );
        return None;
    };
    defmt::info!(
        "the unit translates {=usize} listed scopes{=str}; {=usize} scopes are other units'",
        scope.listed.len(),
        if scope.include_all { " and every other function of its segment (INCLUDE_PCI_ALL)" } else { "" },
        scope.elsewhere.len()
    );
    let ioapic_source = unit
        .scopes()
        .filter(|scope| scope.kind == ScopeKind::IoApic)
        .find_map(|scope| scope.direct_address())
        .map(|address| address.source_id());
    match ioapic_source {
        Some(source) => defmt::info!(
            "IO APIC in the unit's scope, source id {=u16:#06x}; DMAR says the platform {=str} interrupt remapping",
            source,
            if dmar.flags.interrupt_remapping() { "supports" } else { "does not support" }
        ),
        None => defmt::info!("no IO APIC in the unit's scope: its lines stay in compatibility format"),
    }
    Some(UnitDescription {
        host_address_width: dmar.host_address_width,
        register_size: unit.register_size(),
        reserved,
        scope,
        ioapic_source,
    })
}
