//! Interrupts: MSI programmed with the IOMMU server's remapped message, entries given back, no fallback.

use capabilities::ErrorCode;
use iommu_api as iommu;
use iommu_api::OwnerReport;
use pci_api::{Reply, Request};

use super::*;

fn remapping_rig() -> Rig {
    let rig = Rig::new();
    rig.world.borrow_mut().iommu.remapping = true;
    rig
}

fn grant_vector(answer: &Answer) -> u8 {
    match &answer.reply {
        Reply::Granted(grant) => grant.vector.expect("an MSI vector"),
        other => panic!("expected a grant, got {other:?}"),
    }
}

#[test]
fn msi_is_programmed_with_the_remapped_message_for_the_holder() {
    let mut rig = remapping_rig();
    let answer = rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    let vector = grant_vector(&answer);
    let entries = rig.world.borrow().iommu.entries.clone();
    assert_eq!(entries, [(1, bdf(at::EDU), task::EDU_PROBE, u32::from(vector))], "the kernel's vector, remapped");
    // Remappable format naming entry 1, sub-handle 0, in the 32-bit layout.
    assert_eq!(rig.read32(at::EDU, 0x44), 0xfee0_0038);
    assert_eq!(rig.read16(at::EDU, 0x48), 0);
    assert_eq!(rig.read16(at::EDU, 0x42) & 1, 1, "enabled");
    let requested = rig.take_journal().into_iter().any(|effect| {
        effect
            == Effect::Iommu(iommu::Request::AllocInterrupt {
                device: bdf(at::EDU),
                holder: task::EDU_PROBE,
                address: 0xfee0_0000,
                data: u32::from(vector),
            })
    });
    assert!(requested);
}

#[test]
fn the_entry_goes_back_before_the_vector_and_the_quiesce() {
    let mut rig = remapping_rig();
    let answer = rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    let vector_slot = answer.caps[1];
    rig.take_journal();
    let release = Request::Release { device: bdf(at::NVME) };
    assert_eq!(rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &release).reply, Reply::Done);
    let journal = rig.take_journal();
    let position = |wanted: &dyn Fn(&Effect) -> bool| journal.iter().position(wanted).expect("happened");
    let freed = position(&|e| *e == Effect::Iommu(iommu::Request::FreeInterrupt { device: bdf(at::NVME), entry: 1 }));
    let vector = position(&|e| *e == Effect::Revoke(vector_slot));
    let quiesced = position(&|e| matches!(e, Effect::Command(b, c) if *b == bdf(at::NVME) && c & 0x4 == 0));
    assert!(freed < vector && vector < quiesced, "{journal:?}");
    assert!(rig.world.borrow().iommu.entries.is_empty());
}

#[test]
fn an_entry_the_iommu_server_revoked_already_is_no_error() {
    let mut rig = remapping_rig();
    rig.world.borrow_mut().iommu.owners.insert(12, OwnerReport::User { task: task::USER });
    let acquire = Request::Acquire { device: bdf(at::EDU2) };
    grant_vector(&rig.ask(task::USER, USER_OPERATIONS, &acquire));
    // The user's release of its group revoked the entry first.
    rig.world.borrow_mut().iommu.entries.clear();
    let before = rig.live();
    let release = Request::Release { device: bdf(at::EDU2) };
    assert_eq!(rig.ask(task::USER, USER_OPERATIONS, &release).reply, Reply::Done);
    assert_eq!(rig.holder(at::EDU2), None);
    assert!(rig.live().len() < before.len(), "the vector was freed all the same");
}

#[test]
fn a_refused_entry_fails_the_grant_and_never_falls_back_to_compatibility_format() {
    let mut rig = remapping_rig();
    rig.world.borrow_mut().iommu.refuse_interrupts = Some(ErrorCode::QuotaExceeded);
    let before = rig.live();
    let message_before = rig.read32(at::EDU, 0x44);
    let answer = rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    let (code, reason) = refusal(&answer);
    assert_eq!(code, ErrorCode::QuotaExceeded);
    assert!(reason.contains("00:03.0") && reason.contains("interrupt entry") && reason.contains("edu-probe"));
    assert_eq!(rig.live(), before, "the vector was freed");
    assert_eq!(rig.read32(at::EDU, 0x44), message_before, "the device was not programmed");
    assert_eq!(rig.read16(at::EDU, 0x42) & 1, 0, "MSI stays off");
    assert_eq!(rig.holder(at::EDU), None);
}

#[test]
fn without_remapping_or_an_iommu_server_the_kernels_message_is_programmed() {
    let mut rig = Rig::new();
    let vector = grant_vector(&rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 0 }));
    assert_eq!((rig.read32(at::EDU, 0x44), rig.read16(at::EDU, 0x48)), (0xfee0_0000, u16::from(vector)));
    let mut alone = Rig::without_iommu();
    let vector = grant_vector(&alone.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 0 }));
    assert_eq!((alone.read32(at::EDU, 0x44), alone.read16(at::EDU, 0x48)), (0xfee0_0000, u16::from(vector)));
}

#[test]
fn a_holder_may_not_write_its_msi_capability_in_any_width() {
    let mut rig = remapping_rig();
    grant_vector(&rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 0 }));
    // 32-bit MSI at 0x40: header, control, address, data (10 bytes).
    for (offset, width) in [(0x40, 4), (0x42, 2), (0x44, 4), (0x46, 2), (0x48, 2), (0x49, 1)] {
        let write = Request::ConfigWrite { device: bdf(at::EDU), offset, width, value: 0xfee0_0000 };
        let (code, reason) = refusal(&rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &write));
        assert_eq!(code, ErrorCode::PermissionDenied, "{offset:#x}/{width}");
        assert!(reason.contains("MSI capability"), "{reason}");
    }
    assert_eq!(rig.read32(at::EDU, 0x44), 0xfee0_0038, "unchanged");
}
