//! Bus mastering: only DMA-capable holders turn it on, themselves; bridges keep forwarding.

use capabilities::ErrorCode;
use iommu_api::OwnerReport;
use pci_api::{Reply, Request};

use super::*;
use crate::driver_core::IOMMU_EVENT;

const BUS_MASTER: u16 = 1 << 2;

fn write(rig: &mut Rig, task: u16, at: &str, offset: u16, width: u8, value: u32) -> Answer {
    let operations = DRIVER_OPERATIONS | USER_OPERATIONS;
    rig.ask(task, operations, &Request::ConfigWrite { device: bdf(at), offset, width, value })
}

fn granted(answer: &Answer) {
    assert!(matches!(answer.reply, Reply::Granted(_)), "{:?}", answer.reply);
}

/// The test machine with a policy that does not let users own devices without a reset.
fn rig_requiring_resets() -> Rig {
    let mut pci = pci_config();
    pci.assignment_without_reset = false;
    Rig::build(machine_config(), pci, true)
}

#[test]
fn a_no_dma_binding_never_masters_the_bus() {
    let mut rig = Rig::new();
    granted(&rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 0 }));
    assert_eq!(rig.read16(at::EDU, 0x04) & BUS_MASTER, 0, "the grant leaves bus mastering off");
    assert_eq!(rig.read16(at::EDU, 0x04) & 0x2, 0x2, "memory decoding on");
    for (offset, width, value) in [(0x04, 2, 0x0006), (0x04, 1, 0x04), (0x04, 4, 0xffff_ffff)] {
        let (code, reason) = refusal(&write(&mut rig, task::EDU_PROBE, at::EDU, offset, width, value));
        assert_eq!(code, ErrorCode::PermissionDenied, "{offset:#x}/{width}");
        assert!(reason.contains("bus mastering"), "{reason}");
    }
    assert_eq!(rig.read16(at::EDU, 0x04) & BUS_MASTER, 0);
    // The rest of the command register is its own.
    assert_eq!(write(&mut rig, task::EDU_PROBE, at::EDU, 0x04, 2, 0x0002).reply, Reply::Done);
    assert_eq!(write(&mut rig, task::EDU_PROBE, at::EDU, 0x05, 1, 0x04).reply, Reply::Done);
    assert_eq!(rig.read16(at::EDU, 0x04), 0x0402);
}

#[test]
fn every_holder_starts_with_bus_mastering_off_and_a_dma_capable_one_turns_it_on() {
    let mut rig = Rig::new();
    granted(&rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &Request::Probe { index: 0 }));
    assert_eq!(rig.read16(at::NVME, 0x04) & BUS_MASTER, 0, "the driver sets its device up first");
    assert_eq!(write(&mut rig, task::DMA_DRIVER, at::NVME, 0x04, 2, 0x0406).reply, Reply::Done);
    assert_eq!(rig.read16(at::NVME, 0x04) & BUS_MASTER, BUS_MASTER);
    // A user owning its group may too.
    rig.world.borrow_mut().iommu.owners.insert(12, OwnerReport::User { task: task::USER });
    granted(&rig.ask(task::USER, USER_OPERATIONS, &Request::Acquire { device: bdf(at::EDU2) }));
    assert_eq!(rig.read16(at::EDU2, 0x04) & BUS_MASTER, 0);
    assert_eq!(write(&mut rig, task::USER, at::EDU2, 0x04, 1, 0x06).reply, Reply::Done);
    assert_eq!(rig.read16(at::EDU2, 0x04) & BUS_MASTER, BUS_MASTER);
    // The next holder after it starts with bus mastering off again.
    assert_eq!(rig.ask(task::USER, USER_OPERATIONS, &Request::Release { device: bdf(at::EDU2) }).reply, Reply::Done);
    granted(&rig.ask(task::USER, USER_OPERATIONS, &Request::Acquire { device: bdf(at::EDU2) }));
    assert_eq!(rig.read16(at::EDU2, 0x04) & BUS_MASTER, 0);
}

#[test]
fn reclaim_stops_no_dma_holders_from_mastering_and_keeps_bridges_forwarding() {
    let mut rig = Rig::new();
    for device in [at::EDU, at::EDU2, at::PORT] {
        rig.world.borrow_mut().iommu.groups.insert(bdf(device), 50);
    }
    rig.world.borrow_mut().iommu.owners.insert(50, OwnerReport::User { task: task::USER });
    granted(&rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 0 }));
    granted(&rig.ask(task::BRIDGE, DRIVER_OPERATIONS, &Request::Probe { index: 0 }));
    granted(&rig.ask(task::USER, USER_OPERATIONS, &Request::Acquire { device: bdf(at::EDU2) }));
    // The user's device reached its peer's registers (they share a group)
    // and left it mastering the bus.
    let command = rig.read16(at::EDU, 0x04);
    rig.machine.config.functions.get_mut(&bdf(at::EDU)).unwrap().set16(0x04, command | BUS_MASTER);
    rig.world.borrow_mut().iommu.pending = vec![(50, vec![bdf(at::EDU), bdf(at::EDU2), bdf(at::PORT)])];
    rig.event(IOMMU_EVENT);
    assert_eq!(rig.holder(at::EDU), Some(task::EDU_PROBE), "the no-DMA driver keeps its device");
    assert_eq!(rig.read16(at::EDU, 0x04) & BUS_MASTER, 0, "but it no longer masters the bus");
    assert_eq!(rig.holder(at::PORT), Some(task::BRIDGE));
    assert_eq!(rig.read16(at::PORT, 0x04) & BUS_MASTER, BUS_MASTER, "the bridge still forwards DMA");
}

#[test]
fn a_bridge_keeps_forwarding_dma_through_holders_and_quiesces() {
    let mut rig = Rig::new();
    assert_eq!(rig.read16(at::PORT, 0x04) & BUS_MASTER, BUS_MASTER, "bridges forward from the start");
    assert_eq!(rig.ask(task::ADMIN, ALL_OPERATIONS, &Request::Unbind { device: bdf(at::PORT) }).reply, Reply::Done);
    rig.world.borrow_mut().iommu.owners.insert(13, OwnerReport::User { task: task::USER });
    granted(&rig.ask(task::USER, USER_OPERATIONS, &Request::Acquire { device: bdf(at::PORT) }));
    let (code, reason) = refusal(&write(&mut rig, task::USER, at::PORT, 0x04, 2, 0x0002));
    assert_eq!(code, ErrorCode::PermissionDenied, "its holder may not stop it");
    assert!(reason.contains("bus mastering"), "{reason}");
    assert_eq!(rig.ask(task::USER, USER_OPERATIONS, &Request::Release { device: bdf(at::PORT) }).reply, Reply::Done);
    assert_eq!(rig.read16(at::PORT, 0x04) & BUS_MASTER, BUS_MASTER, "quiescing it keeps it forwarding");
}

#[test]
fn a_device_without_a_reset_is_refused_to_a_user_unless_the_policy_allows_it() {
    let mut rig = rig_requiring_resets();
    rig.world.borrow_mut().iommu.owners.insert(12, OwnerReport::User { task: task::USER });
    let (code, reason) = refusal(&rig.ask(task::USER, USER_OPERATIONS, &Request::Acquire { device: bdf(at::EDU2) }));
    assert_eq!(code, ErrorCode::PermissionDenied);
    assert!(
        reason.contains("00:04.0 has no function-level reset") && reason.contains("assignment-without-reset"),
        "{reason}"
    );
    assert_eq!(rig.holder(at::EDU2), None);
    // A device with a reset may be acquired without the policy's leave.
    assert_eq!(rig.ask(task::ADMIN, ALL_OPERATIONS, &Request::Unbind { device: bdf(at::NVME) }).reply, Reply::Done);
    rig.world.borrow_mut().iommu.owners.insert(14, OwnerReport::User { task: task::USER });
    granted(&rig.ask(task::USER, USER_OPERATIONS, &Request::Acquire { device: bdf(at::NVME) }));
    // With the policy's leave, the edu too.
    let mut rig = Rig::new();
    rig.world.borrow_mut().iommu.owners.insert(12, OwnerReport::User { task: task::USER });
    granted(&rig.ask(task::USER, USER_OPERATIONS, &Request::Acquire { device: bdf(at::EDU2) }));
}
