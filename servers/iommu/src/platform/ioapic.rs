//! Interrupt remapping at start-up: its state in the log, and the kernel's IO APIC lines moved onto entries.

use iommu_server::service::Service;
use userlib::cap::{Cap, DeviceMemory};

use super::Vtd;

/// Most IO APIC lines looked at (an IO APIC has 24; a few have 120).
const MAX_LINES: u64 = 240;

/// Logs whether the unit remaps interrupts and, if it does, routes every
/// IO APIC line the kernel set up through an entry checked against the
/// IO APIC's source id (`ioapic_source`, from DMAR). `unit` is the
/// unit's register capability, the kernel's proof that this server owns
/// remapping.
pub fn start(service: &mut Service<Vtd<'_>>, unit: Cap<DeviceMemory>, ioapic_source: Option<u16>) {
    let compatibility = service.hardware().unit.compatibility_interrupts_allowed();
    let interrupts = service.interrupts();
    if !interrupts.enabled() {
        defmt::warn!("interrupt remapping off: {=str}", interrupts.off_reason());
        return;
    }
    defmt::info!(
        "interrupt remapping on: 255 entries, compatibility-format interrupts {=str}",
        if compatibility { "allowed (GSTS.CFIS set)" } else { "blocked (GSTS.CFIS clear)" }
    );
    let Some(source) = ioapic_source else { return };
    for index in 0..MAX_LINES {
        let Ok(line) = unit.ioapic_line(index) else { break };
        if line.handle.is_some() {
            continue;
        }
        let Some(handle) = service.remap_ioapic_line(source, line.vector, line.destination, line.level) else {
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
