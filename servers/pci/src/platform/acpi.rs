//! Finding the ECAM window in the kernel's ACPI snapshot and checking the granted one against it.

use acpi_tables::Mcfg;
use capabilities::abi::PAGE_SIZE;
use pci_server::ecam::Ecam;
use userlib::acpi::{TableReader, granted_region};
use userlib::cap::{Cap, DeviceMemory, Frame};

/// The MCFG allocation whose window is exactly the granted ECAM capability
/// `ecam`, read from the ACPI snapshot in `acpi`. Problems are logged.
pub fn ecam_window(acpi: Cap<Frame>, ecam: Cap<DeviceMemory>) -> Option<Ecam> {
    let (base, pages) = granted_region(ecam, "ECAM")?;
    let mut reader = TableReader::new();
    let mcfg = reader.read(acpi, "MCFG", "no PCI configuration space", Mcfg::find)?;
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
