//! A holder's own resets and power-state changes: the server's, never the holder's.

use capabilities::ErrorCode;
use pci_api::{Reply, Request};

use super::*;
use crate::driver_core::quiesce::FLR_WAIT_MICROS;

/// An ACS-capable multifunction endpoint with FLR, MSI and power
/// management, and a conventional function with an Advanced Features
/// reset.
const MULTI: &str = "00:06.0";
const CONVENTIONAL: &str = "00:07.0";
const MULTI_BAR: u32 = 0xfe00_0000;
const CONVENTIONAL_BAR: u32 = 0xfd00_0000;
/// Capability offsets of the multifunction endpoint.
const PM: u16 = 0x40;
const MSI: u16 = 0x50;
const PCIE: u16 = 0x70;
const ACS: u16 = 0x100;
/// The conventional function's Advanced Features capability.
const AF: u16 = 0x60;

fn machine() -> FakeConfig {
    let mut multi = FakeFunction::endpoint(0x8086, 0x10c9)
        .multifunction()
        .bar(0, MULTI_BAR, 0xffff_0000)
        .legacy_cap(PM as u8, 0x01, MSI as u8)
        .legacy_cap(MSI as u8, 0x05, PCIE as u8)
        .pcie(PCIE as u8, 0, 0)
        .acs(ACS, 0x5f, 0, 0);
    multi.set32(usize::from(PCIE) + 4, 1 << 28);
    let mut sibling = multi.clone();
    sibling.set32(0x10, MULTI_BAR | 0x1_0000);
    let mut conventional = FakeFunction::endpoint(0x1234, 0x11e8)
        .conventional()
        .bar(0, CONVENTIONAL_BAR, 0xfff0_0000)
        .legacy_cap(AF as u8, 0x13, 0);
    // Advanced Features: length 6, transactions-pending and FLR supported.
    conventional.bytes[usize::from(AF) + 2] = 6;
    conventional.bytes[usize::from(AF) + 3] = 0x03;
    FakeConfig::default().with(MULTI, multi).with("00:06.1", sibling).with(CONVENTIONAL, conventional)
}

fn rig() -> Rig {
    let mut pci = pci_config();
    pci.bindings.clear();
    for (at, driver) in [(MULTI, task::DMA_DRIVER), (CONVENTIONAL, task::EDU_PROBE)] {
        pci.bindings.push(Binding { device: DeviceMatch::Address(bdf(at)), driver }).unwrap();
    }
    let mut rig = Rig::build(machine(), pci, true);
    {
        let mut world = rig.world.borrow_mut();
        world.flr = Some((bdf(MULTI), PCIE + 8));
        world.af_flr = Some((bdf(CONVENTIONAL), AF + 4));
        world.reset_clears = vec![(bdf(MULTI), ACS + 6), (bdf(MULTI), MSI + 2), (bdf(MULTI), MSI + 4)];
    }
    for (task, at) in [(task::DMA_DRIVER, MULTI), (task::EDU_PROBE, CONVENTIONAL)] {
        let answer = rig.ask(task, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
        assert!(matches!(answer.reply, Reply::Granted(_)), "{at}: {:?}", answer.reply);
    }
    rig
}

fn write(rig: &mut Rig, task: u16, at: &str, offset: u16, width: u8, value: u32) -> Answer {
    rig.ask(task, DRIVER_OPERATIONS, &Request::ConfigWrite { device: bdf(at), offset, width, value })
}

#[test]
fn a_holders_flr_is_the_servers_reset_which_restores_acs_the_bars_and_msi() {
    let mut rig = rig();
    let acs = rig.read16(MULTI, ACS + 6);
    assert_ne!(acs, 0, "enumeration turned ACS on");
    let msi = (rig.read16(MULTI, MSI + 2), rig.read32(MULTI, MSI + 4));
    assert_eq!(msi.0 & 1, 1, "the grant enabled MSI");
    // Two ways to ask: the whole register, and its high byte alone.
    for (offset, width, value) in [(PCIE + 8, 2, 0x8000 | 0x0010), (PCIE + 9, 1, 0x80)] {
        assert_eq!(write(&mut rig, task::DMA_DRIVER, MULTI, offset, width, value).reply, Reply::Done);
        assert_eq!(rig.world.borrow().resets.last(), Some(&bdf(MULTI)), "the function was reset");
        assert_eq!(rig.read32(MULTI, 0x10), MULTI_BAR, "BAR0 restored");
        assert_eq!(rig.read16(MULTI, ACS + 6), acs, "ACS control restored: the groups still hold");
        assert_eq!((rig.read16(MULTI, MSI + 2), rig.read32(MULTI, MSI + 4)), msi, "the holder's MSI restored");
        assert_eq!(rig.read16(MULTI, 0x04) & 0x6, 0x2, "decoding back on, bus mastering off until the holder says");
        assert_eq!(rig.read16(MULTI, PCIE + 8) & 0x8000, 0);
    }
    assert_eq!(rig.world.borrow().resets.len(), 2);
    assert_eq!(rig.world.borrow().kernel.slept, 2 * FLR_WAIT_MICROS);
    assert_eq!(rig.holder(MULTI), Some(task::DMA_DRIVER), "it still holds its device");
    // The rest of device control is the holder's.
    assert_eq!(write(&mut rig, task::DMA_DRIVER, MULTI, PCIE + 8, 2, 0x0010).reply, Reply::Done);
    assert_eq!(rig.read16(MULTI, PCIE + 8), 0x0010);
    assert_eq!(rig.world.borrow().resets.len(), 2);
}

#[test]
fn a_holders_advanced_features_flr_is_the_servers_reset() {
    let mut rig = rig();
    assert_eq!(write(&mut rig, task::EDU_PROBE, CONVENTIONAL, AF + 4, 1, 0x01).reply, Reply::Done);
    assert_eq!(rig.world.borrow().resets, [bdf(CONVENTIONAL)]);
    assert_eq!(rig.read32(CONVENTIONAL, 0x10), CONVENTIONAL_BAR, "BAR0 restored");
    assert_eq!(rig.read16(CONVENTIONAL, 0x04) & 0x2, 0x2);
    // The server uses the same reset between holders.
    let release = Request::Release { device: bdf(CONVENTIONAL) };
    assert_eq!(rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &release).reply, Reply::Done);
    assert_eq!(rig.world.borrow().resets, [bdf(CONVENTIONAL); 2]);
    assert_eq!(rig.read32(CONVENTIONAL, 0x10), CONVENTIONAL_BAR);
}

#[test]
fn power_state_changes_are_refused_and_the_rest_of_power_control_passes() {
    let mut rig = rig();
    for (offset, width, value) in [(PM + 4, 2, 0x0003), (PM + 4, 1, 0x03), (PM + 4, 4, 0x0000_8103), (PM + 4, 2, 1)] {
        let (code, reason) = refusal(&write(&mut rig, task::DMA_DRIVER, MULTI, offset, width, value));
        assert_eq!(code, ErrorCode::PermissionDenied, "{offset:#x}/{width}/{value:#x}");
        assert!(reason.contains("power state"), "{reason}");
        assert_eq!(rig.read16(MULTI, PM + 4) & 3, 0, "still D0");
    }
    assert_eq!(write(&mut rig, task::DMA_DRIVER, MULTI, PM + 4, 2, 0x0100).reply, Reply::Done, "PME enable");
    assert_eq!(write(&mut rig, task::DMA_DRIVER, MULTI, PM + 5, 1, 0x81).reply, Reply::Done);
    assert!(rig.world.borrow().resets.is_empty());
}

#[test]
fn a_reset_request_on_a_function_without_a_reset_is_refused() {
    let mut rig = Rig::new();
    let answer = rig.ask(task::BRIDGE, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    assert!(matches!(answer.reply, Reply::Granted(_)));
    // The root port's device control bit 15 is not a reset (bridge
    // configuration retry): it passes.
    assert_eq!(write(&mut rig, task::BRIDGE, at::PORT, 0x48, 2, 0x8000).reply, Reply::Done);
    // An endpoint whose PCI Express capability lists no FLR.
    let mut rig = Rig::new();
    rig.machine.config.functions.get_mut(&bdf(at::NVME)).unwrap().set32(usize::from(NVME_PCIE) + 4, 0);
    let mut rig = Rig::build(std::mem::take(&mut rig.machine.config), pci_config(), true);
    let answer = rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    assert!(matches!(answer.reply, Reply::Granted(_)));
    assert_refused(
        &write(&mut rig, task::DMA_DRIVER, at::NVME, NVME_PCIE + 8, 2, 0x8000),
        ErrorCode::InvalidArgument,
        &["no reset"],
    );
}
