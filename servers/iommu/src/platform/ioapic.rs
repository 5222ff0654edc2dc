//! Interrupt remapping at start-up: its state in the log, and the kernel's IO APIC lines moved onto entries.

use iommu_server::service::Service;
use userlib::cap::{Cap, DeviceMemory};

use super::Vtd;

/// Most IO APIC lines looked at (an IO APIC has 24; a few have 120).
const MAX_LINES: u64 = 240;

/// Logs whether driven unit `index` remaps interrupts and, if it does and
/// its scope holds the IO APIC, routes every IO APIC line the kernel set
/// up through an entry of its table checked against the IO APIC's source
/// id (`ioapic_source`, from DMAR). `unit` is the unit's register
/// capability, the kernel's proof that this server owns the IO APIC's
/// remapping.
pub fn start(service: &mut Service<Vtd<'_>>, index: u8, unit: Cap<DeviceMemory>, ioapic_source: Option<u16>) {
    let Some(driven) = service.hardware().unit(index) else { return };
    let (base, compatibility) = (driven.base, driven.unit.compatibility_interrupts_allowed());
    let Some(interrupts) = service.interrupts(index) else { return };
    if !interrupts.enabled() {
        defmt::warn!("unit {=u64:#x}: interrupt remapping off: {=str}", base, interrupts.off_reason());
        return;
    }
    defmt::info!(
        "unit {=u64:#x}: interrupt remapping on: 255 entries, compatibility-format interrupts {=str}",
        base,
        if compatibility { "allowed (GSTS.CFIS set)" } else { "blocked (GSTS.CFIS clear)" }
    );
    let Some(source) = ioapic_source else { return };
    for line_index in 0..MAX_LINES {
        let Ok(line) = unit.ioapic_line(line_index) else { break };
        if line.handle.is_some() {
            continue;
        }
        let Some(handle) = service.remap_ioapic_line(index, source, line.vector, line.destination, line.level) else {
            defmt::error!("IO APIC line {=u8}: no interrupt entry; it stays in compatibility format", line.gsi);
            continue;
        };
        match unit.ioapic_remap(line.gsi, handle) {
            Ok(()) => defmt::info!(
                "IO APIC line {=u8} ({=str}, vector {=u8:#x}) through interrupt entry {=u16}",
                line.gsi,
                if line.level { "level" } else { "edge" },
                line.vector,
                handle
            ),
            Err(code) => defmt::error!("IO APIC line {=u8} not remapped: {}", line.gsi, code),
        }
    }
}
