//! Finding the ECAM window in the kernel's ACPI snapshot and checking the granted one against it.

use acpi_tables::{Mcfg, SnapshotMemory};
use capabilities::abi::PAGE_SIZE;
use pci_server::ecam::Ecam;
use userlib::cap::{Cap, DeviceMemory, Frame};
use userlib::mmio;

/// Where the snapshot is mapped while it is read.
const SNAPSHOT_VIRT: u64 = 0x2000_0000;
/// Largest snapshot the kernel builds (its scratch buffer).
const SNAPSHOT_MAX: usize = 32 * 1024;

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
    let len = match mmio::copy_frame(acpi, SNAPSHOT_VIRT, &mut bytes) {
        Ok(len) => len,
        Err(code) => {
            defmt::error!("the ACPI snapshot cannot be read: {}", code);
            return None;
        }
    };
    let mut root = [0u8; 1024];
    let mut table = [0u8; 4096];
    let mcfg =
        match SnapshotMemory::find_in(&bytes[..len], &mut root, |tables, root| Mcfg::find(tables, root, &mut table)) {
            Ok(Ok(Some(mcfg))) => mcfg,
            Ok(Ok(None)) => {
                defmt::error!("the ACPI tables have no MCFG");
                return None;
            }
            Ok(Err(error)) => {
                defmt::error!("MCFG unusable: {}", defmt::Debug2Format(&error));
                return None;
            }
            Err(error) => {
                defmt::error!("the ACPI snapshot is unusable: {}", defmt::Debug2Format(&error));
                return None;
            }
        };
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
