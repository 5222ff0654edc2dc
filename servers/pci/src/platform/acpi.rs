//! Finding the ECAM window in the kernel's ACPI snapshot and checking the granted one against it.

use acpi_tables::{Mcfg, SNAPSHOT_MAX};
use capabilities::abi::PAGE_SIZE;
use pci_server::ecam::Ecam;
use userlib::cap::{Cap, DeviceMemory, Frame};
use userlib::mmio::snapshot;

/// The MCFG allocation whose window is exactly the granted ECAM capability
/// `ecam`, read from the ACPI snapshot in `acpi`. Problems are logged.
pub fn ecam_window(acpi: Cap<Frame>, ecam: Cap<DeviceMemory>) -> Option<Ecam> {
    let granted = match ecam.info() {
        Ok(info) => info,
        Err(code) => {
            defmt::error!("no ECAM capability: {}", code);
            return None;
        }
    };
    let mut bytes = [0u8; SNAPSHOT_MAX];
    let mut root = [0u8; 1024];
    let mut table = [0u8; 4096];
    let found = snapshot(acpi, &mut bytes).and_then(|snapshot| {
        acpi_tables::find_table(snapshot, &mut root, "MCFG", |tables, root| Mcfg::find(tables, root, &mut table))
            .map_err(|error| defmt::error!("{}: no PCI configuration space", defmt::Display2Format(&error)))
            .ok()
    });
    let mcfg = found?;
    let (base, pages) = (granted.badge_or_base, granted.extent);
    let Some(region) = mcfg.regions().find(|region| region.start() == base) else {
        defmt::error!("the ECAM capability at {=u64:#x} is no MCFG window", base);
        return None;
    };
    if region.size() != pages * PAGE_SIZE {
        defmt::error!("the ECAM capability has {=u64} pages; MCFG says {=u64}", pages, region.size() / PAGE_SIZE);
        return None;
    }
    match Ecam::new(region.base, region.segment, region.start_bus, region.end_bus) {
        Ok(ecam) => {
            defmt::info!(
                "ECAM at {=u64:#x} (MCFG and capability agree): segment {=u16}, buses {=u8}-{=u8}",
                region.start(),
                region.segment,
                region.start_bus,
                region.end_bus
            );
            Some(ecam)
        }
        Err(error) => {
            defmt::error!("MCFG window unusable: {}", error);
            None
        }
    }
}
