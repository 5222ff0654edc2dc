//! Starting up, probing and acquiring.

use capabilities::ErrorCode;
use iommu_api as iommu;
use iommu_api::OwnerReport;
use pci_api::{BarGrant, Reply, Request};

use super::*;
use crate::driver_core::device::NO_GROUP;
use crate::driver_core::{Slot, death_bit};

fn granted(answer: &Answer) -> &pci_api::DeviceGrant {
    match &answer.reply {
        Reply::Granted(grant) => grant,
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn bar_slot(rig: &Rig, base: u64) -> Slot {
    let world = rig.world.borrow();
    world.kernel.device_memory.iter().find(|(_, b, _)| *b == base).map(|(slot, _, _)| *slot).unwrap()
}

#[test]
fn start_plans_the_bars_and_silences_endpoints_and_a_grant_makes_their_capabilities() {
    let mut rig = Rig::new();
    assert!(rig.world.borrow().kernel.device_memory.is_empty(), "no capability before a grant");
    assert_eq!(rig.read16(at::EDU, 0x04) & 0x4, 0, "bus mastering off until a holder takes it");
    assert_eq!(rig.read16(at::EDU, 0x04) & 0x2, 0x2, "decoding left as firmware set it");
    let lines: Vec<String> =
        rig.core.devices().iter().map(|d| d.describe(&pci_config().tasks).as_str().to_owned()).collect();
    assert_eq!(lines[1], "00:03.0 1234:11e8 class 00ff00, BAR0 1 MiB at 0xfea00000, MSI, driver edu-probe (no DMA)");
    assert_eq!(
        lines[3],
        "00:05.0 1b36:000c root port to buses 01-01, BAR0 4 KiB at 0xfe800000, driver bridge (no DMA)"
    );
    assert_eq!(
        lines[4],
        "01:00.0 1b36:0010 class 000000, BAR0 16 KiB at 0x800000000 (holder: 8 KiB from 0x0), MSI, MSI-X, FLR, driver dma-driver (DMA)"
    );
    let journal = rig.take_journal();
    let reports: Vec<_> = journal
        .iter()
        .filter_map(|effect| match effect {
            Effect::Iommu(iommu::Request::ReportTopology { functions, last }) => Some((functions.len(), *last)),
            _ => None,
        })
        .collect();
    assert_eq!(reports, [(5, true)]);
    granted(&rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 0 }));
    granted(&rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &Request::Probe { index: 0 }));
    let memory =
        rig.world.borrow().kernel.device_memory.iter().map(|&(_, base, pages)| (base, pages)).collect::<Vec<_>>();
    assert_eq!(memory, [(EDU_BAR, 256), (NVME_BAR, 2)]);
}

#[test]
fn the_msix_table_and_pba_pages_are_never_in_the_holders_bar_capability() {
    let mut rig = Rig::new();
    let answer = rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    let grant = granted(&answer);
    let (base, pages) = {
        let world = rig.world.borrow();
        let &(slot, base, pages) = world.kernel.device_memory.iter().find(|(_, b, _)| *b == NVME_BAR).unwrap();
        assert_eq!(answer.caps[0], slot);
        (base, pages)
    };
    let end = base + pages * 4096;
    for structure in [NVME_MSIX_TABLE, NVME_MSIX_PBA] {
        assert!(end <= NVME_BAR + structure, "the capability ends at {end:#x}, over the MSI-X page at {structure:#x}");
    }
    assert_eq!((grant.bars[0].offset, grant.bars[0].len), (0, NVME_MSIX_TABLE), "the holder is told what it got");
}

#[test]
fn a_bar_the_kernel_refuses_fails_the_grant_by_name_and_leaves_nothing() {
    let mut rig = Rig::new();
    rig.world.borrow_mut().kernel.forbidden = Some((EDU_BAR, EDU_BAR + 1));
    let before = rig.live();
    let answer = rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    let Reply::Refused { code, reason } = answer.reply else { panic!("{:?}", answer.reply) };
    assert_eq!(code, ErrorCode::PermissionDenied);
    assert!(reason.contains("00:03.0: BAR0 at 0xfea00000: no device-memory capability for edu-probe"), "{reason}");
    assert_eq!(rig.live(), before, "the MSI vector made for the grant is gone again");
    assert_eq!(rig.read16(at::EDU, 0x42) & 1, 0, "MSI left off");
    assert!(rig.core.devices()[1].holder.is_none());
    rig.world.borrow_mut().kernel.forbidden = None;
    granted(&rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 0 }));
}

#[test]
fn a_no_dma_driver_gets_its_bars_and_an_msi_vector() {
    let mut rig = Rig::new();
    let answer = rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    let grant = granted(&answer);
    assert_eq!((grant.device, grant.vendor, grant.device_id, grant.group), (bdf(at::EDU), 0x1234, 0x11e8, 11));
    assert_eq!(grant.bars.as_slice(), [BarGrant { index: 0, size: 1 << 20, offset: 0, len: 1 << 20 }]);
    assert!(!grant.dma);
    let vector = grant.vector.unwrap();
    assert_eq!(answer.caps.len(), 2, "the BAR, then the interrupt");
    assert_eq!(answer.caps[0], bar_slot(&rig, EDU_BAR));
    assert_eq!(rig.holder(at::EDU), Some(task::EDU_PROBE));
    // MSI: 32-bit layout (address at +4, data at +8), enabled, INTx off.
    assert_eq!(rig.read32(at::EDU, 0x44), 0xfee0_0000);
    assert_eq!(rig.read16(at::EDU, 0x48), u16::from(vector));
    assert_eq!(rig.read16(at::EDU, 0x42) & 1, 1);
    assert_eq!(rig.read16(at::EDU, 0x04) & 0x406, 0x402, "memory, INTx disabled, no bus mastering");
    assert_eq!(rig.world.borrow().kernel.watches, [(task::EDU_PROBE, death_bit(task::EDU_PROBE).unwrap())]);
}

#[test]
fn a_dma_driver_claims_the_group_first_and_gets_the_handle_last() {
    let mut rig = Rig::new();
    let answer = rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    let grant = granted(&answer);
    assert!(grant.dma);
    assert_eq!(grant.group, 14);
    assert_eq!(grant.bars.as_slice(), [BarGrant { index: 0, size: 16 << 10, offset: 0, len: 8 << 10 }]);
    assert_eq!(answer.caps.len(), 3, "BAR, interrupt, DMA handle");
    let claimed = rig.take_journal().into_iter().any(|effect| {
        effect == Effect::Iommu(iommu::Request::ClaimKernel { device: bdf(at::NVME), driver: task::DMA_DRIVER })
    });
    assert!(claimed);
    assert_eq!(rig.world.borrow().iommu.owners.get(&14), Some(&OwnerReport::Kernel { drivers: 1 }));
    // 64-bit MSI with masking: address low/high at +4/+8, data at +12, vector unmasked.
    assert_eq!(rig.read32(at::NVME, 0x44), 0xfee0_0000);
    assert_eq!(rig.read32(at::NVME, 0x48), 0);
    assert_eq!(u32::from(rig.read16(at::NVME, 0x4c)), u32::from(grant.vector.unwrap()));
    assert_eq!(rig.read32(at::NVME, 0x50) & 1, 0);
}

#[test]
fn a_refused_claim_fails_the_probe_with_the_iommu_servers_reason_and_leaks_nothing() {
    let mut rig = Rig::new();
    rig.world.borrow_mut().iommu.refuse_claims = Some((ErrorCode::Busy, "group 14 is owned by user task user"));
    let before = rig.live();
    let answer = rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    assert_refused(&answer, ErrorCode::Busy, &["01:00.0", "group 14", "dma-driver", "owned by user task user"]);
    assert_eq!(rig.holder(at::NVME), None);
    assert_eq!(rig.live(), before, "no vector or handle kept");
    assert!(answer.caps.is_empty());
    // The rest keeps working.
    let answer = rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    granted(&answer);
}

#[test]
fn a_claim_answered_without_a_handle_is_undone() {
    let mut rig = Rig::new();
    rig.world.borrow_mut().iommu.broken_claims = true;
    let answer = rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    assert_eq!(refusal(&answer).0, ErrorCode::Malformed);
    assert_eq!(rig.holder(at::NVME), None);
}

#[test]
fn dma_bindings_need_an_iommu_server() {
    let mut rig = Rig::without_iommu();
    let answer = rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    assert_refused(&answer, ErrorCode::NotFound, &["no IOMMU server"]);
    // No-DMA bindings work without one, in no known group.
    let answer = rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    assert_eq!(granted(&answer).group, NO_GROUP);
}

#[test]
fn a_held_device_is_busy_for_everyone_else_naming_its_holder() {
    let mut rig = Rig::new();
    granted(&rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 0 }));
    rig.world.borrow_mut().iommu.owners.insert(12, OwnerReport::User { task: task::USER });
    granted(&rig.ask(task::USER, USER_OPERATIONS, &Request::Acquire { device: bdf(at::EDU2) }));
    let answer = rig.ask(task::ADMIN, USER_OPERATIONS, &Request::Acquire { device: bdf(at::EDU2) });
    assert_refused(&answer, ErrorCode::Busy, &["00:04.0", "group 12", "held by user"]);
    // Probing again is busy too: one holder per device.
    let answer = rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    assert_eq!(refusal(&answer).0, ErrorCode::Busy);
}

#[test]
fn probe_indices_count_only_the_callers_devices() {
    let mut rig = Rig::new();
    let answer = rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 1 });
    assert_refused(&answer, ErrorCode::NotFound, &["it has 1"]);
    let answer = rig.ask(task::USER, ALL_OPERATIONS, &Request::Probe { index: 0 });
    assert_eq!(refusal(&answer).0, ErrorCode::NotFound);
    let answer = rig.ask(task::BRIDGE, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    assert_eq!(granted(&answer).device, bdf(at::PORT));
}

#[test]
fn the_presented_task_capability_must_name_the_caller() {
    let mut rig = Rig::new();
    let probe = Request::Probe { index: 0 };
    let badge = badge::policy(task::EDU_PROBE, DRIVER_OPERATIONS);
    let missing = rig.ask_with(badge, &probe, None);
    assert_eq!(refusal(&missing).0, ErrorCode::InvalidArgument);
    let other = rig.ask_with(badge, &probe, Some(own_task(task::ADMIN)));
    assert_refused(&other, ErrorCode::PermissionDenied, &["names admin, not the caller edu-probe"]);
    let not_a_task = rig.ask_with(badge, &probe, Some(Slot(77)));
    assert_eq!(refusal(&not_a_task).0, ErrorCode::WrongKind);
    rig.world.borrow_mut().kernel.watch_failure = Some(ErrorCode::QuotaExceeded);
    let unwatchable = rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &probe);
    assert_eq!(refusal(&unwatchable).0, ErrorCode::QuotaExceeded);
    assert_eq!(rig.holder(at::EDU), None);
    assert!(rig.world.borrow().kernel.watches.is_empty());
}

#[test]
fn running_out_of_vectors_fails_the_grant_and_releases_the_claim() {
    let mut rig = Rig::new();
    rig.world.borrow_mut().kernel.msi_failure = Some(ErrorCode::OutOfMemory);
    let before = rig.live();
    let answer = rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    assert_eq!(refusal(&answer).0, ErrorCode::OutOfMemory);
    assert_eq!(rig.live(), before, "the DMA handle was deleted");
    let released = rig.take_journal().into_iter().any(|effect| {
        effect == Effect::Iommu(iommu::Request::ReleaseKernel { device: bdf(at::NVME), driver: task::DMA_DRIVER })
    });
    assert!(released);
    assert_eq!(rig.world.borrow().iommu.owners.get(&14), Some(&OwnerReport::Unowned));
}

#[test]
fn a_user_acquires_only_devices_of_a_group_it_owns() {
    let mut rig = Rig::new();
    let acquire = Request::Acquire { device: bdf(at::EDU2) };
    assert_refused(
        &rig.ask(task::USER, USER_OPERATIONS, &acquire),
        ErrorCode::PermissionDenied,
        &["group 12, which nobody owns"],
    );
    rig.world.borrow_mut().iommu.owners.insert(12, OwnerReport::User { task: task::ADMIN });
    let (_, reason) = refusal(&rig.ask(task::USER, USER_OPERATIONS, &acquire));
    assert!(reason.contains("user task admin owns"), "{reason}");
    rig.world.borrow_mut().iommu.owners.insert(12, OwnerReport::User { task: task::USER });
    let answer = rig.ask(task::USER, USER_OPERATIONS, &acquire);
    let grant = granted(&answer);
    assert!(!grant.dma && grant.group == 12);
    assert_eq!(answer.caps.len(), 2);
    assert_eq!(rig.holder(at::EDU2), Some(task::USER));
}

#[test]
fn acquiring_needs_an_iommu_server_and_a_known_device() {
    let mut rig = Rig::without_iommu();
    assert_refused(
        &rig.ask(task::USER, USER_OPERATIONS, &Request::Acquire { device: bdf(at::EDU2) }),
        ErrorCode::NotFound,
        &["no IOMMU server"],
    );
    let (code, _) = refusal(&rig.ask(task::USER, USER_OPERATIONS, &Request::Acquire { device: bdf("09:00.0") }));
    assert_eq!(code, ErrorCode::NotFound);
}

#[test]
fn holders_are_bounded() {
    let mut config = FakeConfig::default();
    for device in 1..=(crate::driver_core::MAX_HOLDERS as u8 + 1) {
        let edu = FakeFunction::endpoint(0x1234, 0x11e8).conventional().bar(0, u32::from(device) << 20, 0xfff0_0000);
        config = config.with(&std::format!("00:{device:02x}.0"), edu);
    }
    let mut pci = pci_config();
    pci.bindings.clear();
    pci.bindings
        .push(Binding { device: DeviceMatch::Ids { vendor: 0x1234, device: 0x11e8 }, driver: task::EDU_PROBE })
        .unwrap();
    let mut rig = Rig::build(config, pci, false);
    for index in 0..crate::driver_core::MAX_HOLDERS as u8 {
        granted(&rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index }));
    }
    let index = crate::driver_core::MAX_HOLDERS as u8;
    let answer = rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index });
    assert_eq!(refusal(&answer).0, ErrorCode::QuotaExceeded);
}

#[test]
fn a_device_bound_to_a_driver_is_never_acquired_by_a_user() {
    let mut rig = Rig::new();
    // The user owns the groups of the DMA driver's device (not probed yet)
    // and of edu-probe's; neither is the user's to take.
    rig.world.borrow_mut().iommu.owners.insert(14, OwnerReport::User { task: task::USER });
    rig.world.borrow_mut().iommu.owners.insert(11, OwnerReport::User { task: task::USER });
    for (at, driver) in [(at::NVME, "dma-driver"), (at::EDU, "edu-probe")] {
        let (code, reason) = refusal(&rig.ask(task::USER, USER_OPERATIONS, &Request::Acquire { device: bdf(at) }));
        assert_eq!(code, ErrorCode::PermissionDenied, "{at}: {reason}");
        assert!(reason.contains(&std::format!("bound to driver {driver}")), "{reason}");
        assert_eq!(rig.holder(at), None);
    }
    // Unbound, it may be acquired.
    let unbind = Request::Unbind { device: bdf(at::EDU) };
    assert_eq!(rig.ask(task::ADMIN, ALL_OPERATIONS, &unbind).reply, Reply::Done);
    granted(&rig.ask(task::USER, USER_OPERATIONS, &Request::Acquire { device: bdf(at::EDU) }));
}
