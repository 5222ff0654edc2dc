//! Hostile clients: forged badges, garbage messages, and random request storms.

use capabilities::ErrorCode;
use iommu_api::OwnerReport;
use pci_api::{Reply, Request};
use xorshift::XorShift;

use super::*;

#[test]
fn unbadged_and_server_minted_capabilities_are_refused() {
    let mut rig = Rig::new();
    let probe = Request::Probe { index: 0 };
    for forged in [0, badge::SERVER_MINTED | badge::policy(task::EDU_PROBE, ALL_OPERATIONS)] {
        let (code, _) = refusal(&rig.ask_with(forged, &probe, Some(own_task(task::EDU_PROBE))));
        assert_eq!(code, ErrorCode::PermissionDenied);
    }
    assert_eq!(rig.holder(at::EDU), None);
}

#[test]
fn every_operation_checks_its_badge_bit() {
    let mut rig = Rig::new();
    let requests = [
        Request::Probe { index: 0 },
        Request::Acquire { device: bdf(at::EDU) },
        Request::Release { device: bdf(at::EDU) },
        Request::ConfigRead { device: bdf(at::EDU), offset: 0, width: 4 },
        Request::ConfigWrite { device: bdf(at::EDU), offset: 0x80, width: 4, value: 0 },
        Request::Bind { device: bdf(at::EDU2), driver: task::STUB },
        Request::Unbind { device: bdf(at::EDU) },
        Request::Devices { index: 0 },
        Request::MsixVectors { device: bdf(at::EDU), first: 0, count: 1 },
        Request::MsixMask { device: bdf(at::EDU), entry: 0, masked: true },
    ];
    for (number, request) in requests.iter().enumerate() {
        let everything_else = ALL_OPERATIONS & !(1 << number);
        let (code, _) = refusal(&rig.ask(task::ADMIN, everything_else, request));
        assert_eq!(code, ErrorCode::PermissionDenied, "{request:?}");
    }
}

#[test]
fn undecodable_messages_are_malformed() {
    let mut rig = Rig::new();
    let badge = badge::policy(task::ADMIN, ALL_OPERATIONS);
    for bytes in [&[][..], &[200], &[0xff; 3], &[4, 1, 2]] {
        let (code, _) = refusal(&rig.send_bytes(badge, bytes, None));
        assert_eq!(code, ErrorCode::Malformed, "{bytes:?}");
    }
}

#[test]
fn random_messages_never_panic_or_grant_by_accident() {
    let mut rig = Rig::new();
    let mut random = XorShift::new(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let len = random.below(12) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| random.next_u64() as u8).collect();
        if let Some(first) = bytes.first_mut() {
            *first %= 9;
        }
        let badge = match random.below(4) {
            0 => random.next_u64(),
            _ => badge::policy(random.below(7) as u16, random.next_u64()),
        };
        let presented = (random.below(2) == 0).then(|| own_task(random.below(7) as u16));
        let answer = rig.send_bytes(badge, &bytes, presented);
        if let Reply::Granted(grant) = &answer.reply {
            // Only a device's bound driver, or a user owning its group, gets it.
            let caller = badge::client(badge).unwrap();
            let device = rig.core.devices().iter().find(|d| d.function.bdf == grant.device).unwrap();
            let bound = device.binding.is_some_and(|b| b.driver == caller);
            let owned = rig.world.borrow().iommu.owners.values().any(|o| *o == OwnerReport::User { task: caller });
            assert!(bound || owned, "{grant:?} to {caller}");
        }
    }
    let held = rig.core.devices().iter().filter(|d| d.holder.is_some()).count();
    assert_eq!(held, rig.core.holders);
}

#[test]
fn random_operation_sequences_keep_one_holder_per_device_and_lose_no_slots() {
    let mut rig = Rig::new();
    let baseline = rig.live();
    let devices = [at::EDU, at::EDU2, at::PORT, at::NVME, "00:00.0", "02:00.0"];
    let mut random = XorShift::new(0x1234_5678_9abc_def1);
    for _ in 0..5_000 {
        let task = random.below(8) as u16;
        let device = bdf(devices[random.below(devices.len() as u64) as usize]);
        let request = match random.below(10) {
            0 => Request::Probe { index: random.below(3) as u8 },
            1 => Request::Acquire { device },
            2 => Request::Release { device },
            3 => Request::ConfigRead { device, offset: random.below(0x110) as u16, width: random.below(5) as u8 },
            4 => Request::ConfigWrite { device, offset: random.below(0x110) as u16, width: 1, value: 0 },
            5 => Request::Bind { device, driver: random.below(9) as u16 },
            6 => Request::Unbind { device },
            7 => Request::MsixVectors { device, first: random.below(6) as u16, count: random.below(6) as u8 },
            8 => Request::MsixMask { device, entry: random.below(6) as u16, masked: random.below(2) == 0 },
            _ => {
                rig.event(crate::driver_core::death_bit(task).unwrap());
                continue;
            }
        };
        if random.below(20) == 0 {
            let group = 10 + random.below(5) as u16;
            let owner = if random.below(2) == 0 { OwnerReport::User { task } } else { OwnerReport::Unowned };
            rig.world.borrow_mut().iommu.owners.insert(group, owner);
        }
        rig.ask(task, ALL_OPERATIONS, &request);
        rig.take_journal();
        let held = rig.core.devices().iter().filter(|d| d.holder.is_some()).count();
        assert_eq!(held, rig.core.holders);
    }
    for task in 0..6 {
        rig.event(crate::driver_core::death_bit(task).unwrap());
    }
    assert_eq!(rig.core.holders, 0);
    assert_eq!(rig.live(), baseline, "every vector and DMA handle was given back");
}
