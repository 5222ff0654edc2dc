//! Logs the IOMMU server's groups, one machine-readable line per PCI function.
//!
//! `cargo xtask groups` and `cargo xtask policy check --machine` boot this
//! task beside the PCI and IOMMU servers (`qemu/policies/groups.toml`) and
//! read its lines (the parser is `build/src/groups/report.rs`):
//!
//! ```text
//! GROUPS FUNCTIONS <n>                          the PCI server found n functions
//! GROUP <id> <BB:DD.F> 0x<vvvv>:0x<dddd>        one per function, by group
//! REASON <id> <sentence>                        why group <id> has its shape
//! GROUPS END <groups> <functions>               the report is complete
//! GROUPS ERROR <what went wrong>                the report is not to be trusted
//! MEMORY TASK <index> <pages>                   pages charged to task <index>
//! MEMORY FREE <frames>                          RAM frames the kernel has left
//! ```
//!
//! The memory lines follow a complete report, when the policy grants the
//! accounting capability: what the servers cost on this machine, for
//! `cargo xtask bench`'s scale rows.
//!
//! The groups are the server's own (`Groups { group }` until `NotFound`);
//! vendor and device ids come from the PCI server's `Devices`, the one
//! place that reads them. Every function the PCI server found must appear
//! in exactly one group, or the report ends in an error: a truncated member
//! list must never look like a smaller group.
#![no_std]
#![no_main]

use capabilities::ErrorCode;
use capabilities::pci::{Bdf, MAX_FUNCTIONS};
use heapless::Vec;
use iommu_api as iommu;
use userlib::ipc::Buffer;
use userlib::syscall;

userlib::cap_slot!(IOMMU: Endpoint = "iommu");
userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::cap_slot!(FIGURES: Control = "figures");
userlib::entry!(main);

/// How long to wait for the IOMMU server to form its groups, in
/// microseconds. The PCI server outranks this task and reports its
/// topology before it serves anyone, so this only runs out when a server
/// failed; the bound turns that into an error instead of a hang.
const READY_WAIT_US: u64 = 3_000_000;

/// A function the PCI server found, and whether a group listed it yet.
struct Function {
    bdf: Bdf,
    vendor: u16,
    device: u16,
    listed: bool,
}

fn main() -> u64 {
    let Some(mut buffer) = Buffer::take() else {
        defmt::error!("GROUPS ERROR the reporter has no IPC buffer");
        return 1;
    };
    let mut functions = match functions(&mut buffer) {
        Ok(functions) => functions,
        Err(()) => return 1,
    };
    defmt::info!("GROUPS FUNCTIONS {=usize}", functions.len());
    let groups = match report_groups(&mut buffer, &mut functions) {
        Ok(groups) => groups,
        Err(()) => return 1,
    };
    let mut complete = true;
    for function in functions.iter().filter(|function| !function.listed) {
        defmt::error!(
            "GROUPS ERROR {} was found by the PCI server but is in no group the IOMMU server listed",
            function.bdf
        );
        complete = false;
    }
    if !complete {
        return 1;
    }
    defmt::info!("GROUPS END {=u16} {=usize}", groups, functions.len());
    report_memory();
    0
}

/// Logs each task's memory-quota pages and the RAM left, once the groups
/// exist (the kernel's figures; task indices are the boot order).
fn report_memory() {
    match FIGURES.get().figures() {
        Ok(figures) => {
            for (index, task) in figures.tasks.iter().enumerate() {
                defmt::info!("MEMORY TASK {=usize} {=u64}", index, task.memory_pages);
            }
            defmt::info!("MEMORY FREE {=u64}", figures.machine.free_frames);
        }
        Err(code) => defmt::warn!("no memory figures ({}): the policy grants no accounting capability", code),
    }
}

/// Every function the PCI server found, in its order.
fn functions(buffer: &mut Buffer) -> Result<Vec<Function, MAX_FUNCTIONS>, ()> {
    let mut functions = Vec::new();
    for index in (0..MAX_FUNCTIONS).filter_map(|index| u16::try_from(index).ok()) {
        let request = pci_api::Request::Devices { index };
        let reply = PCI.get().call_with(buffer, &request).and_then(|received| buffer.decode(received.len));
        match reply {
            Ok(pci_api::Reply::Device { device: bdf, vendor, device_id, .. }) => {
                let function = Function { bdf, vendor, device: device_id, listed: false };
                // The loop asks for at most MAX_FUNCTIONS, so this fits.
                let _ = functions.push(function);
            }
            Ok(pci_api::Reply::Refused { code: ErrorCode::NotFound, .. }) => return Ok(functions),
            Ok(pci_api::Reply::Refused { code, reason }) => {
                defmt::error!("GROUPS ERROR the PCI server refused Devices ({}): {=str}", code, reason.as_str());
                return Err(());
            }
            Ok(_) => {
                defmt::error!("GROUPS ERROR the PCI server answered Devices with another reply");
                return Err(());
            }
            Err(code) => {
                defmt::error!("GROUPS ERROR asking the PCI server for its devices failed: {}", code);
                return Err(());
            }
        }
    }
    Ok(functions)
}

/// Logs every group the IOMMU server formed; returns how many there are.
fn report_groups(buffer: &mut Buffer, functions: &mut [Function]) -> Result<u16, ()> {
    let started = syscall::now();
    let mut group = 0u16;
    let mut offset = 0u16;
    loop {
        let request = iommu::Request::Groups { group, offset };
        let reply = IOMMU.get().call_with(buffer, &request).and_then(|received| buffer.decode(received.len));
        match reply {
            Ok(iommu::Reply::GroupInfo { group: id, offset: at, total, members, reasons, .. }) => {
                for bdf in &members {
                    list(functions, id, *bdf)?;
                }
                if at == 0 {
                    for sentence in reasons.as_str().lines().filter(|line| !line.is_empty()) {
                        defmt::info!("REASON {=u16} {=str}", id, sentence);
                    }
                }
                // The group's next page, if the reply did not hold them all.
                let listed = usize::from(at) + members.len();
                if !members.is_empty() && listed < usize::from(total) {
                    offset = listed as u16;
                    continue;
                }
                offset = 0;
            }
            Ok(iommu::Reply::Refused { code: ErrorCode::NotFound, .. }) => return Ok(group),
            Ok(iommu::Reply::Refused { code: ErrorCode::Busy, .. })
                if syscall::now().saturating_sub(started) < READY_WAIT_US =>
            {
                // The groups are not formed yet: let the servers run.
                syscall::yield_now();
                continue;
            }
            Ok(iommu::Reply::Refused { code, reason }) => {
                defmt::error!(
                    "GROUPS ERROR the IOMMU server refused group {=u16} ({}): {=str}",
                    group,
                    code,
                    reason.as_str()
                );
                return Err(());
            }
            Ok(_) => {
                defmt::error!("GROUPS ERROR the IOMMU server answered Groups with another reply");
                return Err(());
            }
            Err(code) => {
                defmt::error!("GROUPS ERROR asking the IOMMU server for group {=u16} failed: {}", group, code);
                return Err(());
            }
        }
        let Some(next) = group.checked_add(1) else {
            defmt::error!("GROUPS ERROR the IOMMU server reports more than 65535 groups");
            return Err(());
        };
        group = next;
    }
}

/// Logs `bdf` as a member of group `id`, with its ids; a function listed
/// twice or unknown to the PCI server is an error.
fn list(functions: &mut [Function], id: u16, bdf: Bdf) -> Result<(), ()> {
    let Some(function) = functions.iter_mut().find(|function| function.bdf == bdf) else {
        defmt::error!("GROUPS ERROR group {=u16} lists {}, which the PCI server did not find", id, bdf);
        return Err(());
    };
    if function.listed {
        defmt::error!("GROUPS ERROR {} is listed in more than one group (again in group {=u16})", bdf, id);
        return Err(());
    }
    function.listed = true;
    defmt::info!("GROUP {=u16} {} 0x{=u16:04x}:0x{=u16:04x}", id, bdf, function.vendor, function.device);
    Ok(())
}
