//! The IOMMU server as a state machine: sequences of requests, deaths and faults, invariants after each.
//!
//! `iommu-service` drives `Service::handle` on QEMU's unit model with the
//! simulated kernel and table memory: claims by drivers and users, address
//! spaces, maps with frames of any rights, unmaps, releases, reclaims,
//! deaths, faults and requests from a task holding any badge. After every
//! step it checks what the design promises:
//!
//! * no group has a DMA handle and a user owner at once;
//! * every requester id translates through its group owner's domain (the
//!   default domain if unowned or kernel-owned, the attached address space
//!   if user-owned, nothing otherwise);
//! * every mapping translates to the frame its pin holds, device-writable
//!   only if the pin allows device writes;
//! * the pins alive are exactly the mappings' pins.
//!
//! At the end every owner dies or is released and reclaimed: no pin, no
//! mapping and no table page beyond the default domains' may be left.

use std::collections::BTreeSet;

use capabilities::badge;
use capabilities::config::{Assignment, DeviceMatch, IommuConfig, TaskNames};
use capabilities::pci::Bdf;
use iommu_api::{Handle, Reply, Request};
use iommu_server::memory::TablePages;
use iommu_server::ownership::Owner;
use iommu_server::service::Service;
use iommu_server::testing::{
    FakeKernel, FakePages, QEMU_BASE, QEMU_CAP, QEMU_CAP_CACHING, QEMU_ECAP, Simulated, topology, unit_parts,
};
use iommu_server::unit::fake::FakeUnit;

use crate::input::Input;

/// Tasks: the PCI server, two drivers, two users, an intruder.
const PCI: u16 = 0;
const DRIVERS: [u16; 2] = [1, 2];
const USERS: [u16; 2] = [3, 4];
const INTRUDER: u16 = 5;
/// Slots the fake kernel brings frames and task capabilities in.
const FRAME_SLOT: u32 = 91;
const TASK_SLOT: u32 = 90;

fn bdf(bus: u8, device: u8) -> Bdf {
    Bdf::new(bus, device, 0).expect("a valid address")
}

/// Every device a request may name: those of `testing::topology` (groups
/// {00:03.0}, {00:04.0}, {00:05.0, 01:01.0, 01:02.0}) and one in no group.
const DEVICES: [(u8, u8); 6] = [(0, 3), (0, 4), (0, 5), (1, 1), (1, 2), (2, 0)];

fn config() -> IommuConfig {
    let names = ["pci", "driver-a", "driver-b", "user-a", "user-b", "intruder"];
    let assignments = USERS
        .iter()
        .flat_map(|&task| {
            DEVICES[..5]
                .iter()
                .map(move |&(bus, device)| Assignment { device: DeviceMatch::Address(bdf(bus, device)), task })
        })
        .take(capabilities::config::MAX_DEVICE_RULES)
        .collect();
    IommuConfig {
        tasks: TaskNames(names.iter().map(|name| (*name).try_into().expect("short")).collect()),
        driver_core: Some(PCI),
        assignments,
        mapping_quota_pages: 64,
        address_space_quota: 2,
        table_page_quota: 24,
        ..IommuConfig::default()
    }
}

/// The service on QEMU's unit model, with or without caching mode, and a
/// table-page budget from tight to ample; boxed, as it is some 160 KiB,
/// too big to move around a test thread's stack in debug builds.
pub(crate) fn start(input: &mut Input<'_>, config: IommuConfig) -> Option<Box<Service<Simulated>>> {
    let fake = FakeUnit::new([QEMU_CAP, QEMU_CAP_CACHING][input.below(2)], QEMU_ECAP);
    let budget = [48, 96, 4096][input.below(3)];
    let service = Service::start([unit_parts(QEMU_BASE, fake, true)], FakePages::new(budget), config, 39, 0);
    service.ok().map(Box::new)
}

/// The service under test, its kernel, and the capabilities handed out.
struct Machine {
    service: Box<Service<Simulated>>,
    k: FakeKernel,
    /// Badges of live DMA handles and group capabilities, as minted.
    handles: Vec<u64>,
    /// Address-space ids seen.
    spaces: Vec<u16>,
    /// Table pages in use once the topology is in.
    pages_at_rest: usize,
}

impl Machine {
    fn new(input: &mut Input<'_>) -> Option<Self> {
        let mut machine = Self {
            service: start(input, config())?,
            k: FakeKernel { next_slot: 40, ..FakeKernel::default() },
            handles: Vec::new(),
            spaces: Vec::new(),
            pages_at_rest: 0,
        };
        let report = Request::ReportTopology { functions: topology().into_iter().collect(), last: true };
        if machine.call(policy(PCI), report, &[]) != Reply::Done {
            return None;
        }
        machine.pages_at_rest = machine.service.hardware().pages.in_use();
        Some(machine)
    }

    /// Handles `request` from `badge`, keeping any capability minted.
    fn call(&mut self, badge: u64, request: Request, received: &[u32]) -> Reply {
        let answer = self.service.handle(&mut self.k, badge, request, received);
        if let Some(slot) = answer.cap {
            self.handles.push(self.k.minted[&slot]);
        }
        if let Reply::Ioas { ioas } = answer.reply {
            self.spaces.push(ioas);
        }
        self.handles.retain(|badge| self.k.minted.values().any(|minted| minted == badge));
        answer.reply
    }

    /// One step the input chooses.
    fn step(&mut self, input: &mut Input<'_>) {
        let device = device(input);
        match input.below(12) {
            0 => {
                let driver = DRIVERS[input.below(2)];
                self.call(policy(PCI), Request::ClaimKernel { device, driver }, &[]);
            }
            1 => {
                let driver = DRIVERS[input.below(2)];
                self.call(policy(PCI), Request::ReleaseKernel { device, driver }, &[]);
            }
            2 => {
                let task = USERS[input.below(2)];
                self.k.tasks.insert(TASK_SLOT, task);
                self.call(policy(task), Request::ClaimGroup { device }, &[TASK_SLOT]);
            }
            3..=5 => self.on_handle(input),
            6 => {
                let lie = input.below(8) == 0;
                self.reclaim_all(lie);
            }
            7 => self.service.task_died(&mut self.k, USERS[input.below(2)]),
            8 => {
                let high = 1 << 63 | u64::from(input.below(13) as u8) << 32 | u64::from(device.requester_id());
                self.service.hardware().units[0].unit.registers().inject_fault(0, u64::from(input.u16()) << 12, high);
                self.service.drain_faults(0);
            }
            9 => {
                let task = [INTRUDER, USERS[0], DRIVERS[0]][input.below(3)];
                let request = random_request(input, device);
                let operations = u64::from(input.u16());
                self.with_frame(input, badge::policy(task, operations), request);
            }
            10 => {
                // A minted badge of a handle that was never minted.
                let handle = if input.bool() {
                    Handle::Dma { group: input.below(4) as u16, serial: input.u32() }
                } else {
                    Handle::Group { group: input.below(4) as u16, serial: input.u32() }
                };
                let request = random_request(input, device);
                self.with_frame(input, handle.badge(), request);
            }
            _ => {
                self.call(policy(PCI), Request::Owner { device }, &[]);
            }
        }
    }

    /// A request on a live DMA handle or group capability.
    fn on_handle(&mut self, input: &mut Input<'_>) {
        let Some(&badge) = self.handles.get(input.below(self.handles.len().max(1))) else { return };
        let ioas = self.spaces.get(input.below(self.spaces.len().max(1))).copied().unwrap_or(0);
        let iova = iova(input);
        let request = match (Handle::from_badge(badge), input.below(7)) {
            (Some(Handle::Dma { .. }), 0..=3) => {
                Request::DmaMap { writable: input.bool(), mask_bits: 12 + input.u8() % 53 }
            }
            (Some(Handle::Dma { .. }), _) => Request::DmaUnmap { iova: self.mapped_iova(input).unwrap_or(iova) },
            (_, 0) => Request::IoasCreate,
            (_, 1) => Request::Attach { ioas: input.bool().then_some(ioas) },
            (_, 2 | 3) => Request::Map { ioas, iova, writable: input.bool() },
            (_, 4) => Request::Unmap { ioas, iova: self.mapped_iova(input).unwrap_or(iova) },
            (_, 5) => Request::Faults,
            _ => Request::Release,
        };
        self.with_frame(input, badge, request);
    }

    /// An IOVA something is mapped at, if anything is.
    fn mapped_iova(&self, input: &mut Input<'_>) -> Option<u64> {
        let mappings = self.service.domains().mappings();
        mappings.get(input.below(mappings.len().max(1))).map(|mapping| mapping.iova)
    }

    /// Sends `request` with a frame of 1 to 4 pages, read-only or not.
    fn with_frame(&mut self, input: &mut Input<'_>, badge: u64, request: Request) {
        self.k.frames.insert(FRAME_SLOT, 1 + input.below(4) as u64);
        if input.below(4) == 0 {
            self.k.read_only.insert(FRAME_SLOT);
        } else {
            self.k.read_only.remove(&FRAME_SLOT);
        }
        self.call(badge, request, &[FRAME_SLOT]);
    }

    /// Every invariant of the module's list.
    fn check(&mut self) {
        let Some(ready) = self.service.ready() else { return };
        let owners: Vec<(u16, Owner)> = ready.ownership.owners().collect();
        for &(group, owner) in &owners {
            let handles = ready.handles.iter().filter(|handle| handle.group == group).count();
            match owner {
                Owner::Kernel { drivers } => assert_eq!(usize::from(drivers), handles, "group {group}: claims"),
                _ => assert_eq!(handles, 0, "group {group} is {owner:?} yet a driver holds a DMA handle on it"),
            }
        }
        let expected: Vec<(u16, Option<u16>)> = owners
            .iter()
            .map(|&(group, owner)| {
                let domain = match owner {
                    Owner::Unowned | Owner::Kernel { .. } => Some(ready.defaults[usize::from(group)]),
                    Owner::User { ioas: Some(id), .. } => {
                        ready.address_spaces.iter().find(|space| space.id == id).map(|space| space.domain)
                    }
                    Owner::User { ioas: None, .. } | Owner::Reclaiming { .. } => None,
                };
                (group, domain)
            })
            .collect();
        let requesters = ready.requesters.clone();
        let domain_ids: Vec<Option<u16>> = expected
            .iter()
            .map(|(_, domain)| domain.and_then(|index| self.service.domains().get(index)).map(|d| d.id.get()))
            .collect();
        let hw = self.service.hardware();
        for ((group, domain), id) in expected.iter().zip(&domain_ids) {
            for &source in &requesters[usize::from(*group)] {
                let entry = hw.units[0].context.entry(&hw.pages, source);
                let found = entry.is_present().then(|| entry.domain().map(|d| d.get())).flatten();
                assert_eq!(found, *id, "requester {source:#06x} of group {group} (domain {domain:?})");
            }
        }
        self.check_mappings();
    }

    /// Mappings translate to their pins' frames with the pins' rights, and
    /// the pins alive are exactly the mappings'.
    fn check_mappings(&mut self) {
        let mappings = self.service.domains().mappings().to_vec();
        let mut pins = BTreeSet::new();
        for mapping in &mappings {
            let domain = self.service.domains().get(mapping.domain).expect("a mapping's domain exists");
            let found = domain.table.translate(self.service.pages(), mapping.iova).expect("mapped");
            assert_eq!(found.physical, FakeKernel::physical(mapping.pin), "the IOVA reaches the pinned frame");
            assert!(
                !found.access.write || self.k.writable_pins.contains(&mapping.pin),
                "device-writable past its rights"
            );
            pins.insert(mapping.pin);
        }
        let alive: BTreeSet<u64> = self.k.pins.keys().copied().collect();
        assert_eq!(alive, pins, "pins and mappings balance");
    }

    /// The PCI server's part: every pending group reported quiesced (with
    /// one member too many if `lie`, which must be refused).
    fn reclaim_all(&mut self, lie: bool) {
        let mut next = 0;
        while let Reply::Reclaims { page: Some(page) } =
            self.call(policy(PCI), Request::PendingReclaims { group: next, offset: 0 }, &[])
        {
            let quiesced = page.total + u16::from(lie);
            let reply = self.call(policy(PCI), Request::Reclaimed { group: page.group, quiesced }, &[]);
            assert_eq!(reply == Reply::Done, !lie, "group {}: {reply:?}", page.group);
            next = page.group + 1;
        }
    }

    /// Every user dies and every group comes back: nothing may be left.
    fn tear_down(&mut self) {
        for task in USERS {
            self.service.task_died(&mut self.k, task);
        }
        let held: Vec<(Bdf, u16)> = self
            .service
            .ready()
            .map(|ready| ready.handles.iter().map(|handle| (handle.device, handle.driver)).collect())
            .unwrap_or_default();
        for (device, driver) in held {
            let reply = self.call(policy(PCI), Request::ReleaseKernel { device, driver }, &[]);
            assert_eq!(reply, Reply::Done, "{driver} releasing {device}");
        }
        self.reclaim_all(false);
        assert!(self.service.ready().is_none_or(|ready| ready.ownership.reclaiming().next().is_none()));
        self.check();
        assert!(self.k.pins.is_empty(), "pins left: {:?}", self.k.pins);
        assert_eq!(self.service.domains().mapping_count(), 0, "mappings left");
        assert_eq!(self.service.hardware().pages.in_use(), self.pages_at_rest, "table pages left");
    }
}

/// The PCI server's or a user's policy badge with every operation.
pub(crate) fn policy(task: u16) -> u64 {
    badge::policy(task, (1 << iommu_api::PROTOCOL.operations.len()) - 1)
}

fn device(input: &mut Input<'_>) -> Bdf {
    let (bus, device) = DEVICES[input.below(DEVICES.len())];
    bdf(bus, device)
}

/// An IOVA: usually page-aligned and low, sometimes anything.
fn iova(input: &mut Input<'_>) -> u64 {
    match input.below(4) {
        0 => input.u64(),
        1 => u64::from(input.u8()) << 30,
        _ => u64::from(input.u16()) << 12,
    }
}

/// Any request, with fields from the input.
fn random_request(input: &mut Input<'_>, device: Bdf) -> Request {
    match input.below(12) {
        0 => Request::ClaimKernel { device, driver: u16::from(input.u8()) },
        1 => Request::ReleaseKernel { device, driver: u16::from(input.u8()) },
        2 => Request::ClaimGroup { device },
        3 => Request::Reclaimed { group: u16::from(input.u8() % 6), quiesced: u16::from(input.u8() % 4) },
        4 => Request::Groups { group: u16::from(input.u8()), offset: u16::from(input.u8() % 40) },
        5 => Request::DmaMap { writable: input.bool(), mask_bits: input.u8() },
        6 => Request::Map { ioas: u16::from(input.u8() % 4), iova: iova(input), writable: input.bool() },
        7 => Request::Unmap { ioas: u16::from(input.u8() % 4), iova: iova(input) },
        8 => Request::Attach { ioas: Some(u16::from(input.u8() % 4)) },
        9 => Request::FreeInterrupt { device, entry: input.u16() },
        10 => Request::AllocInterrupt {
            device,
            holder: u16::from(input.u8() % 6),
            address: 0xfee0_0000,
            data: u32::from(input.u8()),
        },
        _ => Request::Release,
    }
}

/// `iommu-service`: a sequence of up to 48 steps, the invariants after each,
/// and a clean teardown.
pub fn service(data: &[u8]) {
    let mut input = Input::new(data);
    let Some(mut machine) = Machine::new(&mut input) else { return };
    for _ in 0..48 {
        if input.is_empty() {
            break;
        }
        machine.step(&mut input);
        machine.check();
    }
    machine.tear_down();
}
