//! Release, death and reclaim: capabilities revoked, devices quiesced, claims released, in that order.

use capabilities::ErrorCode;
use iommu_api as iommu;
use iommu_api::OwnerReport;
use pci_api::{Reply, Request};

use super::*;
use crate::driver_core::quiesce::FLR_WAIT_MICROS;
use crate::driver_core::{IOMMU_EVENT, death_bit};

fn probe(rig: &mut Rig, task: u16) -> Answer {
    let answer = rig.ask(task, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    assert!(matches!(answer.reply, Reply::Granted(_)), "{:?}", answer.reply);
    answer
}

#[test]
fn only_the_holder_releases() {
    let mut rig = Rig::new();
    probe(&mut rig, task::EDU_PROBE);
    let release = Request::Release { device: bdf(at::EDU) };
    assert_refused(
        &rig.ask(task::BRIDGE, DRIVER_OPERATIONS, &release),
        ErrorCode::PermissionDenied,
        &["held by edu-probe, not bridge"],
    );
    let (code, reason) =
        refusal(&rig.ask(task::BRIDGE, DRIVER_OPERATIONS, &Request::Release { device: bdf(at::EDU2) }));
    assert_eq!(code, ErrorCode::PermissionDenied);
    assert!(reason.contains("held by nobody"), "{reason}");
    assert_eq!(rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &release).reply, Reply::Done);
    assert_eq!(rig.holder(at::EDU), None);
}

#[test]
fn release_revokes_then_quiesces_then_releases_the_claim() {
    let mut rig = Rig::new();
    let answer = probe(&mut rig, task::DMA_DRIVER);
    let (bar, vector, handle) = (answer.caps[0], answer.caps[1], answer.caps[2]);
    let before = rig.live();
    rig.take_journal();
    let release = Request::Release { device: bdf(at::NVME) };
    assert_eq!(rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &release).reply, Reply::Done);
    let journal = rig.take_journal();
    let position = |wanted: &dyn Fn(&Effect) -> bool| journal.iter().position(wanted).unwrap();
    let revoked_bar = position(&|e| *e == Effect::Revoke(bar));
    let revoked_vector = position(&|e| *e == Effect::Revoke(vector));
    let revoked_handle = position(&|e| *e == Effect::Revoke(handle));
    let quiesced = position(&|e| matches!(e, Effect::Command(b, command) if *b == bdf(at::NVME) && command & 0x4 == 0));
    let released = position(&|e| {
        *e == Effect::Iommu(iommu::Request::ReleaseKernel { device: bdf(at::NVME), driver: task::DMA_DRIVER })
    });
    assert!(revoked_bar < quiesced && revoked_vector < quiesced && revoked_handle < quiesced, "{journal:?}");
    assert!(quiesced < released, "{journal:?}");
    let after = rig.live();
    assert!(!after.contains(&vector.0) && !after.contains(&handle.0), "the vector and the handle copy are deleted");
    assert!(!after.contains(&bar.0), "the BAR original is deleted: the next grant makes its own");
    assert_eq!(before.len() - 3, after.len());
    assert_eq!(rig.read16(at::NVME, 0x42) & 1, 0, "MSI off");
    assert_eq!(rig.read16(at::NVME, 0x62) & 0x8000, 0, "MSI-X off");
    assert_eq!(rig.world.borrow().iommu.owners.get(&14), Some(&OwnerReport::Unowned));
    // The driver may probe again.
    probe(&mut rig, task::DMA_DRIVER);
}

#[test]
fn a_reset_restores_the_bars_and_keeps_bus_mastering_off() {
    let mut rig = Rig::new();
    rig.world.borrow_mut().flr = Some((bdf(at::NVME), NVME_PCIE + 8));
    probe(&mut rig, task::DMA_DRIVER);
    let bar = rig.read32(at::NVME, 0x10);
    assert_eq!(
        rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &Request::Release { device: bdf(at::NVME) }).reply,
        Reply::Done
    );
    assert_eq!(rig.world.borrow().kernel.slept, FLR_WAIT_MICROS);
    assert_eq!(rig.read32(at::NVME, 0x10), bar, "BAR0 restored after the reset cleared it");
    assert_eq!(rig.read32(at::NVME, 0x14), (NVME_BAR >> 32) as u32);
    assert_eq!(rig.read16(at::NVME, 0x04) & 0x6, 0x2, "decoding back on, bus mastering off");
    // A conventional device has no reset: no wait.
    probe(&mut rig, task::EDU_PROBE);
    rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Release { device: bdf(at::EDU) });
    assert_eq!(rig.world.borrow().kernel.slept, FLR_WAIT_MICROS);
}

#[test]
fn a_holders_death_gives_its_devices_back() {
    let mut rig = Rig::new();
    probe(&mut rig, task::EDU_PROBE);
    probe(&mut rig, task::BRIDGE);
    rig.event(death_bit(task::USER).unwrap());
    assert_eq!(rig.holder(at::EDU), Some(task::EDU_PROBE), "other tasks' deaths change nothing");
    rig.event(death_bit(task::EDU_PROBE).unwrap());
    assert_eq!(rig.holder(at::EDU), None);
    assert_eq!(rig.holder(at::PORT), Some(task::BRIDGE));
    assert_eq!(rig.read16(at::EDU, 0x04) & 0x4, 0);
    // Someone else may take it now.
    let answer = rig.ask(task::ADMIN, ALL_OPERATIONS, &Request::Unbind { device: bdf(at::EDU) });
    assert_eq!(answer.reply, Reply::Done);
    rig.ask(task::ADMIN, ALL_OPERATIONS, &Request::Bind { device: bdf(at::EDU), driver: task::STUB });
    probe(&mut rig, task::STUB);
}

#[test]
fn reclaim_takes_user_devices_back_quiesces_the_rest_and_leaves_no_dma_drivers() {
    let mut rig = Rig::new();
    // Group 50 holds both edus and the port: the user owns it; the bridge driver stays bound.
    for device in [at::EDU, at::EDU2, at::PORT] {
        rig.world.borrow_mut().iommu.groups.insert(bdf(device), 50);
    }
    rig.world.borrow_mut().iommu.owners.insert(50, OwnerReport::User { task: task::USER });
    probe(&mut rig, task::BRIDGE);
    let acquire = Request::Acquire { device: bdf(at::EDU2) };
    assert!(matches!(rig.ask(task::USER, USER_OPERATIONS, &acquire).reply, Reply::Granted(_)));
    let master = Request::ConfigWrite { device: bdf(at::EDU2), offset: 0x04, width: 2, value: 0x0406 };
    assert_eq!(rig.ask(task::USER, USER_OPERATIONS, &master).reply, Reply::Done);
    rig.world.borrow_mut().iommu.pending = vec![(50, vec![bdf(at::EDU), bdf(at::EDU2), bdf(at::PORT)])];
    rig.take_journal();
    rig.event(IOMMU_EVENT);
    assert_eq!(rig.holder(at::EDU2), None);
    assert_eq!(rig.holder(at::PORT), Some(task::BRIDGE));
    let journal = rig.take_journal();
    let quiesced = |at: &str| journal.iter().any(|e| matches!(e, Effect::Command(b, c) if *b == bdf(at) && c & 4 == 0));
    assert!(quiesced(at::EDU2));
    assert!(!quiesced(at::PORT), "the bridge driver's device is left alone");
    let requests: Vec<_> =
        journal.iter().filter_map(|e| if let Effect::Iommu(r) = e { Some(r.clone()) } else { None }).collect();
    assert_eq!(
        requests,
        [
            iommu::Request::PendingReclaims { group: 0, offset: 0 },
            iommu::Request::Reclaimed { group: 50, quiesced: 3 },
            iommu::Request::PendingReclaims { group: 51, offset: 0 }
        ]
    );
}

#[test]
fn unbind_takes_the_device_from_its_driver() {
    let mut rig = Rig::new();
    let answer = probe(&mut rig, task::EDU_PROBE);
    rig.take_journal();
    let unbind = Request::Unbind { device: bdf(at::EDU) };
    assert_eq!(rig.ask(task::ADMIN, ALL_OPERATIONS, &unbind).reply, Reply::Done);
    assert!(rig.take_journal().contains(&Effect::Revoke(answer.caps[0])));
    assert_eq!(rig.holder(at::EDU), None);
    let (code, _) = refusal(&rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 0 }));
    assert_eq!(code, ErrorCode::NotFound, "no longer bound");
    let (code, _) = refusal(&rig.ask(task::ADMIN, ALL_OPERATIONS, &unbind));
    assert_eq!(code, ErrorCode::NotFound, "nothing left to unbind");
}

#[test]
fn bind_and_unbind_cycles_leak_nothing() {
    let mut rig = Rig::new();
    let baseline = rig.live();
    for _ in 0..200 {
        let bind = Request::Bind { device: bdf(at::NVME), driver: task::SPARE };
        let unbind = Request::Unbind { device: bdf(at::NVME) };
        assert_eq!(rig.ask(task::ADMIN, ALL_OPERATIONS, &unbind).reply, Reply::Done);
        assert_eq!(rig.ask(task::ADMIN, ALL_OPERATIONS, &bind).reply, Reply::Done);
        probe(&mut rig, task::SPARE);
        assert_eq!(rig.ask(task::ADMIN, ALL_OPERATIONS, &unbind).reply, Reply::Done);
        let rebind = Request::Bind { device: bdf(at::NVME), driver: task::DMA_DRIVER };
        assert_eq!(rig.ask(task::ADMIN, ALL_OPERATIONS, &rebind).reply, Reply::Done);
        rig.take_journal();
    }
    assert_eq!(rig.live(), baseline);
    assert_eq!(rig.core.holders, 0);
    assert_eq!(rig.world.borrow().iommu.owners.get(&14), Some(&OwnerReport::Unowned));
}

#[test]
fn a_failed_quiesce_keeps_the_claim_and_the_device_out_of_use_until_one_succeeds() {
    let mut rig = Rig::new();
    probe(&mut rig, task::DMA_DRIVER);
    rig.take_journal();
    // The command register cannot be read: bus mastering cannot be turned off.
    rig.machine.config.fail_at = Some((bdf(at::NVME), 0x04));
    let release = Request::Release { device: bdf(at::NVME) };
    assert_eq!(rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &release).reply, Reply::Done);
    assert_eq!(rig.holder(at::NVME), None, "the holder's capabilities are gone whatever happens");
    let released = |journal: &[Effect]| {
        journal.iter().any(
            |e| matches!(e, Effect::Iommu(iommu::Request::ReleaseKernel { device, .. }) if *device == bdf(at::NVME)),
        )
    };
    assert!(!released(&rig.take_journal()), "the claim is kept: no user may take the group");
    assert_eq!(rig.world.borrow().iommu.owners.get(&14), Some(&OwnerReport::Kernel { drivers: 1 }));
    assert_refused(
        &rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &Request::Probe { index: 0 }),
        ErrorCode::Busy,
        &["01:00.0", "not quiesced"],
    );
    // Once a quiesce works, the old claim goes and the device may be taken.
    rig.machine.config.fail_at = None;
    probe(&mut rig, task::DMA_DRIVER);
    let journal = rig.take_journal();
    let release_at = journal.iter().position(|e| matches!(e, Effect::Iommu(iommu::Request::ReleaseKernel { .. })));
    let claim_at = journal.iter().position(|e| matches!(e, Effect::Iommu(iommu::Request::ClaimKernel { .. })));
    assert!(release_at.is_some() && release_at < claim_at, "{journal:?}");
    assert_eq!(rig.world.borrow().iommu.owners.get(&14), Some(&OwnerReport::Kernel { drivers: 1 }));
}

#[test]
fn a_failed_quiesce_leaves_the_group_reclaiming() {
    let mut rig = Rig::new();
    rig.world.borrow_mut().iommu.groups.insert(bdf(at::EDU2), 50);
    rig.world.borrow_mut().iommu.owners.insert(50, OwnerReport::User { task: task::USER });
    let acquire = Request::Acquire { device: bdf(at::EDU2) };
    assert!(matches!(rig.ask(task::USER, USER_OPERATIONS, &acquire).reply, Reply::Granted(_)));
    rig.machine.config.fail_at = Some((bdf(at::EDU2), 0x04));
    rig.world.borrow_mut().iommu.pending = vec![(50, vec![bdf(at::EDU2)])];
    rig.take_journal();
    rig.event(IOMMU_EVENT);
    assert_eq!(rig.holder(at::EDU2), None);
    let confirmed = |journal: &[Effect]| {
        journal.iter().any(|e| matches!(e, Effect::Iommu(iommu::Request::Reclaimed { group: 50, .. })))
    };
    assert!(!confirmed(&rig.take_journal()), "a device still running keeps its group blocked");
    // The next notification tries again.
    rig.machine.config.fail_at = None;
    rig.world.borrow_mut().iommu.pending = vec![(50, vec![bdf(at::EDU2)])];
    rig.event(IOMMU_EVENT);
    assert!(confirmed(&rig.take_journal()));
}

#[test]
fn a_function_that_never_comes_back_from_its_reset_is_not_quiesced() {
    let mut rig = Rig::new();
    {
        let mut world = rig.world.borrow_mut();
        world.flr = Some((bdf(at::NVME), NVME_PCIE + 8));
        world.lost_on_reset = true;
    }
    probe(&mut rig, task::DMA_DRIVER);
    rig.take_journal();
    let release = Request::Release { device: bdf(at::NVME) };
    assert_eq!(rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &release).reply, Reply::Done);
    assert!(rig.world.borrow().kernel.slept > FLR_WAIT_MICROS, "it was waited for");
    let journal = rig.take_journal();
    assert!(!journal.iter().any(|e| matches!(e, Effect::Iommu(iommu::Request::ReleaseKernel { .. }))), "{journal:?}");
    assert_refused(
        &rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &Request::Probe { index: 0 }),
        ErrorCode::Busy,
        &["did not come back from its function-level reset"],
    );
}

/// A PCIe-to-PCI bridge at 00:04.0 with twenty edus behind it (01:01.0 to
/// 01:14.0), all in group 60, which the user owns.
fn bridge_with_twenty_edus() -> Rig {
    let mut config = FakeConfig::default().with("00:04.0", FakeFunction::bridge(0x1b36, 0x000e, 0, 1, 1));
    for slot in 1..=20u32 {
        let edu = FakeFunction::endpoint(0x1234, 0x11e8).conventional().bar(0, 0xfe00_0000 | slot << 20, 0xfff0_0000);
        config = config.with(&std::format!("01:{slot:02x}.0"), edu);
    }
    let rig = Rig::build(config, pci_config(), true);
    {
        let mut world = rig.world.borrow_mut();
        for group in world.iommu.groups.values_mut() {
            *group = 60;
        }
        world.iommu.owners.insert(60, OwnerReport::User { task: task::USER });
    }
    rig
}

#[test]
fn a_group_of_any_size_is_reclaimed_whole_page_by_page() {
    let mut rig = bridge_with_twenty_edus();
    let held = ["01:01.0", "01:13.0", "01:14.0"];
    for device in held {
        let answer = rig.ask(task::USER, USER_OPERATIONS, &Request::Acquire { device: bdf(device) });
        assert!(matches!(answer.reply, Reply::Granted(_)), "{device}: {:?}", answer.reply);
    }
    let members: Vec<Bdf> = rig.core.devices().iter().map(|device| device.function.bdf).collect();
    assert_eq!(members.len(), 21);
    rig.world.borrow_mut().iommu.pending = vec![(60, members)];
    rig.take_journal();
    rig.event(IOMMU_EVENT);
    for device in held {
        assert_eq!(rig.holder(device), None, "{device} was taken back");
    }
    let requests: Vec<_> =
        rig.take_journal().into_iter().filter_map(|e| if let Effect::Iommu(r) = e { Some(r) } else { None }).collect();
    assert_eq!(
        requests,
        [
            iommu::Request::PendingReclaims { group: 0, offset: 0 },
            iommu::Request::PendingReclaims { group: 60, offset: 16 },
            iommu::Request::Reclaimed { group: 60, quiesced: 21 },
            iommu::Request::PendingReclaims { group: 61, offset: 0 }
        ]
    );
}

#[test]
fn a_group_is_not_reported_while_a_member_is_unknown_or_still_held_by_the_user() {
    let mut rig = bridge_with_twenty_edus();
    let acquire = Request::Acquire { device: bdf("01:14.0") };
    assert!(matches!(rig.ask(task::USER, USER_OPERATIONS, &acquire).reply, Reply::Granted(_)));
    let reported =
        |rig: &mut Rig| rig.take_journal().iter().any(|e| matches!(e, Effect::Iommu(iommu::Request::Reclaimed { .. })));
    // A list that leaves out a member the user holds.
    rig.world.borrow_mut().iommu.pending = vec![(60, vec![bdf("00:04.0"), bdf("01:01.0")])];
    rig.take_journal();
    rig.event(IOMMU_EVENT);
    assert_eq!(rig.holder("01:14.0"), Some(task::USER));
    assert!(!reported(&mut rig), "a user still holds 01:14.0");
    // A list naming a function enumeration never found.
    rig.world.borrow_mut().iommu.pending = vec![(60, vec![bdf("01:14.0"), bdf("0a:00.0")])];
    rig.event(IOMMU_EVENT);
    assert_eq!(rig.holder("01:14.0"), None);
    assert!(!reported(&mut rig), "0a:00.0 cannot have been quiesced");
}
