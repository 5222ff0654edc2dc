//! Interrupt remapping through the service: entries for the driver core, source checks, revocation, refusals.

use super::*;
use crate::interrupt::entry::handle_of;
use crate::interrupt::{Delivery, RemapEntry, SourceCheck, Trigger};
use crate::invalidation::{Descriptor, InterruptEntryScope};
use crate::unit::fake::Event;
use iommu_api::{InterruptEntry, InterruptSource};

/// ECAP of QEMU 7.2's intel-iommu with `intremap=off`: no IR bit.
const QEMU_ECAP_NO_IR: u64 = QEMU_ECAP & !(1 << 3);

fn pci() -> u64 {
    policy(PCI, &[Operation::AllocInterrupt, Operation::FreeInterrupt, Operation::Stats])
}

fn alloc(device: Bdf, holder: u16, vector: u8) -> Request {
    Request::AllocInterrupt { device, holder, address: 0xfee0_0000, data: u32::from(vector) }
}

/// A rig on a unit with `ecap`, queued invalidation or not.
fn rig_with(ecap: u64, queued: bool, config: IommuConfig) -> Rig {
    let mut rig = Rig::around(one_unit(QEMU_CAP, ecap, queued, config));
    let functions = topology();
    let report = policy(PCI, &[Operation::ReportTopology]);
    let request = Request::ReportTopology { functions: functions.iter().copied().collect(), last: true };
    assert_eq!(rig.call(report, request, &[]), Reply::Done);
    rig
}

/// The entry the table page holds at `handle`.
fn table_entry(rig: &mut Rig, handle: u16) -> Option<RemapEntry> {
    let page = TablePage::new(rig.unit().regs64.get(&0xb8).copied().unwrap_or(0) & !0xfff).unwrap();
    let hw = rig.service.hardware();
    let index = 2 * usize::from(handle);
    RemapEntry::decode([hw.pages.read(page, index), hw.pages.read(page, index + 1)])
}

fn granted(reply: &Reply) -> u16 {
    match *reply {
        Reply::Interrupt { address, data, entry: Some(entry) } => {
            assert_eq!(handle_of(address, data), Some(entry), "the message names the entry");
            assert_ne!(address & 1 << 4, 0, "remappable format");
            entry
        }
        ref other => panic!("expected an entry, got {other:?}"),
    }
}

fn interrupts(rig: &mut Rig, device: Option<Bdf>) -> (bool, u32, u64, Vec<InterruptEntry>) {
    match rig.call(pci(), Request::Interrupts { device }, &[]) {
        Reply::Interrupts { remapping, in_use, refused, entries, .. } => (remapping, in_use, refused, entries.to_vec()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn remapping_is_on_from_the_start_with_compatibility_format_refused() {
    let mut rig = Rig::new(QEMU_CAP);
    assert!(rig.service.interrupts(0).expect("unit 0").enabled());
    let gsts = rig.unit().gsts;
    assert_ne!(gsts & crate::registers::gsts::IRES, 0);
    assert_eq!(gsts & crate::registers::gsts::CFIS, 0, "compatibility-format interrupts stay blocked");
    assert_eq!(rig.unit().regs64[&0xb8] & 0xfff, 7, "256 entries, xAPIC mode");
    assert_eq!(interrupts(&mut rig, None), (true, 0, 0, vec![]));
    assert!(rig.unit().violations.is_empty(), "{:?}", rig.unit().violations);
}

#[test]
fn a_drivers_device_gets_an_entry_only_its_requester_id_may_use() {
    let mut rig = Rig::new(QEMU_CAP);
    rig.claim_kernel(bdf(0, 3)).expect("claims");
    let queued_before = rig.unit().events.len();
    let handle = granted(&rig.call(pci(), alloc(bdf(0, 3), DRIVER, 0x31), &[]));
    let expected = RemapEntry {
        delivery: Delivery { vector: 0x31, destination: 0, trigger: Trigger::Edge },
        source: SourceCheck::Exact(0x0018),
    };
    assert_eq!(table_entry(&mut rig, handle), Some(expected));
    let invalidated =
        Event::Queued(Descriptor::interrupt_entries(InterruptEntryScope::Indexed { index: handle, order: 0 }));
    assert!(rig.unit().events[queued_before..].contains(&invalidated));
    let (_, in_use, _, entries) = interrupts(&mut rig, Some(bdf(0, 3)));
    assert_eq!(in_use, 1);
    let listed =
        InterruptEntry { entry: handle, holder: Some(DRIVER), vector: 0x31, source: InterruptSource::Exact(bdf(0, 3)) };
    assert_eq!(entries, [listed]);
    let wrong_device = rig.call(pci(), Request::FreeInterrupt { device: bdf(0, 4), entry: handle }, &[]);
    assert_eq!(refusal(&wrong_device).0, ErrorCode::NotFound);
    assert_eq!(rig.call(pci(), Request::FreeInterrupt { device: bdf(0, 3), entry: handle }, &[]), Reply::Done);
    assert_eq!(table_entry(&mut rig, handle), None, "cleared");
    assert_eq!(interrupts(&mut rig, None).1, 0);
}

#[test]
fn a_function_behind_a_pcie_to_pci_bridge_is_checked_by_bus() {
    let mut rig = Rig::new(QEMU_CAP);
    let handle = granted(&rig.call(pci(), alloc(bdf(1, 2), DRIVER, 0x40), &[]));
    let source = table_entry(&mut rig, handle).map(|entry| entry.source);
    assert_eq!(source, Some(SourceCheck::Buses { first: 1, last: 1 }), "01:00.0 (the alias) and 01:02.0 pass");
    assert!(source.is_some_and(|check| check.admits(0x0100) && !check.admits(0x0018)));
}

#[test]
fn a_users_entries_are_revoked_when_it_releases_its_group_or_dies() {
    let mut rig = Rig::new(QEMU_CAP);
    let group_cap = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    let first = granted(&rig.call(pci(), alloc(bdf(0, 4), USER, 0x32), &[]));
    assert_eq!(rig.call(group_cap, Request::Release, &[]), Reply::Done);
    assert_eq!(table_entry(&mut rig, first), None, "revoked at the release, before the device is quiesced");
    let reply = rig.call(pci(), alloc(bdf(0, 4), USER, 0x33), &[]);
    assert_eq!(refusal(&reply).0, ErrorCode::Busy, "no entries while the group is reclaimed");
    let done = policy(PCI, &[Operation::Reclaimed]);
    assert_eq!(rig.call(done, Request::Reclaimed { group: 1, quiesced: 1 }, &[]), Reply::Done);
    let reply = rig.call(pci(), alloc(bdf(0, 4), USER, 0x33), &[]);
    assert_eq!(refusal(&reply).0, ErrorCode::PermissionDenied, "a user task must own the group");
    rig.claim_group(USER, bdf(0, 4)).expect("claims again");
    let second = granted(&rig.call(pci(), alloc(bdf(0, 4), USER, 0x33), &[]));
    assert_ne!(second, first, "a freed handle is not reused at once");
    rig.service.task_died(&mut rig.k, USER);
    assert_eq!(table_entry(&mut rig, second), None, "revoked at its death");
    assert_eq!(interrupts(&mut rig, None).1, 0);
}

#[test]
fn releasing_a_drivers_claim_revokes_its_entries_and_only_its() {
    let mut rig = Rig::new(QEMU_CAP);
    rig.claim_kernel(bdf(0, 3)).expect("claims");
    let driver = granted(&rig.call(pci(), alloc(bdf(0, 3), DRIVER, 0x31), &[]));
    let stub = granted(&rig.call(pci(), alloc(bdf(1, 2), INTRUDER, 0x34), &[]));
    let release = policy(PCI, &[Operation::ReleaseKernel]);
    assert_eq!(rig.call(release, Request::ReleaseKernel { device: bdf(0, 3), driver: DRIVER }, &[]), Reply::Done);
    assert_eq!(table_entry(&mut rig, driver), None);
    assert!(table_entry(&mut rig, stub).is_some());
}

#[test]
fn entries_are_refused_to_tasks_that_do_not_own_the_group_and_beyond_quotas() {
    let mut config = self::config();
    config.assignments.push(Assignment { device: DeviceMatch::Address(bdf(0, 3)), task: INTRUDER }).unwrap();
    let mut rig = rig_with(QEMU_ECAP, true, config);
    rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    let reply = rig.call(pci(), alloc(bdf(0, 4), INTRUDER, 0x35), &[]);
    assert_eq!(refusal(&reply).0, ErrorCode::PermissionDenied, "another user task's device");
    let reply = rig.call(pci(), alloc(bdf(0, 3), INTRUDER, 0x35), &[]);
    assert_eq!(refusal(&reply).0, ErrorCode::PermissionDenied, "a group the user task does not own");
    granted(&rig.call(pci(), alloc(bdf(0, 4), DRIVER, 0x35), &[]));
    for vector in 0x36..0x39 {
        granted(&rig.call(pci(), alloc(bdf(0, 4), USER, vector), &[]));
    }
    let reply = rig.call(pci(), alloc(bdf(0, 4), USER, 0x39), &[]);
    assert_eq!(refusal(&reply).0, ErrorCode::QuotaExceeded, "four per device by default");
    for (address, data) in [(0xfee0_0010, 0x31), (0xfed0_0000, 0x31), (0xfee0_0000, 0x8031), (0xfee0_0000, 5)] {
        let request = Request::AllocInterrupt { device: bdf(0, 3), holder: DRIVER, address, data };
        assert_eq!(refusal(&rig.call(pci(), request, &[])).0, ErrorCode::InvalidArgument, "{address:#x}/{data:#x}");
    }
    let no_right = policy(PCI, &[Operation::ClaimKernel]);
    assert_eq!(refusal(&rig.call(no_right, alloc(bdf(0, 3), DRIVER, 0x31), &[])).0, ErrorCode::PermissionDenied);
    let reply = rig.call(pci(), alloc(Bdf::new(9, 9, 0).unwrap(), DRIVER, 0x31), &[]);
    assert_eq!(refusal(&reply).0, ErrorCode::NotFound);
    let (_, in_use, refused, _) = interrupts(&mut rig, None);
    assert_eq!((in_use, refused), (4, 9), "every refusal counted");
    let handle = Handle::Dma { group: 0, serial: 1 }.badge();
    assert_eq!(refusal(&rig.call(handle, alloc(bdf(0, 3), DRIVER, 0x31), &[])).0, ErrorCode::InvalidCapability);
}

#[test]
fn without_remapping_user_assignment_is_refused_unless_the_policy_allows_it() {
    let mut rig = rig_with(QEMU_ECAP_NO_IR, true, self::config());
    assert!(!rig.service.interrupts(0).expect("unit 0").enabled());
    let reply = rig.claim_group(USER, bdf(0, 4)).expect_err("no remapping");
    assert_refused(&reply, ErrorCode::PermissionDenied, &["no interrupt remapping", "edu-user"]);
    rig.claim_kernel(bdf(0, 3)).expect("trusted drivers need no remapping");
    let reply = rig.call(pci(), alloc(bdf(0, 3), DRIVER, 0x31), &[]);
    assert_eq!(reply, Reply::Interrupt { address: 0xfee0_0000, data: 0x31, entry: None }, "the kernel's message");
    assert_eq!(interrupts(&mut rig, None), (false, 0, 1, vec![]));

    let mut allowed = self::config();
    allowed.assignment_without_interrupt_remapping = true;
    let mut rig = rig_with(QEMU_ECAP_NO_IR, true, allowed);
    rig.claim_group(USER, bdf(0, 4)).expect("the policy allows it");
    // Register-based invalidation cannot invalidate cached entries: no remapping either.
    let mut registers = rig_with(QEMU_ECAP, false, self::config());
    assert!(!registers.service.interrupts(0).expect("unit 0").enabled());
    assert!(registers.service.interrupts(0).expect("unit 0").off_reason().contains("queued invalidation"));
    registers.claim_group(USER, bdf(0, 4)).expect_err("no remapping without the queue");
}

#[test]
fn io_apic_lines_get_kernel_entries_no_client_can_free() {
    let mut rig = Rig::new(QEMU_CAP);
    let handle = rig.service.remap_ioapic_line(0, 0xff00, 0x30, 0, true).expect("an entry");
    let entry = table_entry(&mut rig, handle).expect("present");
    assert_eq!(entry.delivery.trigger, Trigger::Level);
    assert_eq!(entry.source, SourceCheck::Exact(0xff00));
    let ioapic = Bdf::from_requester_id(0xff00);
    let reply = rig.call(pci(), Request::FreeInterrupt { device: ioapic, entry: handle }, &[]);
    assert_eq!(refusal(&reply).0, ErrorCode::NotFound);
    rig.service.task_died(&mut rig.k, USER);
    assert!(table_entry(&mut rig, handle).is_some(), "kernel entries outlive every task");
}

#[test]
fn random_requests_never_panic_and_the_count_stays_true() {
    let mut rig = Rig::new(QEMU_CAP);
    rig.claim_kernel(bdf(0, 3)).expect("claims");
    let mut random = XorShift::new(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2000 {
        let value = random.next_u64();
        let device =
            Bdf::from_requester_id([0x0018, 0x0020, 0x0108, 0x0110, 0xff00, value as u16][(value % 6) as usize]);
        let request = match value >> 60 {
            0..=7 => Request::AllocInterrupt {
                device,
                holder: (value >> 8) as u16 % 5,
                address: if value & 1 << 20 != 0 { 0xfee0_0000 } else { value >> 16 },
                data: (value >> 24) as u32 & 0xff,
            },
            8..=13 => Request::FreeInterrupt { device, entry: (value >> 32) as u16 % 300 },
            _ => Request::Interrupts { device: Some(device) },
        };
        let _ = rig.call(pci(), request, &[]);
        let counted = rig.service.interrupts(0).expect("unit 0").in_use();
        let present = (1..256).filter(|&handle| table_entry(&mut rig, handle).is_some()).count();
        assert_eq!(counted, present);
    }
    assert!(rig.unit().violations.is_empty(), "{:?}", rig.unit().violations);
}
