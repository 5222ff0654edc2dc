//! Ways around isolation that the service closes (issue 15): each test failed before its fix.

use super::*;

/// The PCI server reports every device of `group` quiesced.
fn reclaimed(rig: &mut Rig, group: u16) -> Reply {
    let members = rig.service.ready().map_or(0, |ready| ready.groups.members(iommu_groups::GroupId(group)).count());
    let request = Request::Reclaimed { group, quiesced: members as u16 };
    rig.call(policy(PCI, &[Operation::Reclaimed]), request, &[])
}

#[test]
fn a_topology_the_server_cannot_take_leaves_every_requester_blocked_and_every_claim_refused() {
    let mut service = one_unit(QEMU_CAP, QEMU_ECAP, true, self::config());
    // Room for one default domain's table, not three.
    let pages = &mut service.hardware().pages;
    pages.budget = pages.live() + 1;
    let mut k = FakeKernel::default();
    let pci = policy(PCI, &[Operation::ReportTopology, Operation::ClaimKernel]);
    let report = Request::ReportTopology { functions: topology().into_iter().collect(), last: true };
    let answer = service.handle(&mut k, pci, report.clone(), &[]);
    assert_eq!(refusal(&answer.reply).0, ErrorCode::InvalidArgument, "the build fails");
    assert!(service.hardware().units[0].unit.translation_enabled(), "translation stays on");
    for device in [bdf(0, 3), bdf(0, 4), Bdf::new(1, 0, 0).unwrap()] {
        let hw = service.hardware();
        assert!(!hw.units[0].context.entry(&hw.pages, device.requester_id()).is_present(), "{device} stays blocked");
    }
    let claim = service.handle(&mut k, pci, Request::ClaimKernel { device: bdf(0, 3), driver: DRIVER }, &[]);
    assert_refused(&claim.reply, ErrorCode::Busy, &["could not take the topology", "default domain"]);
    let again = service.handle(&mut k, pci, report, &[]);
    assert!(refusal(&again.reply).1.contains("could not take the topology"), "no second try rebuilds a half state");
    assert!(k.minted.is_empty(), "no DMA handle was minted");
}

#[test]
fn a_claim_whose_switches_both_fail_leaves_the_group_reclaiming_and_tells_the_pci_server() {
    // In caching mode installing an entry needs an invalidation too, so the
    // way back to the default domain fails as well.
    let mut rig = Rig::new(QEMU_CAP_CACHING);
    rig.unit().refuse_queue = true;
    rig.service.hardware().units[0].unit.set_spin_limit(100);
    let reply = rig.claim_group(USER, bdf(0, 4)).expect_err("the unit refuses every invalidation");
    assert_eq!(refusal(&reply).0, ErrorCode::Busy, "{reply:?}");
    let owner = rig.service.ready().unwrap().ownership.owner(1);
    assert!(matches!(owner, Ok(crate::ownership::Owner::Reclaiming { task: USER })), "{owner:?}");
    assert_eq!(rig.k.reclaims, 1, "the PCI server must quiesce the group before it is handed out again");
}

#[test]
fn the_next_owner_never_reads_the_previous_owners_faults() {
    let mut rig = Rig::new(QEMU_CAP);
    let first = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    let high = crate::registers::frcd::F | 6u64 << 32 | u64::from(bdf(0, 4).requester_id());
    rig.unit().inject_fault(0, 0x4242_0000, high);
    assert_eq!(rig.service.drain_faults(0).records, 1);
    assert_eq!(rig.call(first, Request::Release, &[]), Reply::Done);
    assert_eq!(reclaimed(&mut rig, 1), Reply::Done);
    let second = rig.claim_group(USER, bdf(0, 4)).expect("unowned again");
    let Reply::Faults { records, remaining, dropped } = rig.call(second, Request::Faults, &[]) else { panic!() };
    assert!(records.is_empty() && remaining == 0 && dropped == 0, "the old owner's IOVAs leak: {records:?}");
    assert_eq!(rig.call(second, Request::Release, &[]), Reply::Done);
    assert_eq!(reclaimed(&mut rig, 1), Reply::Done);
    rig.unit().inject_fault(0, 0x4343_0000, high);
    assert_eq!(rig.service.drain_faults(0).records, 1);
    let handle = rig.claim_kernel(bdf(0, 4)).expect("unowned");
    let Reply::Faults { records, .. } = rig.call(handle, Request::Faults, &[]) else { panic!() };
    assert!(records.is_empty(), "a driver does not read faults from before its claim either: {records:?}");
}

#[test]
fn releasing_one_group_leaves_the_address_spaces_made_for_another() {
    let mut rig = Rig::new(QEMU_CAP);
    let one = rig.claim_group(USER, bdf(0, 4)).expect("group 1");
    let two = rig.claim_group(USER, bdf(1, 2)).expect("group 2");
    let prepared = ioas_of(rig.call(two, Request::IoasCreate, &[]));
    let used = ioas_of(rig.call(one, Request::IoasCreate, &[]));
    assert_eq!(rig.call(one, Request::Attach { ioas: Some(used) }, &[]), Reply::Done);
    assert_eq!(rig.call(one, Request::Release, &[]), Reply::Done);
    assert_eq!(rig.call(two, Request::Attach { ioas: Some(prepared) }, &[]), Reply::Done, "still there");
    let mapped = rig.with_frame(two, Request::Map { ioas: prepared, iova: 0x10_0000, writable: true }, 1);
    assert_eq!(mapped, Reply::Mapped { iova: 0x10_0000 });
    let fresh = ioas_of(rig.call(two, Request::IoasCreate, &[]));
    assert_ne!(fresh, used, "a destroyed space's id is not handed out again at once");
    rig.check_invariant();
}

/// A user owning 00:04.0 with an attached space mapping one page at each
/// of `iovas` (in tables of their own); the group capability and space.
fn user_with_mappings(rig: &mut Rig, iovas: &[u64]) -> (u64, u16) {
    let cap = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    let ioas = ioas_of(rig.call(cap, Request::IoasCreate, &[]));
    assert_eq!(rig.call(cap, Request::Attach { ioas: Some(ioas) }, &[]), Reply::Done);
    for &iova in iovas {
        assert_eq!(rig.with_frame(cap, Request::Map { ioas, iova, writable: true }, 1), Reply::Mapped { iova });
    }
    (cap, ioas)
}

#[test]
fn table_pages_an_unmap_empties_are_kept_until_the_invalidation_completed() {
    let mut rig = Rig::new(QEMU_CAP);
    let (cap, ioas) = user_with_mappings(&mut rig, &[0x10_0000, 0x40_0000_0000 >> 2]);
    let released = rig.service.hardware().pages.released.clone();
    rig.unit().refuse_queue = true;
    rig.service.hardware().units[0].unit.set_spin_limit(100);
    let reply = rig.call(cap, Request::Unmap { ioas, iova: 0x10_0000 }, &[]);
    assert_eq!(refusal(&reply).0, ErrorCode::Busy, "the unit did not confirm the invalidation");
    assert_eq!(rig.service.hardware().pages.released, released, "tables released under a failed invalidation");
    assert_eq!(rig.k.pins.len(), 2, "the frame stays pinned too");
}

#[test]
fn a_dead_owners_domain_is_not_freed_while_its_caches_may_point_at_it() {
    let mut rig = Rig::new(QEMU_CAP);
    user_with_mappings(&mut rig, &[0x10_0000, 0x40_0000_0000 >> 2]);
    let live = rig.service.hardware().pages.live();
    let released = rig.service.hardware().pages.released.len();
    rig.unit().refuse_queue = true;
    rig.service.hardware().units[0].unit.set_spin_limit(100);
    rig.service.task_died(&mut rig.k, USER);
    assert_eq!(rig.service.hardware().pages.released.len(), released, "no table page went back to the pool");
    assert_eq!(rig.service.hardware().pages.live(), live);
}

#[test]
fn the_driver_cores_operations_are_refused_to_every_other_task_whatever_its_badge() {
    let mut rig = Rig::new(QEMU_CAP);
    let handle = rig.claim_kernel(bdf(0, 3)).expect("the PCI server claims for the driver");
    let user = policy(USER, &[Operation::ReleaseKernel, Operation::ClaimKernel, Operation::Reclaimed]);
    let drop = rig.call(user, Request::ReleaseKernel { device: bdf(0, 3), driver: DRIVER }, &[]);
    assert_refused(&drop, ErrorCode::PermissionDenied, &["`release-kernel`", "edu-user"]);
    assert!(rig.call(handle, Request::DmaUnmap { iova: 0x1000 }, &[]) != refusal_stale(), "the handle lives");
    let hold = rig.call(user, Request::ClaimKernel { device: bdf(0, 4), driver: USER }, &[]);
    assert_eq!(refusal(&hold).0, ErrorCode::PermissionDenied, "no group held kernel-owned by a user");
    let skip = rig.call(user, Request::Reclaimed { group: 1, quiesced: 1 }, &[]);
    assert_eq!(refusal(&skip).0, ErrorCode::PermissionDenied, "no quiesce skipped");
}

/// What a request on a released DMA handle gets.
fn refusal_stale() -> Reply {
    Reply::Refused { code: ErrorCode::InvalidCapability, reason: "this DMA handle was released".try_into().unwrap() }
}

#[test]
fn a_group_with_a_member_outside_the_units_scope_goes_to_no_one() {
    use acpi_tables::testing::{dmar, drhd, scope};
    // This unit lists 00:03.0 and the bridge's hierarchy; another takes 00:04.0.
    let ours = drhd(0, 0, 0xfed9_0000, &[scope(1, 0, 0, &[(3, 0)]), scope(2, 0, 0, &[(5, 0)])]);
    let theirs = drhd(1, 0, 0xfed9_1000, &[]);
    let table = dmar(38, 1, &[ours, theirs]);
    let parsed = acpi_tables::Dmar::parse(&table).expect("valid");
    let scopes = super::super::scope::Scopes::from_dmar(&parsed, 0).expect("fits");
    let mut rig = Rig::around(one_unit(QEMU_CAP, QEMU_ECAP, true, self::config()));
    rig.service.set_scopes(scopes).expect("before the topology");
    let report = Request::ReportTopology { functions: topology().into_iter().collect(), last: true };
    assert_eq!(rig.call(policy(PCI, &[Operation::ReportTopology]), report, &[]), Reply::Done);
    assert_refused(
        &rig.claim_group(USER, bdf(0, 4)).expect_err("00:04.0 is another unit's"),
        ErrorCode::PermissionDenied,
        &["00:04.0", "outside its DMAR scope"],
    );
    let (code, _) = refusal(&rig.claim_kernel(bdf(0, 4)).expect_err("nor a driver's"));
    assert_eq!(code, ErrorCode::PermissionDenied);
    rig.claim_kernel(bdf(0, 3)).expect("00:03.0 is this unit's");
    rig.claim_group(USER, bdf(1, 2)).expect("so is everything behind the bridge");
    assert_eq!(rig.service.set_scopes(super::super::scope::Scopes::catch_all(QEMU_BASE)), Err(ErrorCode::Busy));
}

/// A rig whose users may hold `table_pages` table pages each.
fn rig_with_table_quota(table_pages: u32) -> Rig {
    let config = IommuConfig { table_page_quota: table_pages, ..self::config() };
    Rig::with(QEMU_CAP, config, topology(), heapless::Vec::new())
}

/// The IOVA of the `n`th gigabyte: each needs two table pages of its own.
fn gigabyte(n: u64) -> u64 {
    n << 30
}

#[test]
fn a_users_table_pages_are_charged_to_its_quota() {
    let mut rig = rig_with_table_quota(5);
    let cap = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    let ioas = ioas_of(rig.call(cap, Request::IoasCreate, &[])); // its root: 1 page
    for n in 1..=2 {
        let reply = rig.with_frame(cap, Request::Map { ioas, iova: gigabyte(n), writable: true }, 1);
        assert_eq!(reply, Reply::Mapped { iova: gigabyte(n) }, "gigabyte {n}");
    }
    let reply = rig.with_frame(cap, Request::Map { ioas, iova: gigabyte(3), writable: true }, 1);
    assert_eq!(refusal(&reply).0, ErrorCode::QuotaExceeded, "a sixth table page is past the quota");
    assert_eq!(rig.k.pins.len(), 2, "the refused frame was unpinned");
    assert_eq!(rig.call(cap, Request::Unmap { ioas, iova: gigabyte(1) }, &[]), Reply::Done);
    let reply = rig.with_frame(cap, Request::Map { ioas, iova: gigabyte(3), writable: true }, 1);
    assert_eq!(reply, Reply::Mapped { iova: gigabyte(3) }, "an unmap gives its table pages back to the quota");
}

#[test]
fn a_user_cannot_starve_trusted_drivers_of_table_pages() {
    let mut rig = rig_with_table_quota(100_000);
    let pages = &mut rig.service.hardware().pages;
    pages.budget = pages.live() + super::super::quota::KERNEL_TABLE_PAGES + 8;
    let cap = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    let ioas = ioas_of(rig.call(cap, Request::IoasCreate, &[]));
    let mut refused = None;
    for n in 1..64 {
        let reply = rig.with_frame(cap, Request::Map { ioas, iova: gigabyte(n), writable: true }, 1);
        if let Reply::Refused { code, .. } = reply {
            refused = Some(code);
            break;
        }
    }
    assert_eq!(refused, Some(ErrorCode::OutOfMemory), "the user runs out before the server does");
    let handle = rig.claim_kernel(bdf(0, 3)).expect("unowned");
    for n in 0..4 {
        let reply = rig.with_frame(handle, Request::DmaMap { writable: true, mask_bits: 64 - n }, 1);
        assert!(matches!(reply, Reply::Mapped { .. }), "the trusted driver still maps: {reply:?}");
    }
}

#[test]
fn a_user_cannot_take_the_mapping_records_kept_for_dma_handles() {
    use super::super::domains::MAX_MAPPINGS;
    use super::super::quota::KERNEL_MAPPINGS;
    // Every space of 63 mappings (its allocator's ranges less the interrupt
    // window) would be more records than users may have.
    let config = IommuConfig {
        mapping_quota_pages: 100_000,
        address_space_quota: super::super::state::MAX_ADDRESS_SPACES as u16,
        ..self::config()
    };
    let mut rig = Rig::with(QEMU_CAP, config, topology(), heapless::Vec::new());
    let cap = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    let mut mapped = 0;
    let refusal_code = 'spaces: loop {
        let ioas = ioas_of(rig.call(cap, Request::IoasCreate, &[]));
        for page in 0..63 {
            let iova = 0x10_0000 + 0x2000 * page;
            match rig.with_frame(cap, Request::Map { ioas, iova, writable: true }, 1) {
                Reply::Mapped { .. } => mapped += 1,
                Reply::Refused { code, .. } => break 'spaces code,
                other => panic!("{other:?}"),
            }
        }
        assert!(mapped <= MAX_MAPPINGS, "never refused");
    };
    assert_eq!((mapped, refusal_code), (MAX_MAPPINGS - KERNEL_MAPPINGS, ErrorCode::QuotaExceeded));
    let handle = rig.claim_kernel(bdf(0, 3)).expect("unowned");
    let reply = rig.with_frame(handle, Request::DmaMap { writable: true, mask_bits: 32 }, 1);
    assert!(matches!(reply, Reply::Mapped { .. }), "the trusted driver still maps: {reply:?}");
}

/// A PCIe-to-PCI bridge at 00:05.0 with `count` edus behind it on bus 1,
/// from 01:01.0 on (01:00.0 is the bridge's alias, no function).
fn bridge_with(count: u8) -> Vec<PciFunction> {
    let mut bridge = function(0, 5, 0, HeaderKind::PciBridge, Some(PcieDeviceType::PcieToPciBridge));
    bridge.bridge = Some(BridgeBuses { primary: 0, secondary: 1, subordinate: 1 });
    let mut functions = vec![function(0, 3, 0, HeaderKind::Normal, None), bridge];
    for n in 0..count {
        let mut edu = function(1, 1 + n / 8, n % 8, HeaderKind::Normal, None);
        edu.multifunction = true;
        functions.push(edu);
    }
    functions
}

#[test]
fn every_requester_id_of_a_large_group_gets_its_context_entry() {
    let mut rig = Rig::with(QEMU_CAP, self::config(), bridge_with(20), heapless::Vec::new());
    for n in 0..20u8 {
        let id = Bdf::new(1, 1 + n / 8, n % 8).unwrap();
        assert!(rig.domain_of(id).is_some(), "{id} has no context entry");
    }
}

#[test]
fn a_group_with_more_requester_ids_than_the_server_holds_is_refused_not_cut() {
    let mut rig = Rig::around(one_unit(QEMU_CAP, QEMU_ECAP, true, self::config()));
    let pci = policy(PCI, &[Operation::ReportTopology]);
    // The bridge and 63 edus: 64 functions, the most a topology holds, but
    // 65 requester ids with the bridge's alias 01:00.0.
    let functions: Vec<PciFunction> = bridge_with(63).into_iter().skip(1).collect();
    let chunks: Vec<&[PciFunction]> = functions.chunks(iommu_api::TOPOLOGY_CHUNK).collect();
    let mut last_reply = Reply::Done;
    for (index, chunk) in chunks.iter().enumerate() {
        let request =
            Request::ReportTopology { functions: chunk.iter().copied().collect(), last: index + 1 == chunks.len() };
        last_reply = rig.call(pci, request, &[]);
    }
    assert_refused(&last_reply, ErrorCode::InvalidArgument, &["more requester ids"]);
}

/// The pin of the mapping at `iova`.
fn pin_at(rig: &Rig, iova: u64) -> u64 {
    rig.service.domains().mappings().iter().find(|mapping| mapping.iova == iova).expect("mapped").pin
}

/// IOTLB invalidations the unit took from its queue so far.
fn iotlb_invalidations(rig: &mut Rig) -> usize {
    use crate::unit::fake::Event;
    rig.unit().events.iter().filter(|event| matches!(event, Event::Queued(d) if d.low & 0xf == 2)).count()
}

/// Whether `iova` translates in domain `domain`.
fn translates(rig: &Rig, domain: u16, iova: u64) -> bool {
    let table = &rig.service.domains().get(domain).expect("domain").table;
    table.translate(&rig.service.hw.pages, iova).is_some()
}

#[test]
fn a_revoked_frame_is_unmapped_invalidated_and_unpinned_and_its_iova_then_faults() {
    let mut rig = Rig::new(QEMU_CAP);
    let (cap, ioas) = user_with_mappings(&mut rig, &[0x10_0000, 0x20_0000]);
    let (revoked, kept) = (pin_at(&rig, 0x10_0000), pin_at(&rig, 0x20_0000));
    let domain = rig.service.domains().mappings()[0].domain;
    let invalidations = iotlb_invalidations(&mut rig);
    // The lender revokes the frame mapped at 0x10_0000.
    rig.k.revoke_pin(revoked);
    rig.service.pins_revoked(&mut rig.k);
    assert!(iotlb_invalidations(&mut rig) > invalidations, "the IOTLB forgot the revoked frame");
    assert!(!rig.k.pins.contains_key(&revoked), "its pin is released after the invalidation");
    assert!(!translates(&rig, domain, 0x10_0000), "nothing translates there any more");
    assert!(rig.k.pins.contains_key(&kept) && translates(&rig, domain, 0x20_0000), "the other frame stays mapped");
    let unmap = rig.call(cap, Request::Unmap { ioas, iova: 0x10_0000 }, &[]);
    assert_eq!(refusal(&unmap).0, ErrorCode::NotMapped, "the owner's mapping is gone");
    // The owner's device writes there: the unit finds no translation
    // (reason 6) and the fault is in the owner's log.
    let high = crate::registers::frcd::F | 6u64 << 32 | u64::from(bdf(0, 4).requester_id());
    rig.unit().inject_fault(0, 0x10_0000, high);
    let Reply::Faults { records, .. } = rig.call(cap, Request::Faults, &[]) else { panic!("a fault log") };
    assert!(records.iter().any(|record| record.address == 0x10_0000), "{records:?}");
    let reply = rig.with_frame(cap, Request::Map { ioas, iova: 0x10_0000, writable: true }, 1);
    assert_eq!(reply, Reply::Mapped { iova: 0x10_0000 }, "the IOVA and its tables came back to the owner");
    assert!(rig.unit().violations.is_empty(), "{:?}", rig.unit().violations);
    rig.check_invariant();
}

#[test]
fn a_revoked_frame_a_driver_mapped_leaves_its_dma_handle() {
    let mut rig = Rig::new(QEMU_CAP);
    let handle = rig.claim_kernel(bdf(0, 3)).expect("claims");
    let Reply::Mapped { iova } = rig.with_frame(handle, Request::DmaMap { writable: true, mask_bits: 28 }, 2) else {
        panic!("mapped")
    };
    let (pin, domain) = (pin_at(&rig, iova), rig.service.domains().mappings()[0].domain);
    rig.k.revoke_pin(pin);
    rig.service.pins_revoked(&mut rig.k);
    assert!(rig.k.pins.is_empty(), "unpinned");
    assert!(!translates(&rig, domain, iova));
    assert_eq!(refusal(&rig.call(handle, Request::DmaUnmap { iova }, &[])).0, ErrorCode::NotMapped);
}

#[test]
fn a_revoked_frame_stays_pinned_while_the_unit_does_not_confirm_the_invalidation() {
    let mut rig = Rig::new(QEMU_CAP);
    user_with_mappings(&mut rig, &[0x10_0000]);
    let pin = pin_at(&rig, 0x10_0000);
    let released = rig.service.hardware().pages.released.clone();
    rig.unit().refuse_queue = true;
    rig.service.hardware().units[0].unit.set_spin_limit(100);
    rig.k.revoke_pin(pin);
    rig.service.pins_revoked(&mut rig.k);
    assert!(rig.k.pins.contains_key(&pin), "a device may still reach the frame: it stays pinned, never reused");
    assert_eq!(rig.service.hardware().pages.released, released, "and its tables stay");
}

#[test]
fn a_revoked_pin_that_backs_no_mapping_is_kept() {
    let mut rig = Rig::new(QEMU_CAP);
    user_with_mappings(&mut rig, &[0x10_0000]);
    // A pin the server holds outside any mapping (one kept after an
    // invalidation the unit did not confirm): the FakeKernel panics if it
    // is released, and the mapping of another pin is left alone.
    rig.k.pins.insert(77, 1);
    rig.k.revoke_pin(77);
    rig.service.pins_revoked(&mut rig.k);
    assert!(rig.k.pins.contains_key(&77));
    assert_eq!(rig.service.domains().mapping_count(), 1);
    assert!(rig.k.revoked_pins.is_empty(), "every revoked pin was taken");
}
