//! The ECAM window and the root buses, from the kernel's ACPI snapshot: MCFG checked against the grant, the DSDT's host bridges.

use acpi_tables::aml::{self, AmlError};
use acpi_tables::{DsdtError, Mcfg};
use capabilities::abi::PAGE_SIZE;
use heapless::Vec;
use pci_server::ecam::Ecam;
use pci_server::roots::{self, MAX_ROOT_BUSES, RootBus};
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

/// Why the DSDT gave no host bridges (logged through `Debug`).
#[derive(Debug)]
#[allow(dead_code, reason = "the fields are read by the Debug output the log line shows")]
enum HostBridgesError {
    Dsdt(DsdtError),
    Aml(AmlError),
}

/// The root buses to enumerate: every host bridge the DSDT declares on the
/// granted window's segment and buses, in the DSDT's order (Linux's), or
/// the window's first bus alone where the DSDT says nothing usable, with
/// the reason logged. Functions below an unread root bus are never
/// enumerated, so they stay blocked: no context entry ever names them.
pub fn root_buses(acpi: Cap<Frame>, ecam: &Ecam) -> Vec<u8, MAX_ROOT_BUSES> {
    let first = ecam.buses().0;
    let mut reader = TableReader::new();
    let consequence = "only the ECAM window's first bus is enumerated";
    let mut said = false;
    let bridges = reader.read(acpi, "DSDT", consequence, |tables, root, _| match tables.dsdt(root) {
        Ok(Some(aml)) => aml::host_bridges(aml).map(Some).map_err(HostBridgesError::Aml),
        Ok(None) => Ok(None),
        Err(DsdtError::LeftOut { length }) => {
            defmt::warn!("the DSDT ({=u32} bytes) is not in the ACPI snapshot: {=str}", length, consequence);
            said = true;
            Ok(Some(Vec::new()))
        }
        Err(error) => Err(HostBridgesError::Dsdt(error)),
    });
    let place = |bridge: &aml::HostBridge| RootBus { segment: bridge.segment, bus: bridge.bus };
    for bridge in bridges.iter().flatten() {
        let name = core::str::from_utf8(&bridge.name).unwrap_or("????");
        if ecam.holds(place(bridge)) {
            defmt::info!("host bridge {=str}: root bus {=u8:02x}", name, bridge.bus);
        } else {
            defmt::warn!(
                "host bridge {=str} (segment {=u16}, bus {=u8:02x}) is outside the granted ECAM window: its devices stay blocked",
                name,
                bridge.segment,
                bridge.bus
            );
        }
    }
    let held = bridges.iter().flatten().filter(|bridge| ecam.holds(place(bridge))).count();
    if held == 0 && !said && bridges.is_some() {
        defmt::warn!("the DSDT declares no host bridge in the ECAM window: enumerating bus {=u8:02x} alone", first);
    }
    roots::root_buses(ecam, bridges.iter().flatten().map(place))
}
