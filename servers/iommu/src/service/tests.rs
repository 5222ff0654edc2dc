//! The IOMMU server end to end on simulated hardware: QEMU's register
//! model, simulated table memory and a recording kernel.

use std::vec::Vec;

use capabilities::ErrorCode;
use capabilities::badge;
use capabilities::config::{Assignment, DeviceMatch, IommuConfig, TaskNames};
use capabilities::pci::*;
use iommu_api::{Handle, Operation, OwnerReport, Reply, Request};
use xorshift::XorShift;

use super::*;
use crate::memory::{TablePage, TablePages};
use crate::testing::{
    FakeKernel, FakePages, QEMU_BASE, QEMU_CAP, QEMU_CAP_CACHING, QEMU_ECAP, Simulated, function, topology, unit_parts,
};
use crate::unit::fake::FakeUnit;

const PCI: u16 = 0;
const DRIVER: u16 = 1;
const USER: u16 = 2;
const INTRUDER: u16 = 3;

fn bdf(bus: u8, device: u8) -> Bdf {
    Bdf::new(bus, device, 0).unwrap()
}

type TestService = Service<Simulated>;

fn config() -> IommuConfig {
    let names = ["pci", "edu-driver", "edu-user", "intruder"].iter().map(|n| (*n).try_into().unwrap()).collect();
    let assignments = [bdf(0, 4), bdf(1, 2)]
        .iter()
        .map(|&device| Assignment { device: DeviceMatch::Address(device), task: USER })
        .collect();
    IommuConfig {
        tasks: TaskNames(names),
        driver_core: Some(PCI),
        assignments,
        mapping_quota_pages: 64,
        address_space_quota: 2,
        table_page_quota: 256,
        ..Default::default()
    }
}

fn policy(task: u16, operations: &[Operation]) -> u64 {
    badge::policy(task, operations.iter().fold(0, |mask, op| mask | 1 << *op as u8))
}

struct Rig {
    service: TestService,
    k: FakeKernel,
}

/// The service over one QEMU unit model with `cap` and `ecap`, with
/// queued invalidation or register invalidation, and `config`; no
/// topology yet.
fn one_unit(cap: u64, ecap: u64, queued: bool, config: IommuConfig) -> TestService {
    let parts = [unit_parts(QEMU_BASE, FakeUnit::new(cap, ecap), queued)];
    Service::start(parts, FakePages::new(4096), config, 39, 0).expect("starts")
}

impl Rig {
    /// A rig around `service`, its fake kernel handing out slots from 40.
    fn around(service: TestService) -> Self {
        Self { service, k: FakeKernel { next_slot: 40, ..FakeKernel::default() } }
    }

    fn new(cap: u64) -> Self {
        Self::with_reserved(cap, heapless::Vec::new())
    }

    /// A rig whose platform has the reserved memory `regions`.
    fn with_reserved(
        cap: u64,
        regions: heapless::Vec<super::reserved::ReservedRegion, { super::reserved::MAX_REGIONS }>,
    ) -> Self {
        Self::with(cap, self::config(), topology(), regions)
    }

    /// A rig with its own configuration, topology and reserved regions.
    fn with(
        cap: u64,
        config: IommuConfig,
        functions: Vec<PciFunction>,
        regions: heapless::Vec<super::reserved::ReservedRegion, { super::reserved::MAX_REGIONS }>,
    ) -> Self {
        let mut rig = Self::around(one_unit(cap, QEMU_ECAP, true, config));
        rig.service.set_reserved_regions(regions).expect("before the topology");
        let pci = policy(PCI, &[Operation::ReportTopology]);
        let (first, rest) = functions.split_at(2);
        let chunks: Vec<&[PciFunction]> =
            core::iter::once(first).chain(rest.chunks(iommu_api::TOPOLOGY_CHUNK)).collect();
        for (index, chunk) in chunks.iter().enumerate() {
            let last = index + 1 == chunks.len();
            let request = Request::ReportTopology { functions: chunk.iter().copied().collect(), last };
            assert_eq!(rig.call(pci, request, &[]), Reply::Done);
        }
        rig
    }

    fn call(&mut self, badge: u64, request: Request, received: &[u32]) -> Reply {
        self.call_for_cap(badge, request, received).0
    }

    fn call_for_cap(&mut self, badge: u64, request: Request, received: &[u32]) -> (Reply, Option<u32>) {
        let answer = self.service.handle(&mut self.k, badge, request, received);
        (answer.reply, answer.cap)
    }

    fn unit(&mut self) -> &mut FakeUnit {
        self.service.hardware().units[0].unit.registers()
    }

    /// The domain requester `source` translates through, if any.
    fn domain_of(&mut self, source: Bdf) -> Option<u16> {
        let hw = self.service.hardware();
        hw.units[0].context.entry(&hw.pages, source.requester_id()).domain().map(|d| d.get())
    }

    /// Claims 00:03.0 for the driver; returns the DMA handle's badge.
    fn claim_kernel(&mut self, device: Bdf) -> Result<u64, Box<Reply>> {
        let pci = policy(PCI, &[Operation::ClaimKernel]);
        match self.call_for_cap(pci, Request::ClaimKernel { device, driver: DRIVER }, &[]) {
            (Reply::Group { .. }, Some(slot)) => Ok(self.k.minted[&slot]),
            (other, _) => Err(Box::new(other)),
        }
    }

    /// The user claims `device`'s group, presenting its task capability.
    fn claim_group(&mut self, task: u16, device: Bdf) -> Result<u64, Box<Reply>> {
        self.k.tasks.insert(90, task);
        let user = policy(task, &[Operation::ClaimGroup]);
        match self.call_for_cap(user, Request::ClaimGroup { device }, &[90]) {
            (Reply::Group { .. }, Some(slot)) => Ok(self.k.minted[&slot]),
            (other, _) => Err(Box::new(other)),
        }
    }

    /// Sends frame slot 91 of `pages` pages with `request`.
    fn with_frame(&mut self, badge: u64, request: Request, pages: u64) -> Reply {
        self.k.frames.insert(91, pages);
        self.call(badge, request, &[91])
    }

    /// Checks that what each requester translates through agrees with who
    /// owns its group.
    fn check_invariant(&mut self) {
        let ready = self.service.ready().expect("ready");
        let owners: Vec<(u16, crate::ownership::Owner)> = ready.ownership.owners().collect();
        let defaults = ready.defaults.clone();
        let requesters = ready.requesters.clone();
        for (group, owner) in owners {
            for &source in &requesters[usize::from(group)] {
                let domain = self.domain_of(Bdf::from_requester_id(source));
                let default = defaults[usize::from(group)] + 1;
                match owner {
                    crate::ownership::Owner::Unowned | crate::ownership::Owner::Kernel { .. } => {
                        assert_eq!(domain, Some(default), "group {group} must use its default domain")
                    }
                    _ => assert_ne!(domain, Some(default), "group {group} is {owner:?}, yet translates by default"),
                }
            }
        }
    }
}

/// The id an `IoasCreate` answered with.
fn ioas_of(reply: Reply) -> u16 {
    match reply {
        Reply::Ioas { ioas } => ioas,
        other => panic!("expected an address space, got {other:?}"),
    }
}

/// Asserts that `reply` refuses with `code` and a reason naming each of `words`.
#[track_caller]
fn assert_refused(reply: &Reply, code: ErrorCode, words: &[&str]) {
    let (refused, reason) = refusal(reply);
    assert_eq!(refused, code, "{reason}");
    for word in words {
        assert!(reason.contains(word), "{word:?} missing from {reason:?}");
    }
}

fn refusal(reply: &Reply) -> (ErrorCode, String) {
    match reply {
        Reply::Refused { code, reason } => (*code, reason.to_string()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn translation_is_on_from_the_start_and_every_requester_blocked_until_the_topology() {
    let mut service = one_unit(QEMU_CAP, QEMU_ECAP, true, self::config());
    assert!(service.hardware().units[0].unit.translation_enabled(), "on before any device can be handed out");
    for device in [bdf(0, 3), bdf(0, 4), bdf(0, 5), bdf(1, 1), Bdf::new(1, 0, 0).unwrap()] {
        let hw = service.hardware();
        assert!(!hw.units[0].context.entry(&hw.pages, device.requester_id()).is_present(), "{device} is blocked");
    }
    let mut k = FakeKernel::default();
    let answer =
        service.handle(&mut k, policy(USER, &[Operation::ClaimGroup]), Request::ClaimGroup { device: bdf(0, 4) }, &[]);
    assert_eq!(refusal(&answer.reply).0, ErrorCode::Busy, "nothing is served before the topology");
    let mut rig = Rig::new(QEMU_CAP);
    assert!(rig.service.hardware().units[0].unit.translation_enabled());
    let ready = rig.service.ready().expect("ready");
    assert_eq!(ready.groups.count(), 3);
    for device in [bdf(0, 3), bdf(0, 4), bdf(0, 5), bdf(1, 1), bdf(1, 2)] {
        assert!(rig.domain_of(device).is_some() || device.bus() == 1, "{device} has a domain");
    }
    let alias = Bdf::new(1, 0, 0).unwrap();
    assert!(rig.domain_of(alias).is_some(), "DMA from behind the bridge arrives as 01:00.0 and is translated");
    assert!(rig.unit().violations.is_empty(), "{:?}", rig.unit().violations);
}

#[test]
fn a_driver_and_a_user_never_share_a_group() {
    let mut rig = Rig::new(QEMU_CAP);
    rig.claim_kernel(bdf(0, 3)).expect("unowned group");
    rig.claim_group(USER, bdf(0, 4)).expect("00:04.0 is a group of its own");
    assert!(matches!(
        rig.service.ready().unwrap().ownership.owner(1),
        Ok(crate::ownership::Owner::User { task: USER, .. })
    ));
    // Behind the bridge: the driver takes 01:01.0, so the user may not have 01:02.0 (same group).
    rig.claim_kernel(bdf(1, 1)).expect("unowned group");
    let reply = rig.claim_group(USER, bdf(1, 2)).expect_err("kernel-owned");
    let (code, reason) = refusal(&reply);
    assert_eq!(code, ErrorCode::Busy);
    assert!(reason.contains("edu-driver on 01:01.0"), "names the holder: {reason}");
    assert!(
        reason.contains("01:01.0") && reason.contains("01:02.0") && reason.contains("00:05.0"),
        "names every member: {reason}"
    );
    assert!(reason.contains("alias through"), "says why they share: {reason}");
    // And the other way: a driver cannot claim the user's group.
    let reply = rig.claim_kernel(bdf(0, 4)).expect_err("user-owned");
    assert!(refusal(&reply).1.contains("owned by user task edu-user"));
    rig.check_invariant();
}

#[test]
fn a_user_task_needs_an_assignment_its_own_task_capability_and_the_claim_right() {
    let mut rig = Rig::new(QEMU_CAP);
    let reply = rig.claim_group(INTRUDER, bdf(0, 4)).expect_err("not assigned");
    assert_eq!(refusal(&reply).0, ErrorCode::PermissionDenied);
    rig.k.tasks.insert(90, INTRUDER);
    let reply = rig.call(policy(USER, &[Operation::ClaimGroup]), Request::ClaimGroup { device: bdf(0, 4) }, &[90]);
    assert!(refusal(&reply).1.contains("own task capability"), "someone else's task capability is refused");
    let reply = rig.call(policy(USER, &[Operation::Owner]), Request::ClaimGroup { device: bdf(0, 4) }, &[]);
    assert!(refusal(&reply).1.contains("does not grant edu-user `claim-group`"));
    let reply =
        rig.call(policy(USER, &[Operation::ClaimGroup]), Request::DmaMap { writable: true, mask_bits: 28 }, &[]);
    assert_eq!(refusal(&reply).0, ErrorCode::PermissionDenied, "the DMA API needs a DMA handle");
    assert_eq!(refusal(&rig.call(0, Request::Stats, &[])).0, ErrorCode::PermissionDenied, "an unbadged capability");
    rig.check_invariant();
}

#[test]
fn the_dma_api_maps_within_the_mask_and_unmaps_after_invalidating() {
    let mut rig = Rig::new(QEMU_CAP);
    let handle = rig.claim_kernel(bdf(0, 3)).expect("claims");
    let reply = rig.with_frame(handle, Request::DmaMap { writable: true, mask_bits: 28 }, 4);
    let Reply::Mapped { iova } = reply else { panic!("{reply:?}") };
    assert!(iova > 0 && iova + 4 * 4096 <= 1 << 28, "inside the 28-bit mask, never page 0");
    let physical = {
        let table = &rig.service.domains().get(0).unwrap().table;
        table.translate(&rig.service.hw.pages, iova + 0x1234).map(|t| t.physical)
    };
    assert_eq!(physical, Some(0x4010_0000 + 0x1234));
    assert_eq!(rig.k.pins.len(), 1);
    let events_before = rig.unit().events.len();
    assert_eq!(rig.call(handle, Request::DmaUnmap { iova }, &[]), Reply::Done);
    assert!(rig.unit().events.len() > events_before, "the IOTLB was invalidated");
    assert!(rig.k.pins.is_empty(), "the frame is unpinned after the invalidation");
    let table = &rig.service.domains().get(0).unwrap().table;
    assert_eq!(table.translate(&rig.service.hw.pages, iova), None);
    assert_eq!(refusal(&rig.call(handle, Request::DmaUnmap { iova }, &[])).0, ErrorCode::NotMapped);
    let reply = rig.with_frame(handle, Request::DmaMap { writable: false, mask_bits: 28 }, 128);
    assert_eq!(refusal(&reply).0, ErrorCode::QuotaExceeded, "64 pages per handle");
    assert!(rig.k.pins.is_empty(), "a refused map keeps no pin");
    assert_eq!(
        refusal(&rig.call(handle, Request::DmaMap { writable: true, mask_bits: 28 }, &[])).0,
        ErrorCode::InvalidArgument
    );
}

#[test]
fn releasing_a_driver_unmaps_its_frames_and_kills_its_handle() {
    let mut rig = Rig::new(QEMU_CAP);
    let handle = rig.claim_kernel(bdf(0, 3)).expect("claims");
    for _ in 0..3 {
        assert!(matches!(
            rig.with_frame(handle, Request::DmaMap { writable: true, mask_bits: 28 }, 2),
            Reply::Mapped { .. }
        ));
    }
    let pci = policy(PCI, &[Operation::ReleaseKernel]);
    assert_eq!(rig.call(pci, Request::ReleaseKernel { device: bdf(0, 3), driver: DRIVER }, &[]), Reply::Done);
    assert!(rig.k.pins.is_empty());
    assert_eq!(rig.k.revoked.len(), 1, "the handle's every copy is revoked");
    assert_eq!(
        refusal(&rig.with_frame(handle, Request::DmaMap { writable: true, mask_bits: 28 }, 1)).0,
        ErrorCode::InvalidCapability
    );
    rig.claim_group(USER, bdf(0, 3)).expect_err("not assigned");
    rig.check_invariant();
}

#[test]
fn a_user_builds_an_address_space_maps_reads_faults_and_releases() {
    let mut rig = Rig::new(QEMU_CAP);
    let group_cap = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    assert!(rig.k.watched.contains(&USER));
    assert_eq!(rig.domain_of(bdf(0, 4)), None, "blocked until attached");
    let Reply::Ioas { ioas } = rig.call(group_cap, Request::IoasCreate, &[]) else { panic!() };
    assert_eq!(rig.call(group_cap, Request::Attach { ioas: Some(ioas) }, &[]), Reply::Done);
    assert!(rig.domain_of(bdf(0, 4)).is_some());
    let reply = rig.with_frame(group_cap, Request::Map { ioas, iova: 0x10_0000, writable: true }, 1);
    assert_eq!(reply, Reply::Mapped { iova: 0x10_0000 });
    let reply = rig.with_frame(group_cap, Request::Map { ioas, iova: 0x10_0000, writable: true }, 1);
    assert_eq!(refusal(&reply).0, ErrorCode::AlreadyMapped);
    assert!(rig.k.pins.len() == 1, "the refused frame was unpinned");
    let high = crate::registers::frcd::F | 6u64 << 32 | u64::from(bdf(0, 4).requester_id());
    rig.unit().inject_fault(0, 0x10_1000, high);
    assert_eq!(rig.service.drain_faults(0).records, 1);
    assert_eq!(rig.service.ready().unwrap().faults[1].len(), 1, "attributed to the user's group");
    rig.unit().inject_fault(0, 0x10_2000, high);
    let Reply::Faults { records, remaining, dropped } = rig.call(group_cap, Request::Faults, &[]) else { panic!() };
    assert_eq!((records.len(), remaining, dropped), (2, 0, 0), "reading the log drains the unit first");
    assert_eq!(records[0].address, 0x10_1000);
    assert_eq!(records[1].address, 0x10_2000);
    assert_eq!(
        refusal(&rig.call(group_cap, Request::Unmap { ioas: ioas + 1, iova: 0x10_0000 }, &[])).0,
        ErrorCode::NotFound
    );
    assert_eq!(rig.call(group_cap, Request::Unmap { ioas, iova: 0x10_0000 }, &[]), Reply::Done);
    assert_eq!(rig.call(group_cap, Request::Release, &[]), Reply::Done);
    assert_eq!(rig.domain_of(bdf(0, 4)), None, "blocked while reclaiming");
    assert_eq!(rig.k.reclaims, 1, "the PCI server is told");
    let pci = policy(PCI, &[Operation::PendingReclaims, Operation::Reclaimed, Operation::Owner]);
    let reply = rig.call(pci, Request::PendingReclaims { group: 0, offset: 0 }, &[]);
    let Reply::Reclaims { page: Some(page) } = reply else { panic!("{reply:?}") };
    assert_eq!((page.group, page.offset, page.total), (1, 0, 1));
    assert_eq!(page.members.as_slice(), &[bdf(0, 4)]);
    assert_eq!(rig.call(pci, Request::PendingReclaims { group: 2, offset: 0 }, &[]), Reply::Reclaims { page: None });
    assert_eq!(refusal(&rig.call(group_cap, Request::IoasCreate, &[])).0, ErrorCode::InvalidCapability, "released");
    assert_eq!(rig.call(pci, Request::Reclaimed { group: 1, quiesced: 1 }, &[]), Reply::Done);
    assert_eq!(
        rig.call(pci, Request::Owner { device: bdf(0, 4) }, &[]),
        Reply::Owner { group: 1, owner: OwnerReport::Unowned }
    );
    rig.check_invariant();
}

#[test]
fn only_faults_spend_the_log_limiters_tokens() {
    // Every Faults request drains the unit first; draining nothing must
    // not use up the log's burst, or the first real fault after a few
    // reads goes unlogged depending on how fast the reads came.
    let mut rig = Rig::new(QEMU_CAP);
    let group_cap = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    for _ in 0..100 {
        assert_eq!(rig.service.drain_faults(0).records, 0);
    }
    let high = crate::registers::frcd::F | 6u64 << 32 | u64::from(bdf(0, 4).requester_id());
    rig.unit().inject_fault(0, 0x10_1000, high);
    assert!(matches!(rig.call(group_cap, Request::Faults, &[]), Reply::Faults { .. }));
    assert_eq!(rig.service.limiter.take_suppressed(), 0, "the fault's line was logged");
}

#[test]
fn a_dead_owners_groups_are_blocked_and_its_mappings_unpinned() {
    let mut rig = Rig::new(QEMU_CAP_CACHING);
    let group_cap = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    let Reply::Ioas { ioas } = rig.call(group_cap, Request::IoasCreate, &[]) else { panic!() };
    rig.call(group_cap, Request::Attach { ioas: Some(ioas) }, &[]);
    for index in 0..5 {
        let reply = rig.with_frame(group_cap, Request::Map { ioas, iova: 0x10_0000 * (index + 1), writable: true }, 2);
        assert!(matches!(reply, Reply::Mapped { .. }));
    }
    rig.service.task_died(&mut rig.k, USER);
    assert!(rig.k.pins.is_empty(), "nothing the dead task mapped stays reachable");
    assert_eq!(rig.domain_of(bdf(0, 4)), None);
    assert!(rig.k.minted.is_empty(), "its group capability is revoked");
    assert!(rig.unit().violations.is_empty(), "{:?}", rig.unit().violations);
    rig.check_invariant();
}

#[test]
fn reserved_regions_are_identity_mapped_and_keep_their_groups_kernel_owned() {
    use super::reserved::{ReservedRegion, ScopePath};
    let path = ScopePath { start_bus: 0, hops: heapless::Vec::from_slice(&[(4, 0)]).unwrap() };
    let region =
        ReservedRegion { base: 0xe_8000, limit: 0xe_9fff, scopes: heapless::Vec::from_slice(&[path]).unwrap() };
    let mut rig = Rig::with_reserved(QEMU_CAP, heapless::Vec::from_slice(&[region]).unwrap());
    let group = rig.service.ready().unwrap().groups.group_of(bdf(0, 4)).unwrap().0;
    let default = rig.service.ready().unwrap().defaults[usize::from(group)];
    let translated = {
        let table = &rig.service.domains().get(default).unwrap().table;
        table.translate(&rig.service.hw.pages, 0xe_9abc).map(|t| t.physical)
    };
    assert_eq!(translated, Some(0xe_9abc), "one to one, from before translation is on");
    let refused = rig.claim_group(USER, bdf(0, 4)).expect_err("kernel-owned only");
    assert_refused(&refused, ErrorCode::PermissionDenied, &["00:04.0", "reserved memory region"]);
    let handle = rig.claim_kernel(bdf(0, 4)).expect("a trusted driver may have it");
    let reply = rig.with_frame(handle, Request::DmaMap { writable: true, mask_bits: 32 }, 64);
    let Reply::Mapped { iova } = reply else { panic!("{reply:?}") };
    assert!(iova + 64 * 4096 <= 0xe_8000 || iova > 0xe_9fff, "the DMA API never hands out the region");
    assert_eq!(rig.service.set_reserved_regions(heapless::Vec::new()), Err(ErrorCode::Busy), "too late");
    rig.check_invariant();
}

/// The usual topology plus a multifunction edu pair at 00:07.0 and
/// 00:07.1 (conventional: no ACS, so Linux groups them together), the
/// second assigned to the user too.
fn with_multifunction_pair(assertion: Option<(u16, u16)>) -> Rig {
    use capabilities::config::{AssertedAt, IsolationAssertion};
    let mut functions = topology();
    for number in 0..2 {
        let mut pair = function(0, 7, number, HeaderKind::Normal, None);
        pair.multifunction = true;
        functions.push(pair);
    }
    let mut settings = config();
    settings
        .assignments
        .push(Assignment { device: DeviceMatch::Address(Bdf::new(0, 7, 1).unwrap()), task: USER })
        .unwrap();
    if let Some((vendor, device_id)) = assertion {
        let assertion = IsolationAssertion {
            name: "edu-pair".try_into().unwrap(),
            at: AssertedAt::Device { bus: 0, device: 7 },
            vendor,
            device_id,
            reason: "edu functions share no path inside the device".try_into().unwrap(),
        };
        settings.assertions.push(assertion).unwrap();
    }
    Rig::with(QEMU_CAP, settings, functions, heapless::Vec::new())
}

#[test]
fn an_isolation_assertion_splits_exactly_its_device_and_explains_itself() {
    let (a, b) = (Bdf::new(0, 7, 0).unwrap(), Bdf::new(0, 7, 1).unwrap());
    let plain = with_multifunction_pair(None);
    let groups = &plain.service.ready().unwrap().groups;
    assert_eq!(groups.group_of(a), groups.group_of(b), "without ACS, one group");
    let mut rig = with_multifunction_pair(Some((0x1234, 0x11e8)));
    let ready = rig.service.ready().unwrap();
    assert_ne!(ready.groups.group_of(a), ready.groups.group_of(b), "the assertion splits the pair");
    assert_eq!(ready.groups.count(), plain.service.ready().unwrap().groups.count() + 1, "and nothing else");
    let group_b = ready.groups.group_of(b).unwrap().0;
    let handle = rig.claim_kernel(a).expect("a trusted driver on one function");
    assert!(handle != 0);
    rig.claim_group(USER, b).expect("a user task on the other");
    let info = rig.call(policy(USER, &[Operation::Groups]), Request::Groups { group: group_b, offset: 0 }, &[]);
    let Reply::GroupInfo { reasons, .. } = info else { panic!("{info:?}") };
    assert!(reasons.contains("the policy asserts (`edu-pair`) that 00:07.0, 00:07.1 are isolated"), "{reasons}");
    rig.check_invariant();
}

#[test]
fn an_assertion_on_a_device_of_another_identity_is_void() {
    let rig = with_multifunction_pair(Some((0x8086, 0x10d3)));
    let ready = rig.service.ready().unwrap();
    let (a, b) = (Bdf::new(0, 7, 0).unwrap(), Bdf::new(0, 7, 1).unwrap());
    assert_eq!(ready.groups.group_of(a), ready.groups.group_of(b), "the pair stays together");
    assert!(ready.asserted.is_empty());
}

#[test]
fn a_waiver_lets_a_user_own_a_reserved_region_device() {
    use super::reserved::{ReservedRegion, ScopePath};
    let path = ScopePath { start_bus: 0, hops: heapless::Vec::from_slice(&[(4, 0)]).unwrap() };
    let region =
        ReservedRegion { base: 0xe_8000, limit: 0xe_8fff, scopes: heapless::Vec::from_slice(&[path]).unwrap() };
    let mut settings = config();
    let waiver = capabilities::config::ReservedRegionWaiver {
        device: bdf(0, 4),
        reason: "the firmware's USB emulation is off once the OS runs".try_into().unwrap(),
    };
    settings.waivers.push(waiver).unwrap();
    let mut rig = Rig::with(QEMU_CAP, settings, topology(), heapless::Vec::from_slice(&[region]).unwrap());
    rig.claim_group(USER, bdf(0, 4)).expect("waived");
    rig.check_invariant();
}

#[test]
fn a_frame_sent_without_the_write_right_is_never_mapped_device_writable() {
    let mut rig = Rig::new(QEMU_CAP);
    let handle = rig.claim_kernel(bdf(0, 3)).expect("claims");
    rig.k.read_only.insert(91);
    let reply = rig.with_frame(handle, Request::DmaMap { writable: true, mask_bits: 32 }, 1);
    assert_eq!(refusal(&reply).0, ErrorCode::PermissionDenied);
    assert!(rig.k.pins.is_empty(), "the refused frame is unpinned");
    let reply = rig.with_frame(handle, Request::DmaMap { writable: false, mask_bits: 32 }, 1);
    assert!(matches!(reply, Reply::Mapped { .. }), "read-only for the device is fine");
    let group_cap = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    let Reply::Ioas { ioas } = rig.call(group_cap, Request::IoasCreate, &[]) else { panic!() };
    let reply = rig.with_frame(group_cap, Request::Map { ioas, iova: 0x10_0000, writable: true }, 1);
    assert_eq!(refusal(&reply).0, ErrorCode::PermissionDenied, "the same for a user's address space");
    rig.check_invariant();
}

#[test]
fn a_map_that_runs_out_of_table_pages_part_way_invalidates_before_unpinning() {
    let mut rig = Rig::new(QEMU_CAP);
    let group_cap = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    let Reply::Ioas { ioas } = rig.call(group_cap, Request::IoasCreate, &[]) else { panic!() };
    assert_eq!(rig.call(group_cap, Request::Attach { ioas: Some(ioas) }, &[]), Reply::Done);
    let first = rig.with_frame(group_cap, Request::Map { ioas, iova: 0x1f_0000, writable: true }, 1);
    assert!(matches!(first, Reply::Mapped { .. }), "{first:?}");
    // No table page left: a run across the next 2 MiB boundary maps its
    // first page in the existing leaf table, then stops.
    let pages = &mut rig.service.hardware().pages;
    pages.budget = pages.pages.len();
    let events_before = rig.unit().events.len();
    let reply = rig.with_frame(group_cap, Request::Map { ioas, iova: 0x1f_f000, writable: true }, 2);
    assert_eq!(refusal(&reply).0, ErrorCode::OutOfMemory);
    assert!(rig.unit().events.len() > events_before, "the briefly mapped page was invalidated");
    assert_eq!(rig.k.pins.len(), 1, "only the first mapping keeps its pin");
    rig.check_invariant();
}

#[test]
fn a_release_takes_the_address_spaces_no_group_uses_so_claim_cycles_never_run_dry() {
    let mut rig = Rig::new(QEMU_CAP);
    let pages_at_rest = rig.service.hardware().pages.in_use();
    let pci = policy(PCI, &[Operation::Reclaimed]);
    for cycle in 0..10 {
        let group_cap = rig.claim_group(USER, bdf(0, 4)).expect("assigned and unowned");
        let Reply::Ioas { ioas } = rig.call(group_cap, Request::IoasCreate, &[]) else { panic!("cycle {cycle}") };
        assert_eq!(rig.call(group_cap, Request::Attach { ioas: Some(ioas) }, &[]), Reply::Done);
        let reply = rig.with_frame(group_cap, Request::Map { ioas, iova: 0x10_0000, writable: true }, 2);
        assert!(matches!(reply, Reply::Mapped { .. }));
        assert_eq!(rig.call(group_cap, Request::Release, &[]), Reply::Done);
        assert!(rig.k.pins.is_empty(), "the released space's mappings are gone");
        assert_eq!(rig.call(pci, Request::Reclaimed { group: 1, quiesced: 1 }, &[]), Reply::Done);
    }
    assert_eq!(rig.service.ready().unwrap().address_spaces.len(), 0);
    assert_eq!(rig.service.hardware().pages.in_use(), pages_at_rest, "no table page leaked");
    rig.check_invariant();
}

#[test]
fn random_request_sequences_keep_the_invariant_and_leak_nothing() {
    let mut rig = Rig::new(QEMU_CAP_CACHING);
    let baseline_pages = rig.service.hw.pages.in_use();
    let mut random = XorShift::new(0x1234_5678_9abc_def1);
    let devices = [bdf(0, 3), bdf(0, 4), bdf(1, 1), bdf(1, 2)];
    let mut handles: Vec<u64> = Vec::new();
    let mut caps: Vec<u64> = Vec::new();
    let all_ops: Vec<Operation> = (0..9).map(operation_number).collect();
    for _ in 0..3000 {
        let device = devices[random.below(4) as usize];
        match random.below(10) {
            0 => {
                if let Ok(handle) = rig.claim_kernel(device) {
                    handles.push(handle);
                }
            }
            1 if !handles.is_empty() => {
                let handle = handles.swap_remove(random.below(handles.len() as u64) as usize);
                if let Some(Handle::Dma { group, .. }) = Handle::from_badge(handle) {
                    let device =
                        rig.service.ready().unwrap().handles.iter().find(|h| h.group == group).map(|h| h.device);
                    if let Some(device) = device {
                        rig.call(policy(PCI, &all_ops), Request::ReleaseKernel { device, driver: DRIVER }, &[]);
                    }
                }
            }
            2 => {
                if let Ok(cap) = rig.claim_group(USER, device) {
                    caps.push(cap);
                }
            }
            3 if !caps.is_empty() => {
                let cap = caps[random.below(caps.len() as u64) as usize];
                let ioas = random.below(3) as u16;
                let choice = if random.below(2) == 0 { None } else { Some(ioas) };
                if let Reply::Ioas { .. } = rig.call(cap, Request::IoasCreate, &[]) {}
                rig.call(cap, Request::Attach { ioas: choice }, &[]);
            }
            4 if !caps.is_empty() => {
                let cap = caps[random.below(caps.len() as u64) as usize];
                let iova = (1 + random.below(8)) * 0x1000;
                rig.with_frame(
                    cap,
                    Request::Map { ioas: random.below(3) as u16, iova, writable: true },
                    1 << random.below(3),
                );
                rig.call(
                    cap,
                    Request::Unmap { ioas: random.below(3) as u16, iova: (1 + random.below(8)) * 0x1000 },
                    &[],
                );
            }
            5 if !handles.is_empty() => {
                let handle = handles[random.below(handles.len() as u64) as usize];
                if let Reply::Mapped { iova } =
                    rig.with_frame(handle, Request::DmaMap { writable: true, mask_bits: 28 }, 1)
                    && random.below(2) == 0
                {
                    rig.call(handle, Request::DmaUnmap { iova }, &[]);
                }
            }
            6 if !caps.is_empty() => {
                let cap = caps.swap_remove(random.below(caps.len() as u64) as usize);
                rig.call(cap, Request::Release, &[]);
            }
            7 => {
                rig.service.task_died(&mut rig.k, USER);
                caps.clear();
            }
            _ => {
                reclaim_every_group(&mut rig, policy(PCI, &all_ops));
            }
        }
        rig.check_invariant();
    }
    // Tear everything down: every pin, handle and table page comes back.
    rig.service.task_died(&mut rig.k, USER);
    let pci = policy(PCI, &all_ops);
    let held: Vec<(Bdf, u16)> = rig.service.ready().unwrap().handles.iter().map(|h| (h.device, h.driver)).collect();
    for (device, driver) in held {
        assert_eq!(rig.call(pci, Request::ReleaseKernel { device, driver }, &[]), Reply::Done);
    }
    reclaim_every_group(&mut rig, pci);
    assert!(rig.k.pins.is_empty(), "leaked pins: {:?}", rig.k.pins);
    assert!(rig.k.minted.is_empty(), "leaked minted capabilities");
    assert_eq!(rig.service.hw.pages.in_use(), baseline_pages, "leaked table pages");
    assert!(rig.unit().violations.is_empty(), "{:?}", rig.unit().violations);
}

/// Answers every pending reclaim as the PCI server would, with each
/// group's member count (groups here have fewer than a page of members).
fn reclaim_every_group(rig: &mut Rig, pci: u64) {
    while let Reply::Reclaims { page: Some(page) } =
        rig.call(pci, Request::PendingReclaims { group: 0, offset: 0 }, &[])
    {
        assert_eq!(rig.call(pci, Request::Reclaimed { group: page.group, quiesced: page.total }, &[]), Reply::Done);
    }
}

/// A PCIe-to-PCI bridge at 00:05.0 with twenty edus behind it (01:01.0 to
/// 01:14.0, one group of 21), all assigned to the user, who claimed the
/// group and released it: it waits for the PCI server to reclaim it.
fn twenty_edus_released() -> Rig {
    let mut bridge = function(0, 5, 0, HeaderKind::PciBridge, Some(PcieDeviceType::PcieToPciBridge));
    bridge.bridge = Some(BridgeBuses { primary: 0, secondary: 1, subordinate: 1 });
    let mut functions = vec![function(0, 3, 0, HeaderKind::Normal, None), bridge];
    functions.extend((1..=20).map(|slot| function(1, slot, 0, HeaderKind::Normal, None)));
    let mut rig = Rig::with(QEMU_CAP, config(), functions, heapless::Vec::new());
    let group_cap = rig.claim_group(USER, bdf(1, 2)).expect("assigned");
    assert_eq!(rig.call(group_cap, Request::Release, &[]), Reply::Done);
    rig
}

#[test]
fn pending_reclaims_list_a_group_of_any_size_page_by_page() {
    let mut rig = twenty_edus_released();
    let pci = policy(PCI, &[Operation::PendingReclaims, Operation::Reclaimed]);
    let mut listed = Vec::new();
    let mut offset = 0;
    while let Reply::Reclaims { page: Some(page) } = rig.call(pci, Request::PendingReclaims { group: 1, offset }, &[]) {
        assert_eq!((page.group, page.offset, page.total), (1, offset, 21));
        assert!(!page.members.is_empty() && page.members.len() <= iommu_api::RECLAIM_PAGE);
        listed.extend(page.members.iter().copied());
        offset += page.members.len() as u16;
        if offset == page.total {
            break;
        }
    }
    assert_eq!(listed.len(), 21, "every member, each once");
    assert_eq!(listed.last(), Some(&bdf(1, 20)));
    // Past the last member, the page is empty; past the group, none.
    let reply = rig.call(pci, Request::PendingReclaims { group: 1, offset: 21 }, &[]);
    assert!(matches!(reply, Reply::Reclaims { page: Some(ref page) } if page.members.is_empty()), "{reply:?}");
    assert_eq!(rig.call(pci, Request::PendingReclaims { group: 2, offset: 0 }, &[]), Reply::Reclaims { page: None });
    assert_eq!(rig.call(pci, Request::Reclaimed { group: 1, quiesced: 21 }, &[]), Reply::Done);
    rig.check_invariant();
}

#[test]
fn reclaimed_is_refused_unless_the_pci_server_quiesced_every_member() {
    let mut rig = twenty_edus_released();
    let pci = policy(PCI, &[Operation::Reclaimed, Operation::Owner]);
    for quiesced in [0, 16, 20, 22, u16::MAX] {
        let reply = rig.call(pci, Request::Reclaimed { group: 1, quiesced }, &[]);
        let (code, reason) = refusal(&reply);
        assert_eq!(code, ErrorCode::InvalidArgument, "{quiesced}");
        assert!(reason.contains("group 1 has 21 members"), "{reason}");
        let owner = rig.call(pci, Request::Owner { device: bdf(1, 20) }, &[]);
        assert_eq!(owner, Reply::Owner { group: 1, owner: OwnerReport::Reclaiming { task: USER } }, "still blocked");
        assert_eq!(rig.domain_of(bdf(1, 0)), None, "the alias translates through nothing");
    }
    assert_eq!(rig.call(pci, Request::Reclaimed { group: 1, quiesced: 21 }, &[]), Reply::Done);
    let owner = rig.call(pci, Request::Owner { device: bdf(1, 20) }, &[]);
    assert_eq!(owner, Reply::Owner { group: 1, owner: OwnerReport::Unowned });
    rig.check_invariant();
}

/// Operation number `n` (all nine exist).
fn operation_number(n: u8) -> Operation {
    [
        Operation::ReportTopology,
        Operation::ClaimKernel,
        Operation::ReleaseKernel,
        Operation::Owner,
        Operation::PendingReclaims,
        Operation::Reclaimed,
        Operation::ClaimGroup,
        Operation::Groups,
        Operation::Stats,
    ][usize::from(n)]
}

#[test]
fn the_service_fits_twice_on_the_servers_stack() {
    // The bin builds it on its 8 MiB stack and moves it once, and forms
    // the groups beside it.
    assert!(core::mem::size_of::<TestService>() < 2048 * 1024, "{} bytes", core::mem::size_of::<TestService>());
}

mod death;
mod faults;
mod interrupts;
mod isolation;
mod ranges;
mod spaces;
mod units;
