//! Test task for the PCI server and driver core, run in QEMU on machine `pci`.
//!
//! The policy (`qemu/policies/pci.toml`) binds edu 00:03.0 to `edu-probe`,
//! edu 00:04.0 to this task, the root port 00:05.0 to `bridge` and the edu
//! behind it to `stub`, all without DMA, and connects no IOMMU server. The
//! drivers outrank this task, so they hold their devices when it starts.
#![no_std]
#![no_main]

use pci_api::client::Granted;
use pci_api::{Reply, Request};
use userlib::testkit::prelude::*;

userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::cap_slot!(PCI_LIMITED: Endpoint = "pci-limited");
userlib::entry!(main);

/// Task indices, in the policy's declaration order.
const EDU_PROBE: u16 = 1;
const STUB: u16 = 2;
const BRIDGE: u16 = 3;
/// Its own index is 4; then a DMA-capable driver with nothing bound.
const DMA_DRIVER: u16 = 5;
/// The PCI server: a system server, no driver.
const PCI_SERVER: u16 = 0;

/// The machine's functions, in enumeration order: vendor and device ids.
const MACHINE: [(Bdf, u16, u16); 10] = [
    (Bdf::at(0, 0x00, 0), 0x8086, 0x29c0),
    (Bdf::at(0, 0x03, 0), 0x1234, 0x11e8),
    (Bdf::at(0, 0x04, 0), 0x1234, 0x11e8),
    (Bdf::at(0, 0x05, 0), 0x1b36, 0x000c),
    (Bdf::at(0, 0x06, 0), 0x1b36, 0x000c),
    (Bdf::at(0, 0x1f, 0), 0x8086, 0x2918),
    (Bdf::at(0, 0x1f, 2), 0x8086, 0x2922),
    (Bdf::at(0, 0x1f, 3), 0x8086, 0x2930),
    (Bdf::at(1, 0x00, 0), 0x1234, 0x11e8),
    (Bdf::at(2, 0x00, 0), 0x1b36, 0x0010),
];

/// The edu bound to edu-probe, and the one bound to this task.
const EDU_A: Bdf = Bdf::at(0, 3, 0);
const EDU_B: Bdf = Bdf::at(0, 4, 0);
/// The chipset's SMBus controller: bound to no driver.
const SMBUS: Bdf = Bdf::at(0, 0x1f, 3);
/// The NVMe controller bound to this task (its second device).
const NVME: Bdf = Bdf::at(2, 0, 0);

/// Windows grants arrive in (four slots each), and where BARs are mapped.
const WINDOW_B: u32 = 64;
const WINDOW_A: u32 = 72;
const WINDOW_B_AGAIN: u32 = 80;
const WINDOW_NVME: u32 = 84;
const BAR_B_VIRT: u64 = 0x2000_0000;
const BAR_A_VIRT: u64 = 0x2100_0000;
const BAR_NVME_VIRT: u64 = 0x2200_0000;

fn main() -> u64 {
    testkit::run(userlib::cases![
        topology_matches_the_machine,
        drivers_bound_per_policy_hold_their_devices,
        bound_driver_reads_the_edu_identification,
        second_task_asking_for_a_held_device_is_refused,
        config_write_moving_a_bar_is_refused,
        a_no_dma_holder_never_masters_the_bus,
        a_holders_reset_is_the_servers_and_its_power_state_stays,
        hostile_requests_get_typed_errors,
        non_admin_cannot_bind,
        dma_binding_needs_an_iommu_server,
        only_driver_tasks_are_bound,
        unbind_and_rebind,
        release_revokes_and_probe_grants_again
    ])
}

/// Calls `endpoint` with `request`; the decoded reply.
fn ask(endpoint: Cap<Endpoint>, buffer: &mut Buffer, request: &Request) -> Result<Reply, ErrorCode> {
    let received = endpoint.call_with(buffer, request)?;
    buffer.decode::<Reply>(received.len)
}

/// The code of a refusal (logging its reason), or `None` for any other reply.
fn refusal(reply: &Reply) -> Option<ErrorCode> {
    match reply {
        Reply::Refused { code, reason } => {
            defmt::info!("  refused ({}): {=str}", code, reason.as_str());
            Some(*code)
        }
        _ => None,
    }
}

/// Whether a refusal's reason mentions `text`.
fn says(reply: &Reply, text: &str) -> bool {
    matches!(reply, Reply::Refused { reason, .. } if reason.as_str().contains(text))
}

/// This task's index (its own task capability names it).
fn own_index() -> Option<u16> {
    own::TASK.info().ok().and_then(|info| u16::try_from(info.extent).ok())
}

/// The holder the server reports for `device`.
fn holder(buffer: &mut Buffer, device: Bdf) -> Option<Option<u16>> {
    let position = MACHINE.iter().position(|(bdf, _, _)| *bdf == device)?;
    match ask(PCI.get(), buffer, &Request::Devices { index: position as u16 }) {
        Ok(Reply::Device { device: found, holder, .. }) if found == device => Some(holder),
        _ => None,
    }
}

/// The offset of `device`'s MSI capability, walking its list through the server.
fn find_msi(buffer: &mut Buffer, device: Bdf) -> Option<u16> {
    find_capability(buffer, device, 0x05)
}

/// The offset of `device`'s legacy capability `id`, walking its list through the server.
fn find_capability(buffer: &mut Buffer, device: Bdf, id: u16) -> Option<u16> {
    let mut read = |offset: u16| match ask(PCI.get(), buffer, &Request::ConfigRead { device, offset, width: 1 }) {
        Ok(Reply::Value(value)) => Some(value as u16),
        _ => None,
    };
    let mut at = read(0x34)? & 0xfc;
    // A list has at most 48 entries in the first 256 bytes.
    for _ in 0..48 {
        if at < 0x40 {
            return None;
        }
        if read(at)? == id {
            return Some(at);
        }
        at = read(at + 1)? & 0xfc;
    }
    None
}

/// Maps the first BAR of a grant and reads edu's identification register.
fn edu_id(granted: &Granted, virt: u64) -> Result<(Mapping<DeviceMemory>, Option<u32>), ErrorCode> {
    let bar = granted.bar(0).ok_or(ErrorCode::NotFound)?;
    let registers = Mapping::map(own::SPACE, Cap::<DeviceMemory>::at(bar), virt, true)?;
    let id = registers.read32(edu::reg::IDENTIFICATION);
    Ok((registers, id))
}

fn topology_matches_the_machine(buffer: &mut Buffer) -> Outcome {
    for (index, &(device, vendor, device_id)) in MACHINE.iter().enumerate() {
        let reply = check_ok!(ask(PCI.get(), buffer, &Request::Devices { index: index as u16 }));
        let Reply::Device { device: found, vendor: v, device_id: d, .. } = reply else {
            defmt::error!("  device {=usize}: {}", index, reply);
            check!(false, "every function of the machine is listed");
            return Ok(());
        };
        check_eq!((found, v, d), (device, vendor, device_id));
    }
    let past = check_ok!(ask(PCI.get(), buffer, &Request::Devices { index: MACHINE.len() as u16 }));
    check_eq!(refusal(&past), Some(ErrorCode::NotFound), "no function beyond the machine's");
    Ok(())
}

fn drivers_bound_per_policy_hold_their_devices(buffer: &mut Buffer) -> Outcome {
    check_eq!(holder(buffer, EDU_A), Some(Some(EDU_PROBE)));
    check_eq!(holder(buffer, Bdf::at(0, 5, 0)), Some(Some(BRIDGE)));
    check_eq!(holder(buffer, Bdf::at(1, 0, 0)), Some(Some(STUB)));
    check_eq!(holder(buffer, EDU_B), Some(None), "bound to this task, not probed yet");
    Ok(())
}

fn bound_driver_reads_the_edu_identification(buffer: &mut Buffer) -> Outcome {
    let granted =
        check_ok!(pci_api::client::probe(PCI.get(), buffer, 0, WINDOW_B), "the device bound to this task is granted");
    let grant = &granted.grant;
    check_eq!((grant.device, grant.vendor, grant.device_id), (EDU_B, 0x1234, 0x11e8));
    check_eq!(grant.bars.len(), 1);
    check_eq!(grant.bars[0].size, 1 << 20);
    check!(grant.vector.is_some(), "edu has MSI: a vector is programmed");
    check!(!grant.dma);
    check_eq!(granted.caps.len(), 2, "BAR0, then the interrupt");
    let (registers, id) = check_ok!(edu_id(&granted, BAR_B_VIRT));
    check_eq!(id, Some(edu::IDENTIFICATION));
    check_eq!(registers.write32(edu::reg::LIVENESS, 0x1234_5678), Some(()));
    check_eq!(registers.read32(edu::reg::LIVENESS), Some(!0x1234_5678), "writes reach the device too");
    defmt::info!("  {} identification {=u32:#010x} through its BAR capability", EDU_B, edu::IDENTIFICATION);
    check_eq!(holder(buffer, EDU_B), Some(own_index()));
    Ok(())
}

fn second_task_asking_for_a_held_device_is_refused(buffer: &mut Buffer) -> Outcome {
    buffer.set_send_caps(&[own::TASK.slot()]);
    let acquire = ask(PCI.get(), buffer, &Request::Acquire { device: EDU_A });
    buffer.set_send_caps(&[]);
    let acquire = check_ok!(acquire);
    check_eq!(refusal(&acquire), Some(ErrorCode::Busy));
    check!(says(&acquire, "held by edu-probe"), "the refusal names the holder");
    let me = own_index().unwrap_or(u16::MAX);
    let bind = check_ok!(ask(PCI.get(), buffer, &Request::Bind { device: EDU_A, driver: me }));
    check_eq!(refusal(&bind), Some(ErrorCode::Busy));
    check!(says(&bind, "already bound to edu-probe"));
    let more = pci_api::client::probe(PCI.get(), buffer, 2, WINDOW_A).err().map(|refused| refused.code);
    check_eq!(more, Some(ErrorCode::NotFound), "only two devices are bound to this task");
    check_eq!(holder(buffer, EDU_A), Some(Some(EDU_PROBE)));
    Ok(())
}

fn config_write_moving_a_bar_is_refused(buffer: &mut Buffer) -> Outcome {
    let read =
        |buffer: &mut Buffer, device, offset| ask(PCI.get(), buffer, &Request::ConfigRead { device, offset, width: 4 });
    let before = check_ok!(read(buffer, EDU_B, 0x10));
    let moved = Request::ConfigWrite { device: EDU_B, offset: 0x10, width: 4, value: 0xfe00_0000 };
    let reply = check_ok!(ask(PCI.get(), buffer, &moved));
    check_eq!(refusal(&reply), Some(ErrorCode::PermissionDenied));
    check!(says(&reply, "BAR 0"), "the refusal names the register");
    check_eq!(check_ok!(read(buffer, EDU_B, 0x10)), before, "the BAR did not move");
    let Some(msi_at) = find_msi(buffer, EDU_B) else {
        check!(false, "edu lists an MSI capability");
        return Ok(());
    };
    let msi = Request::ConfigWrite { device: EDU_B, offset: msi_at + 4, width: 4, value: 0 };
    let reply = check_ok!(ask(PCI.get(), buffer, &msi));
    check!(says(&reply, "MSI"), "interrupt routing is the server's");
    let ids = check_ok!(read(buffer, EDU_B, 0x00));
    check_eq!(ids, Reply::Value(0x11e8_1234));
    // The command register is the holder's: rewrite it as it is.
    let Reply::Value(command) =
        check_ok!(ask(PCI.get(), buffer, &Request::ConfigRead { device: EDU_B, offset: 4, width: 2 }))
    else {
        check!(false, "the command register reads");
        return Ok(());
    };
    check_eq!(command & 0x2, 0x2, "memory decoding is on for the holder");
    let rewrite = Request::ConfigWrite { device: EDU_B, offset: 4, width: 2, value: command };
    check_eq!(check_ok!(ask(PCI.get(), buffer, &rewrite)), Reply::Done);
    let other = Request::ConfigWrite { device: EDU_A, offset: 4, width: 2, value: 0 };
    let reply = check_ok!(ask(PCI.get(), buffer, &other));
    check_eq!(refusal(&reply), Some(ErrorCode::PermissionDenied), "only the holder writes");
    Ok(())
}

fn a_no_dma_holder_never_masters_the_bus(buffer: &mut Buffer) -> Outcome {
    // This task holds 00:04.0 through a binding without DMA.
    let read =
        |buffer: &mut Buffer| match ask(PCI.get(), buffer, &Request::ConfigRead { device: EDU_B, offset: 4, width: 2 })
        {
            Ok(Reply::Value(command)) => Some(command),
            _ => None,
        };
    let Some(command) = read(buffer) else {
        check!(false, "the command register reads");
        return Ok(());
    };
    check_eq!(command & 0x4, 0, "the grant left bus mastering off");
    let on = Request::ConfigWrite { device: EDU_B, offset: 4, width: 2, value: command | 0x4 };
    let reply = check_ok!(ask(PCI.get(), buffer, &on));
    check_eq!(refusal(&reply), Some(ErrorCode::PermissionDenied));
    check!(says(&reply, "bus mastering"), "the refusal names bus mastering");
    check_eq!(read(buffer).map(|command| command & 0x4), Some(0), "and it stays off");
    Ok(())
}

fn a_holders_reset_is_the_servers_and_its_power_state_stays(buffer: &mut Buffer) -> Outcome {
    let granted = check_ok!(
        pci_api::client::probe(PCI.get(), buffer, 1, WINDOW_NVME),
        "the NVMe controller bound to this task is granted"
    );
    check_eq!(granted.grant.device, NVME);
    let read = |buffer: &mut Buffer, offset: u16, width: u8| match ask(
        PCI.get(),
        buffer,
        &Request::ConfigRead { device: NVME, offset, width },
    ) {
        Ok(Reply::Value(value)) => Some(value),
        _ => None,
    };
    let (bar0, bar1, command) = (read(buffer, 0x10, 4), read(buffer, 0x14, 4), read(buffer, 0x04, 2));
    check!(bar0.is_some_and(|bar| bar & !0xf != 0) && bar1.is_some(), "BAR0 is placed");
    let Some(pcie) = find_capability(buffer, NVME, 0x10) else {
        check!(false, "the controller has a PCI Express capability");
        return Ok(());
    };
    let Some(control) = read(buffer, pcie + 8, 2) else {
        check!(false, "device control reads");
        return Ok(());
    };
    // Initiate FLR: the server resets the function itself and restores it.
    let flr = Request::ConfigWrite { device: NVME, offset: pcie + 8, width: 2, value: control | 0x8000 };
    check_eq!(check_ok!(ask(PCI.get(), buffer, &flr)), Reply::Done);
    check_eq!(read(buffer, 0x10, 4), bar0, "BAR0 is where it was");
    check_eq!(read(buffer, 0x14, 4), bar1);
    check_eq!(read(buffer, 0x04, 2).map(|c| c & 0x2), command.map(|c| c & 0x2), "and decoded");
    check_eq!(read(buffer, pcie + 8, 2).map(|c| c & 0x8000), Some(0));
    let Some(bar) = granted.bar(0) else {
        check!(false, "the grant has BAR0");
        return Ok(());
    };
    let registers = check_ok!(Mapping::map(own::SPACE, Cap::<DeviceMemory>::at(bar), BAR_NVME_VIRT, false));
    let version = registers.read32(0x08);
    check!(version.is_some_and(|v| v != 0 && v != u32::MAX), "the controller answers through its BAR");
    defmt::info!("  {} reset through the server; NVMe version {=u32:#010x}", NVME, version.unwrap_or(0));
    check_ok!(registers.unmap());
    match find_capability(buffer, NVME, 0x01) {
        Some(pm) => {
            let d3 = Request::ConfigWrite { device: NVME, offset: pm + 4, width: 2, value: 0x0003 };
            let reply = check_ok!(ask(PCI.get(), buffer, &d3));
            check_eq!(refusal(&reply), Some(ErrorCode::PermissionDenied));
            check!(says(&reply, "power state"), "the refusal names the power state");
            check_eq!(read(buffer, pm + 4, 2).map(|pmcsr| pmcsr & 3), Some(0), "still D0");
        }
        None => defmt::info!("  {} has no power management capability", NVME),
    }
    check_eq!(check_ok!(ask(PCI.get(), buffer, &Request::Release { device: NVME })), Reply::Done);
    Ok(())
}

fn hostile_requests_get_typed_errors(buffer: &mut Buffer) -> Outcome {
    buffer.message_mut()[..3].copy_from_slice(&[0xee, 0xff, 0x01]);
    let received = check_ok!(PCI.get().call(buffer, 3));
    let reply = check_ok!(buffer.decode::<Reply>(received.len));
    check_eq!(refusal(&reply), Some(ErrorCode::Malformed));
    let bad_width = Request::ConfigRead { device: EDU_B, offset: 0, width: 3 };
    check_eq!(refusal(&check_ok!(ask(PCI.get(), buffer, &bad_width))), Some(ErrorCode::InvalidArgument));
    let past_end = Request::ConfigRead { device: EDU_B, offset: 0x1000, width: 1 };
    check_eq!(refusal(&check_ok!(ask(PCI.get(), buffer, &past_end))), Some(ErrorCode::InvalidArgument));
    let unaligned = Request::ConfigWrite { device: EDU_B, offset: 0x81, width: 4, value: 0 };
    check_eq!(refusal(&check_ok!(ask(PCI.get(), buffer, &unaligned))), Some(ErrorCode::InvalidArgument));
    // Taking a device without this task's own capability: the server could not watch it.
    buffer.set_send_caps(&[]);
    let bare = check_ok!(ask(PCI.get(), buffer, &Request::Acquire { device: SMBUS }));
    check_eq!(refusal(&bare), Some(ErrorCode::InvalidArgument));
    let not_held = Request::Release { device: EDU_A };
    check_eq!(refusal(&check_ok!(ask(PCI.get(), buffer, &not_held))), Some(ErrorCode::PermissionDenied));
    let nowhere = Request::ConfigRead { device: Bdf::at(9, 9, 1), offset: 0, width: 4 };
    check_eq!(refusal(&check_ok!(ask(PCI.get(), buffer, &nowhere))), Some(ErrorCode::NotFound));
    let acquire = Request::Acquire { device: EDU_A };
    check_eq!(refusal(&check_ok!(ask(PCI_LIMITED.get(), buffer, &acquire))), Some(ErrorCode::PermissionDenied));
    Ok(())
}

fn non_admin_cannot_bind(buffer: &mut Buffer) -> Outcome {
    let bind = Request::Bind { device: SMBUS, driver: own_index().unwrap_or(u16::MAX) };
    let reply = check_ok!(ask(PCI_LIMITED.get(), buffer, &bind));
    check_eq!(refusal(&reply), Some(ErrorCode::PermissionDenied));
    check!(says(&reply, "may not invoke `bind`"));
    let unbind = check_ok!(ask(PCI_LIMITED.get(), buffer, &Request::Unbind { device: EDU_A }));
    check_eq!(refusal(&unbind), Some(ErrorCode::PermissionDenied));
    check_eq!(holder(buffer, EDU_A), Some(Some(EDU_PROBE)), "nothing changed");
    Ok(())
}

fn dma_binding_needs_an_iommu_server(buffer: &mut Buffer) -> Outcome {
    let bind = Request::Bind { device: SMBUS, driver: DMA_DRIVER };
    let reply = check_ok!(ask(PCI.get(), buffer, &bind));
    check_eq!(refusal(&reply), Some(ErrorCode::NotFound));
    check!(says(&reply, "no IOMMU server"));
    Ok(())
}

fn only_driver_tasks_are_bound(buffer: &mut Buffer) -> Outcome {
    let bind = Request::Bind { device: SMBUS, driver: PCI_SERVER };
    let reply = check_ok!(ask(PCI.get(), buffer, &bind));
    check_eq!(refusal(&reply), Some(ErrorCode::WrongKind));
    check!(says(&reply, "task pci is not a driver"));
    check_eq!(holder(buffer, SMBUS), Some(None), "nothing changed");
    Ok(())
}

fn unbind_and_rebind(buffer: &mut Buffer) -> Outcome {
    let Some(me) = own_index() else {
        check!(false, "this task knows its index");
        return Ok(());
    };
    check_eq!(check_ok!(ask(PCI.get(), buffer, &Request::Unbind { device: EDU_A })), Reply::Done);
    check_eq!(holder(buffer, EDU_A), Some(None), "unbinding took it from edu-probe");
    let bind = Request::Bind { device: EDU_A, driver: me };
    check_eq!(check_ok!(ask(PCI.get(), buffer, &bind)), Reply::Done);
    // 00:03.0 comes before 00:04.0: it is now this task's first device.
    let granted = check_ok!(pci_api::client::probe(PCI.get(), buffer, 0, WINDOW_A), "the rebound device is granted");
    check_eq!(granted.grant.device, EDU_A);
    let (registers, id) = check_ok!(edu_id(&granted, BAR_A_VIRT));
    check_eq!(id, Some(edu::IDENTIFICATION));
    check_ok!(registers.unmap());
    check_eq!(check_ok!(ask(PCI.get(), buffer, &Request::Release { device: EDU_A })), Reply::Done);
    check_eq!(check_ok!(ask(PCI.get(), buffer, &Request::Unbind { device: EDU_A })), Reply::Done);
    let back = Request::Bind { device: EDU_A, driver: EDU_PROBE };
    check_eq!(check_ok!(ask(PCI.get(), buffer, &back)), Reply::Done);
    check_eq!(holder(buffer, EDU_A), Some(None));
    Ok(())
}

fn release_revokes_and_probe_grants_again(buffer: &mut Buffer) -> Outcome {
    let bar = Cap::<DeviceMemory>::at(WINDOW_B);
    check!(bar.info().is_ok(), "the BAR capability from the first probe is held");
    check_eq!(check_ok!(ask(PCI.get(), buffer, &Request::Release { device: EDU_B })), Reply::Done);
    check_eq!(bar.info().err(), Some(ErrorCode::InvalidCapability), "release revoked it (and its mapping)");
    check_eq!(holder(buffer, EDU_B), Some(None));
    let again = pci_api::client::probe(PCI.get(), buffer, 0, WINDOW_B_AGAIN);
    let Ok(granted) = again else {
        check!(false, "the released device can be probed again");
        return Ok(());
    };
    check_eq!(granted.grant.device, EDU_B);
    let (_, id) = check_ok!(edu_id(&granted, BAR_A_VIRT));
    check_eq!(id, Some(edu::IDENTIFICATION));
    Ok(())
}
