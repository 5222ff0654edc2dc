//! Several remapping units, over synthetic DMAR tables: each group on its unit, each unit's work on it alone.

use acpi_tables::testing::{dmar, drhd, scope};

use super::*;
use crate::context::ContextEntry;
use crate::service::scope::Scopes;
use crate::unit::fake::Event;

const A: u64 = 0xfed9_0000;
const B: u64 = 0xfed9_1000;
const C: u64 = 0xfed9_2000;
const ENDPOINT: u8 = 1;
const BRIDGE: u8 = 2;

/// QEMU's unit with `aw-bits=48`: 48-bit guest addresses, 4-level tables.
const QEMU_CAP_48: u64 = QEMU_CAP & !(0x3f << 16) | 0x2f << 16 | 1 << 10;

/// A lists 00:03.0 and the bridge's hierarchy (00:05.0, 01:01.0, 01:02.0);
/// B is the catch-all, so 00:04.0 is B's.
fn two_units() -> Vec<u8> {
    let a = drhd(0, 0, A, &[scope(ENDPOINT, 0, 0, &[(3, 0)]), scope(BRIDGE, 0, 0, &[(5, 0)])]);
    dmar(38, 1, &[a, drhd(1, 0, B, &[])])
}

/// A lists 00:03.0, B the bridge's hierarchy, C is the catch-all (00:04.0).
fn three_units() -> Vec<u8> {
    let a = drhd(0, 0, A, &[scope(ENDPOINT, 0, 0, &[(3, 0)])]);
    let b = drhd(0, 0, B, &[scope(BRIDGE, 0, 0, &[(5, 0)])]);
    dmar(38, 1, &[a, b, drhd(1, 0, C, &[])])
}

/// The service over one QEMU unit model per `(base, cap)`, told `table`'s
/// scopes, before the topology.
fn started(table: &[u8], units: &[(u64, u64)]) -> Rig {
    let parts = units.iter().map(|&(base, cap)| unit_parts(base, FakeUnit::new(cap, QEMU_ECAP), true));
    let service = Service::start(parts, FakePages::new(4096), self::config(), 39, 0).expect("a unit comes up");
    let mut rig = Rig::around(service);
    let scopes = Scopes::from_dmar(&acpi_tables::Dmar::parse(table).expect("valid"), 0).expect("fits");
    rig.service.set_scopes(scopes).expect("before the topology");
    rig
}

/// [`started`], with the test topology reported.
fn rig_over(table: &[u8], units: &[(u64, u64)]) -> Rig {
    let mut rig = started(table, units);
    report(&mut rig);
    rig
}

fn report(rig: &mut Rig) {
    let request = Request::ReportTopology { functions: topology().into_iter().collect(), last: true };
    assert_eq!(rig.call(policy(PCI, &[Operation::ReportTopology]), request, &[]), Reply::Done);
}

/// Driven unit `unit`'s register model.
fn model(rig: &mut Rig, unit: usize) -> &mut FakeUnit {
    rig.service.hardware().units[unit].unit.registers()
}

/// The context entry of `device` on driven unit `unit`.
fn entry_on(rig: &mut Rig, unit: usize, device: Bdf) -> ContextEntry {
    let hw = rig.service.hardware();
    hw.units[unit].context.entry(&hw.pages, device.requester_id())
}

/// Every requester id of the test topology (the bridge's alias too), as
/// driven unit `unit`'s context tables have them.
fn context_of(rig: &mut Rig, unit: usize) -> Vec<ContextEntry> {
    let alias = Bdf::new(1, 0, 0).unwrap();
    let devices = topology().into_iter().map(|f| f.bdf).chain([alias]);
    devices.map(|device| entry_on(rig, unit, device)).collect()
}

/// Invalidation descriptors driven unit `unit` took from its queue.
fn queued(rig: &mut Rig, unit: usize) -> Vec<crate::invalidation::Descriptor> {
    let events = &model(rig, unit).events;
    events.iter().filter_map(|event| if let Event::Queued(d) = event { Some(*d) } else { None }).collect()
}

/// Its IOTLB invalidations among them.
fn iotlb(rig: &mut Rig, unit: usize) -> usize {
    queued(rig, unit).iter().filter(|descriptor| descriptor.kind() == 2).count()
}

/// The domain index `device` translates through on driven unit `unit`.
fn domain_on(rig: &mut Rig, unit: usize, device: Bdf) -> Option<u16> {
    entry_on(rig, unit, device).domain().map(|id| id.get() - 1)
}

#[test]
fn two_units_an_explicit_one_and_the_catch_all_each_translate_their_groups() {
    let mut rig = rig_over(&two_units(), &[(A, QEMU_CAP), (B, QEMU_CAP)]);
    let ready = rig.service.ready().expect("ready");
    let placed: Vec<Option<u8>> = (0..3).map(|group| ready.unit_of(group)).collect();
    let (edu, user, bridge) = (ready.group_of(bdf(0, 3)), ready.group_of(bdf(0, 4)), ready.group_of(bdf(1, 2)));
    assert_eq!([edu, user, bridge].map(|group| placed[usize::from(group.unwrap())]), [Some(0), Some(1), Some(0)]);
    let alias = Bdf::new(1, 0, 0).unwrap();
    for device in [bdf(0, 3), bdf(0, 5), bdf(1, 1), bdf(1, 2), alias] {
        assert!(entry_on(&mut rig, 0, device).is_present(), "{device} translates on A");
        assert!(!entry_on(&mut rig, 1, device).is_present(), "{device} is nothing of B's");
    }
    assert!(entry_on(&mut rig, 1, bdf(0, 4)).is_present(), "00:04.0 translates on the catch-all");
    assert!(!entry_on(&mut rig, 0, bdf(0, 4)).is_present());
    for unit in 0..2 {
        assert!(rig.service.hardware().units[unit].unit.translation_enabled());
        assert!(model(&mut rig, unit).violations.is_empty(), "{:?}", model(&mut rig, unit).violations);
    }
    rig.check_invariant_on_units();
}

#[test]
fn translation_is_on_on_all_three_units_before_any_group_is_handed_out() {
    let mut rig = started(&three_units(), &[(A, QEMU_CAP), (B, QEMU_CAP), (C, QEMU_CAP)]);
    for unit in 0..3 {
        assert!(rig.service.hardware().units[unit].unit.translation_enabled(), "unit {unit} translates from its start");
        assert!(context_of(&mut rig, unit).iter().all(|entry| !entry.is_present()), "unit {unit} blocks everyone");
    }
    let early = rig.claim_kernel(bdf(0, 3)).expect_err("nothing before the topology");
    assert_eq!(refusal(&early).0, ErrorCode::Busy);
    report(&mut rig);
    let groups = [bdf(0, 3), bdf(1, 2), bdf(0, 4)];
    let ready = rig.service.ready().expect("ready");
    let units: Vec<_> = groups.iter().map(|&device| ready.unit_of(ready.group_of(device).unwrap())).collect();
    assert_eq!(units, [Some(0), Some(1), Some(2)], "A's endpoint, B's hierarchy, C's catch-all");
    for (unit, &device) in groups.iter().enumerate() {
        assert!(rig.service.hardware().units[unit].unit.translation_enabled());
        assert!(entry_on(&mut rig, unit, device).is_present(), "{device} on unit {unit}");
        let elsewhere =
            (0..3).filter(|&other| other != unit).filter(|&other| entry_on(&mut rig, other, device).is_present());
        assert_eq!(elsewhere.count(), 0, "{device} on no other unit");
    }
    rig.claim_kernel(bdf(0, 3)).expect("A's");
    rig.claim_group(USER, bdf(1, 2)).expect("B's");
    rig.claim_group(USER, bdf(0, 4)).expect("C's");
    rig.check_invariant_on_units();
}

#[test]
fn a_map_on_a_device_under_unit_b_writes_bs_tables_and_invalidates_on_b_only() {
    // Caching mode: a map needs an IOTLB invalidation too.
    let mut rig = rig_over(&two_units(), &[(A, QEMU_CAP_CACHING), (B, QEMU_CAP_CACHING)]);
    let handle = rig.claim_kernel(bdf(0, 4)).expect("B's device");
    let (a_events, a_context) = (model(&mut rig, 0).events.len(), context_of(&mut rig, 0));
    let b_before = iotlb(&mut rig, 1);
    let iova = match rig.with_frame(handle, Request::DmaMap { writable: true, mask_bits: 32 }, 1) {
        Reply::Mapped { iova } => iova,
        other => panic!("{other:?}"),
    };
    let domain = domain_on(&mut rig, 1, bdf(0, 4)).expect("B translates 00:04.0");
    let installed = entry_on(&mut rig, 1, bdf(0, 4)).decode().map(|context| context.page_table);
    let table = &rig.service.domains().get(domain).expect("its domain").table;
    assert_eq!(Some(table.root()), installed, "B's entry for 00:04.0 names the domain's table");
    assert!(table.translate(&rig.service.hw.pages, iova).is_some(), "which maps the frame");
    assert!(iotlb(&mut rig, 1) > b_before, "B forgets what it may have cached of the IOVA");
    assert_eq!(rig.call(handle, Request::DmaUnmap { iova }, &[]), Reply::Done);
    assert!(iotlb(&mut rig, 1) > b_before + 1, "and forgets the unmapped IOVA");
    assert_eq!(model(&mut rig, 0).events.len(), a_events, "A is never touched: no register written, nothing queued");
    assert_eq!(context_of(&mut rig, 0), a_context);
    let units = rig.service.domains().get(domain).expect("domain").units;
    assert_eq!(units.iter().collect::<Vec<_>>(), [1], "the default domain is on B alone");
}

#[test]
fn a_claim_of_a_group_under_unit_a_never_touches_unit_b() {
    let mut rig = rig_over(&two_units(), &[(A, QEMU_CAP_CACHING), (B, QEMU_CAP_CACHING)]);
    let (b_events, b_context) = (model(&mut rig, 1).events.len(), context_of(&mut rig, 1));
    let a_context = context_of(&mut rig, 0);
    let cap = rig.claim_group(USER, bdf(1, 2)).expect("the bridge's group is A's");
    let ioas = ioas_of(rig.call(cap, Request::IoasCreate, &[]));
    assert_eq!(rig.call(cap, Request::Attach { ioas: Some(ioas) }, &[]), Reply::Done);
    let map = Request::Map { ioas, iova: 0x10_0000, writable: true };
    assert_eq!(rig.with_frame(cap, map, 1), Reply::Mapped { iova: 0x10_0000 });
    assert_eq!(rig.call(cap, Request::Unmap { ioas, iova: 0x10_0000 }, &[]), Reply::Done);
    assert_ne!(context_of(&mut rig, 0), a_context, "A's entries moved to the user's space");
    assert_eq!(rig.call(cap, Request::Release, &[]), Reply::Done);
    assert_eq!(model(&mut rig, 1).events.len(), b_events, "B is never touched: no register written, nothing queued");
    assert_eq!(context_of(&mut rig, 1), b_context);
    rig.check_invariant_on_units();
}

#[test]
fn a_group_spanning_two_units_is_refused_by_name_and_blocked_on_both() {
    // A lists the PCIe-to-PCI bridge as an endpoint only: the functions
    // behind it fall to the catch-all B, yet share the bridge's group.
    let a = drhd(0, 0, A, &[scope(ENDPOINT, 0, 0, &[(3, 0)]), scope(ENDPOINT, 0, 0, &[(5, 0)])]);
    let table = dmar(38, 1, &[a, drhd(1, 0, B, &[])]);
    let mut rig = rig_over(&table, &[(A, QEMU_CAP), (B, QEMU_CAP)]);
    for claim in [rig.claim_group(USER, bdf(1, 2)), rig.claim_kernel(bdf(1, 1))] {
        let (code, reason) = refusal(&claim.expect_err("split across units"));
        assert_eq!(code, ErrorCode::PermissionDenied);
        for named in [
            "spans two remapping units",
            "00:05.0 under the unit at 0xfed90000",
            "01:01.0 under the unit at 0xfed91000",
        ] {
            assert!(reason.contains(named), "{named} missing from: {reason}");
        }
    }
    let alias = Bdf::new(1, 0, 0).unwrap();
    for device in [bdf(0, 5), bdf(1, 1), bdf(1, 2), alias] {
        for unit in 0..2 {
            assert!(!entry_on(&mut rig, unit, device).is_present(), "{device} blocked on unit {unit}");
        }
    }
    rig.claim_kernel(bdf(0, 3)).expect("A's own group");
    rig.claim_group(USER, bdf(0, 4)).expect("B's own group");
}

#[test]
fn a_group_of_a_unit_dmar_lists_but_the_policy_does_not_grant_goes_to_no_one() {
    // B's hierarchy: the server drives A and C only.
    let mut rig = rig_over(&three_units(), &[(A, QEMU_CAP), (C, QEMU_CAP)]);
    assert_refused(
        &rig.claim_group(USER, bdf(1, 2)).expect_err("B is not driven"),
        ErrorCode::PermissionDenied,
        &["00:05.0", "no remapping unit this server drives"],
    );
    assert!(!entry_on(&mut rig, 1, bdf(0, 5)).is_present(), "nor does the catch-all C take B's devices");
    rig.claim_group(USER, bdf(0, 4)).expect("C's catch-all still serves");
}

#[test]
fn a_unit_that_fails_bring_up_hands_out_none_of_its_devices_and_says_why() {
    let mut broken = FakeUnit::new(QEMU_CAP, QEMU_ECAP);
    broken.refuse_queue = true;
    let parts = [unit_parts(A, FakeUnit::new(QEMU_CAP, QEMU_ECAP), true), unit_parts(B, broken, true)];
    let service = Service::start(parts, FakePages::new(4096), self::config(), 39, 0).expect("A comes up");
    let mut rig = Rig::around(service);
    let down = rig.service.down_units().to_vec();
    assert_eq!(down.len(), 1);
    assert_eq!(down[0].base, B);
    let broke = StartError::Unit(UnitError::Timeout { operation: "complete queued invalidation" });
    assert_eq!(down[0].reason, broke, "its queue never completed the bring-up's invalidation");
    assert_eq!(rig.service.hardware().units.len(), 1, "only A is driven");
    let scopes = Scopes::from_dmar(&acpi_tables::Dmar::parse(&two_units()).expect("valid"), 0).expect("fits");
    rig.service.set_scopes(scopes).expect("before the topology");
    report(&mut rig);
    for claim in [rig.claim_group(USER, bdf(0, 4)), rig.claim_kernel(bdf(0, 4))] {
        let words = [
            "00:04.0, whose remapping unit at 0xfed91000 did not come up",
            "timed out waiting to complete queued invalidation",
        ];
        assert_refused(&claim.expect_err("B is down"), ErrorCode::PermissionDenied, &words);
    }
    rig.claim_kernel(bdf(0, 3)).expect("A's devices are handed out");
    rig.claim_group(USER, bdf(1, 2)).expect("all of them");
    let mut dead = FakeUnit::new(QEMU_CAP, QEMU_ECAP);
    dead.refuse_queue = true;
    let none = Service::<Simulated>::start([unit_parts(A, dead, true)], FakePages::new(4096), self::config(), 39, 0);
    assert!(matches!(none.err(), Some(StartError::Unit(_))), "no unit up: no server");
}

#[test]
fn grants_past_the_units_the_server_drives_are_not_driven() {
    let bases = (0..=MAX_UNITS as u64).map(|n| A + n * 0x1000);
    let parts = bases.map(|base| unit_parts(base, FakeUnit::new(QEMU_CAP, QEMU_ECAP), true));
    let mut service = Service::start(parts, FakePages::new(4096), self::config(), 39, 0).expect("eight come up");
    let driven: Vec<u64> = service.hardware().units.iter().map(|unit| unit.base).collect();
    assert_eq!(driven, (0..MAX_UNITS as u64).map(|n| A + n * 0x1000).collect::<Vec<_>>(), "the ninth is left alone");
    assert!(service.down_units().is_empty(), "it is not a unit that failed: it was never tried");
    let none = Service::<Simulated>::start([], FakePages::new(4096), self::config(), 39, 0);
    assert_eq!(none.err(), Some(StartError::NoUnit));
}

#[test]
fn an_address_space_spans_units_only_where_their_tables_agree() {
    let mut rig = rig_over(&two_units(), &[(A, QEMU_CAP_CACHING), (B, QEMU_CAP_CACHING)]);
    let on_a = rig.claim_group(USER, bdf(1, 2)).expect("A's group");
    let on_b = rig.claim_group(USER, bdf(0, 4)).expect("B's group");
    let ioas = ioas_of(rig.call(on_a, Request::IoasCreate, &[]));
    assert_eq!(rig.call(on_a, Request::Attach { ioas: Some(ioas) }, &[]), Reply::Done);
    assert_eq!(rig.call(on_b, Request::Attach { ioas: Some(ioas) }, &[]), Reply::Done, "alike units share tables");
    let (a_before, b_before) = (iotlb(&mut rig, 0), iotlb(&mut rig, 1));
    assert_eq!(rig.call(on_b, Request::Unmap { ioas, iova: 0x10_0000 }, &[]), refusal_not_mapped());
    let map = Request::Map { ioas, iova: 0x10_0000, writable: true };
    assert_eq!(rig.with_frame(on_a, map, 1), Reply::Mapped { iova: 0x10_0000 });
    assert!(iotlb(&mut rig, 0) > a_before && iotlb(&mut rig, 1) > b_before, "both units forget the IOVA");
    assert_eq!(domain_on(&mut rig, 0, bdf(1, 2)), domain_on(&mut rig, 1, bdf(0, 4)), "one domain, on both");

    let mut rig = rig_over(&two_units(), &[(A, QEMU_CAP), (B, QEMU_CAP_48)]);
    let on_a = rig.claim_group(USER, bdf(1, 2)).expect("A's group");
    let on_b = rig.claim_group(USER, bdf(0, 4)).expect("B's group");
    let ioas = ioas_of(rig.call(on_a, Request::IoasCreate, &[]));
    assert_refused(
        &rig.call(on_b, Request::Attach { ioas: Some(ioas) }, &[]),
        ErrorCode::InvalidArgument,
        &["0xfed91000", "3-level", "4-level"],
    );
    assert!(!entry_on(&mut rig, 1, bdf(0, 4)).is_present(), "B's group stays blocked");
    let own = ioas_of(rig.call(on_b, Request::IoasCreate, &[]));
    assert_eq!(rig.call(on_b, Request::Attach { ioas: Some(own) }, &[]), Reply::Done, "a space of B's own is fine");
    let table = entry_on(&mut rig, 1, bdf(0, 4)).decode().expect("attached");
    assert_eq!(table.width.levels(), 4, "built for B");
}

/// The refusal of an unmap where nothing is mapped.
fn refusal_not_mapped() -> Reply {
    Reply::Refused { code: ErrorCode::NotMapped, reason: "nothing mapped there".try_into().unwrap() }
}

#[test]
fn faults_and_interrupt_entries_stay_with_the_devices_unit() {
    let mut rig = rig_over(&two_units(), &[(A, QEMU_CAP), (B, QEMU_CAP)]);
    model(&mut rig, 1).fault(bdf(0, 4).requester_id(), 0x5000);
    assert_eq!(rig.service.drain_faults(0).records, 1, "B's record is drained");
    let group = rig.service.ready().and_then(|ready| ready.group_of(bdf(0, 4))).expect("grouped");
    assert_eq!(rig.service.ready().expect("ready").faults[usize::from(group)].len(), 1, "into 00:04.0's log");
    rig.claim_kernel(bdf(0, 4)).expect("B's device");
    let a_events = model(&mut rig, 0).events.len();
    let pci = policy(PCI, &[Operation::AllocInterrupt, Operation::Stats]);
    let alloc = Request::AllocInterrupt { device: bdf(0, 4), holder: DRIVER, address: 0xfee0_0000, data: 0x40 };
    assert!(matches!(rig.call(pci, alloc, &[]), Reply::Interrupt { entry: Some(_), .. }));
    assert_eq!(rig.service.interrupts(1).expect("B").in_use(), 1, "the entry is in B's table");
    assert_eq!(rig.service.interrupts(0).expect("A").in_use(), 0);
    assert_eq!(model(&mut rig, 0).events.len(), a_events, "A is not told");
    match rig.call(pci, Request::Interrupts { device: None }, &[]) {
        Reply::Interrupts { remapping, in_use, capacity, .. } => {
            assert_eq!((remapping, in_use, capacity), (true, 1, 2 * 255))
        }
        other => panic!("{other:?}"),
    }
}

impl Rig {
    /// What each requester translates through on its group's unit agrees
    /// with who owns the group, and no other unit has an entry for it.
    fn check_invariant_on_units(&mut self) {
        let ready = self.service.ready().expect("ready");
        let groups: Vec<(u16, crate::ownership::Owner, Option<u8>)> =
            ready.ownership.owners().map(|(group, owner)| (group, owner, ready.unit_of(group))).collect();
        let (defaults, requesters) = (ready.defaults.clone(), ready.requesters.clone());
        let units = self.service.hardware().units.len();
        for (group, owner, unit) in groups {
            for &source in &requesters[usize::from(group)] {
                let device = Bdf::from_requester_id(source);
                for other in (0..units).filter(|&other| Some(other as u8) != unit) {
                    assert!(!entry_on(self, other, device).is_present(), "{device} has an entry on unit {other}");
                }
                let Some(unit) = unit else { continue };
                let domain = domain_on(self, usize::from(unit), device);
                let default = Some(defaults[usize::from(group)]);
                match owner {
                    crate::ownership::Owner::Unowned | crate::ownership::Owner::Kernel { .. } => {
                        assert_eq!(domain, default, "group {group} uses its default domain")
                    }
                    _ => assert_ne!(domain, default, "group {group} is {owner:?}, yet translates by default"),
                }
            }
        }
    }
}
