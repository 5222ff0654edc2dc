//! The PCI server's driver core wired to the real IOMMU server: sequences of binds, probes, grants, config writes and deaths.
//!
//! `pci-driver-core` runs `DriverCore` over a synthetic configuration space
//! whose IOMMU link is the IOMMU server's own `Service::handle` (on QEMU's
//! unit model), so both servers' rules meet as they do in QEMU. Tasks probe,
//! acquire, release and write configuration registers (the protected ones
//! included); an administrator binds and unbinds; users claim and release
//! groups at the IOMMU server; tasks die, and each server hears of it in
//! either order, as does the PCI server of reclaims. After every step:
//!
//! * a device held by a DMA-capable driver is in a kernel-owned group and
//!   the IOMMU server holds that driver's DMA handle for it;
//! * a device held by a user is in a group that user owns, or that is
//!   being reclaimed from it (and so blocked);
//! * an endpoint masters the bus only for a DMA-capable driver or a user
//!   owner; a device nobody holds has bus mastering as at rest and MSI off.
//!
//! At the end every task dies and every reclaim is delivered: no device may
//! be held, every group must be unowned, and the PCI server must hold no
//! capability beyond what it held after start.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use capabilities::config::{Assignment, Binding, DeviceMatch, DriverTask, IommuConfig, PciConfig, TaskNames};
use capabilities::pci::Bdf;
use capabilities::{ErrorCode, badge};
use iommu_api as iommu;
use iommu_server::ownership::Owner;
use iommu_server::service::Service;
use iommu_server::testing::{FakeKernel, Simulated};
use pci_api::Request;
use pci_server::config::ConfigSpace;
use pci_server::driver_core::device::Role;
use pci_server::driver_core::interrupts::bus_master_at_rest;
use pci_server::driver_core::{DriverCore, Hardware, IOMMU_EVENT, IommuLink, Kernel, MsiVector, Slot, death_bit};
use pci_server::enumerate::{Options, enumerate};
use pci_server::testing::{FakeConfig, FakeFunction, bdf};

use crate::input::Input;
use crate::service::{policy, start};

/// Tasks: the PCI server, three drivers, an administrator, two users.
const PCI: u16 = 0;
const NO_DMA_DRIVER: u16 = 1;
const DMA_DRIVER: u16 = 2;
const BRIDGE_DRIVER: u16 = 3;
const ADMIN: u16 = 4;
const USERS: [u16; 2] = [5, 6];
const TASKS: u16 = 7;
const NAMES: [&str; 7] = ["pci", "edu-probe", "dma-driver", "bridge", "admin", "user-a", "user-b"];

/// Where tasks present their own task capability, in the PCI server's space.
const TASK_SLOTS: u32 = 1000;
/// Where a user presents its task capability to the IOMMU server.
const IOMMU_TASK_SLOT: u32 = 90;

/// Command register bits.
const BUS_MASTER: u16 = 1 << 2;

/// An edu on the root bus (no reset), another, a PCIe root port with ACS and
/// an NVMe-like endpoint with FLR and MSI-X (4 entries, in BAR0) below it, and a PCIe-to-PCI bridge with
/// two conventional functions behind it (one group with the bridge).
fn machine() -> FakeConfig {
    let mut host = FakeFunction::endpoint(0x8086, 0x29c0).conventional();
    host.bytes[0x0b] = 0x06;
    let edu = |bar: u32| {
        let mut edu =
            FakeFunction::endpoint(0x1234, 0x11e8).conventional().bar(0, bar, 0xfff0_0000).legacy_cap(0x40, 0x05, 0);
        edu.bytes[0x0a] = 0xff;
        edu.set16(0x04, 0x0007);
        edu
    };
    let port = FakeFunction::bridge(0x1b36, 0x000c, 0, 1, 1).pcie(0x40, 4, 0).acs(0x100, 0x5f, 0, 0);
    let mut nvme = FakeFunction::endpoint(0x1b36, 0x0010)
        .bar(0, 0xfe10_0004, 0xffff_c000)
        .legacy_cap(0x40, 0x05, 0x60)
        .legacy_cap(0x60, 0x11, 0x70)
        .pcie(0x70, 0, 0);
    nvme.set32(0x74, 1 << 28);
    nvme.set16(0x62, 3);
    nvme.set32(0x64, 0x2000);
    nvme.set32(0x68, 0x3000);
    nvme.set16(0x04, 0x0006);
    let pci_bridge = FakeFunction::bridge(0x8086, 0x244e, 0, 2, 2).pcie(0x40, 7, 0);
    FakeConfig::default()
        .with("00:00.0", host)
        .with("00:03.0", edu(0xfea0_0000))
        .with("00:04.0", edu(0xfeb0_0000))
        .with("00:05.0", port)
        .with("01:00.0", nvme)
        .with("00:06.0", pci_bridge)
        .with("02:01.0", edu(0xfec0_0000))
        .with("02:02.0", edu(0xfed0_0000))
}

/// Every address a request may name (the last is nowhere).
const DEVICES: [&str; 9] =
    ["00:00.0", "00:03.0", "00:04.0", "00:05.0", "01:00.0", "00:06.0", "02:01.0", "02:02.0", "03:00.0"];

fn names() -> TaskNames {
    TaskNames(NAMES.iter().map(|name| (*name).try_into().expect("short")).collect())
}

fn pci_config(assignment_without_reset: bool) -> PciConfig {
    let bindings = [
        Binding { device: DeviceMatch::Address(bdf("00:03.0")), driver: NO_DMA_DRIVER },
        Binding { device: DeviceMatch::Ids { vendor: 0x1b36, device: 0x0010 }, driver: DMA_DRIVER },
        Binding { device: DeviceMatch::Address(bdf("00:05.0")), driver: BRIDGE_DRIVER },
        Binding { device: DeviceMatch::Address(bdf("02:01.0")), driver: DMA_DRIVER },
    ];
    let drivers = [(NO_DMA_DRIVER, false), (DMA_DRIVER, true), (BRIDGE_DRIVER, false)]
        .into_iter()
        .map(|(task, dma)| DriverTask { task, dma })
        .collect();
    PciConfig { tasks: names(), drivers, bindings: bindings.into_iter().collect(), assignment_without_reset }
}

fn iommu_config() -> IommuConfig {
    let assignments = USERS
        .iter()
        .flat_map(|&task| {
            DEVICES[1..8].iter().map(move |at| Assignment { device: DeviceMatch::Address(bdf(at)), task })
        })
        .take(capabilities::config::MAX_DEVICE_RULES)
        .collect();
    IommuConfig { tasks: names(), driver_core: Some(PCI), assignments, ..IommuConfig::default() }
}

/// The PCI server's capability slots, and which of them hold a copy of a
/// capability the IOMMU server minted (the kernel empties such a slot when
/// that server revokes its original; the PCI server still deletes it).
#[derive(Default)]
struct Slots {
    live: BTreeSet<u32>,
    /// MSI-X tables mapped, by key: (base, pages).
    tables: BTreeMap<usize, (u64, u64)>,
    /// PCI slot → the IOMMU server's slot of the original.
    copies: BTreeMap<u32, u32>,
    next: u32,
}

impl Slots {
    fn fresh(&mut self) -> Slot {
        self.next += 1;
        self.live.insert(64 + self.next);
        Slot(64 + self.next)
    }

    fn held(&self) -> usize {
        self.live.len() + self.copies.len()
    }
}

type Shared = Rc<RefCell<Slots>>;

/// The PCI server's kernel.
struct PciKernel(Shared);

impl Kernel for PciKernel {
    fn create_device_memory(&mut self, _base: u64, _pages: u64) -> Result<Slot, ErrorCode> {
        Ok(self.0.borrow_mut().fresh())
    }
    fn alloc_msi(&mut self) -> Result<MsiVector, ErrorCode> {
        let slot = self.0.borrow_mut().fresh();
        let vector = 0x30 + (slot.0 % 0xc0) as u8;
        Ok(MsiVector { slot, vector, address: 0xfee0_0000, data: u32::from(vector) })
    }
    fn revoke(&mut self, slot: Slot) -> Result<(), ErrorCode> {
        let slots = self.0.borrow();
        if slots.live.contains(&slot.0) || slots.copies.contains_key(&slot.0) {
            Ok(())
        } else {
            Err(ErrorCode::InvalidCapability)
        }
    }
    fn delete(&mut self, slot: Slot) {
        let mut slots = self.0.borrow_mut();
        let held = slots.live.remove(&slot.0) | slots.copies.remove(&slot.0).is_some();
        assert!(held, "the PCI server deleted slot {} it never filled, or twice", slot.0);
    }
    fn task_of(&mut self, slot: Slot) -> Result<u16, ErrorCode> {
        slot.0
            .checked_sub(TASK_SLOTS)
            .filter(|&task| task < u32::from(TASKS))
            .map(|task| task as u16)
            .ok_or(ErrorCode::WrongKind)
    }
    fn watch(&mut self, slot: Slot, _bits: u64) -> Result<(), ErrorCode> {
        self.task_of(slot).map(drop)
    }
    fn sleep(&mut self, _micros: u64) {}
    fn map_table(&mut self, key: usize, base: u64, pages: u64) -> Result<(), ErrorCode> {
        let previous = self.0.borrow_mut().tables.insert(key, (base, pages));
        assert!(previous.is_none(), "MSI-X table {key} mapped twice");
        Ok(())
    }
    fn table_write32(&mut self, key: usize, offset: u64, _value: u32) -> Result<(), ErrorCode> {
        let &(_, pages) = self.0.borrow().tables.get(&key).expect("writes go to mapped tables only");
        assert!(offset + 4 <= pages * 4096, "a table write past the mapping");
        Ok(())
    }
    fn unmap_table(&mut self, key: usize) {
        self.0.borrow_mut().tables.remove(&key);
    }
}

/// The IOMMU server as the PCI server's link reaches it.
struct IommuServer {
    service: Box<Service<Simulated>>,
    kernel: FakeKernel,
    slots: Shared,
}

impl IommuLink for IommuServer {
    fn call(&mut self, request: &iommu::Request) -> Result<(iommu::Reply, Option<Slot>), ErrorCode> {
        let answer = self.service.handle(&mut self.kernel, policy(PCI), request.clone(), &[]);
        let slot = answer.cap.map(|original| {
            let mut slots = self.slots.borrow_mut();
            slots.next += 1;
            let copy = 64 + slots.next;
            slots.copies.insert(copy, original);
            Slot(copy)
        });
        Ok((answer.reply, slot))
    }
}

/// Both servers and what the tasks were handed.
struct System {
    iommu: IommuServer,
    config: FakeConfig,
    kernel: PciKernel,
    core: DriverCore,
    /// Group capabilities minted to users: badge.
    group_caps: Vec<u64>,
    /// Reclaim requests of the IOMMU server the PCI server has heard of.
    reclaims_heard: u32,
    /// Slots the PCI server holds once started.
    slots_at_rest: usize,
}

impl System {
    fn new(input: &mut Input<'_>) -> Option<Self> {
        let mut config = machine();
        let options = Options { segment: 0, extended_config: true, enable_acs: true };
        let topology = enumerate(&mut config, &[0], options).ok()?;
        let slots = Shared::default();
        let mut iommu = IommuServer {
            service: start(input, iommu_config())?,
            kernel: FakeKernel { next_slot: 40, ..FakeKernel::default() },
            slots: slots.clone(),
        };
        let mut kernel = PciKernel(slots);
        let mut hw = Hardware { config: &mut config, kernel: &mut kernel, iommu: Some(&mut iommu) };
        let core = DriverCore::start(pci_config(input.bool()), &topology, &mut hw);
        let slots_at_rest = kernel.0.borrow().held();
        Some(Self { iommu, config, kernel, core, group_caps: Vec::new(), reclaims_heard: 0, slots_at_rest })
    }

    /// Sends `request` to the PCI server as `task` with `operations`,
    /// presenting `task`'s own task capability.
    fn ask(&mut self, task: u16, operations: u64, request: &Request) {
        let bytes = postcard::to_stdvec(request).expect("encodes");
        self.send(badge::policy(task, operations), &bytes);
    }

    fn send(&mut self, badge: u64, bytes: &[u8]) {
        let caller = badge::client(badge).unwrap_or(0);
        let mut hw = Hardware { config: &mut self.config, kernel: &mut self.kernel, iommu: Some(&mut self.iommu) };
        // A reply's capabilities go out as copies: the server keeps its own.
        self.core.handle(&mut hw, badge, bytes, Some(Slot(TASK_SLOTS + u32::from(caller))));
    }

    /// Delivers notification bits to the PCI server.
    fn event(&mut self, bits: u64) {
        let mut hw = Hardware { config: &mut self.config, kernel: &mut self.kernel, iommu: Some(&mut self.iommu) };
        self.core.event(&mut hw, bits);
    }

    /// Sends `request` to the IOMMU server as user `task`.
    fn ask_iommu(&mut self, badge: u64, request: iommu::Request) -> iommu::Reply {
        let task = badge::client(badge).unwrap_or(0);
        self.iommu.kernel.tasks.insert(IOMMU_TASK_SLOT, task);
        let answer = self.iommu.service.handle(&mut self.iommu.kernel, badge, request, &[IOMMU_TASK_SLOT]);
        if let Some(slot) = answer.cap {
            self.group_caps.push(self.iommu.kernel.minted[&slot]);
        }
        let minted = &self.iommu.kernel.minted;
        self.group_caps.retain(|badge| minted.values().any(|live| live == badge));
        answer.reply
    }

    /// Tells the PCI server of the reclaims the IOMMU server asked for.
    fn deliver_reclaims(&mut self) {
        if self.iommu.kernel.reclaims != self.reclaims_heard {
            self.reclaims_heard = self.iommu.kernel.reclaims;
            self.event(IOMMU_EVENT);
        }
    }

    /// `task` dies: both servers hear of it, in the order `iommu_first` says.
    fn die(&mut self, task: u16, iommu_first: bool) {
        let bit = death_bit(task).expect("few tasks");
        if iommu_first {
            self.iommu.service.task_died(&mut self.iommu.kernel, task);
            self.event(bit);
        } else {
            self.event(bit);
            self.iommu.service.task_died(&mut self.iommu.kernel, task);
        }
    }

    fn step(&mut self, input: &mut Input<'_>) {
        let device = bdf(DEVICES[input.below(DEVICES.len())]);
        // Any task but the PCI server itself.
        let task = 1 + input.below(usize::from(TASKS) - 1) as u16;
        match input.below(14) {
            0 => {
                let driver = [NO_DMA_DRIVER, DMA_DRIVER, BRIDGE_DRIVER][input.below(3)];
                self.ask(driver, ALL, &Request::Probe { index: input.u8() % 10 });
            }
            1 => self.ask(task, ALL, &Request::Release { device }),
            2 => {
                let user = USERS[input.below(2)];
                self.ask_iommu(policy(user), iommu::Request::ClaimGroup { device });
            }
            3 => self.ask(USERS[input.below(2)], ALL, &Request::Acquire { device }),
            4 => {
                let Some(&cap) = self.group_caps.get(input.below(self.group_caps.len().max(1))) else { return };
                let request = match input.below(3) {
                    0 => iommu::Request::Release,
                    1 => iommu::Request::IoasCreate,
                    _ => iommu::Request::Attach { ioas: input.bool().then_some(u16::from(input.u8() % 4)) },
                };
                self.ask_iommu(cap, request);
            }
            5 => {
                let request =
                    if input.bool() { Request::Bind { device, driver: task } } else { Request::Unbind { device } };
                self.ask(ADMIN, ALL, &request);
            }
            6 | 7 => {
                let (offset, width) = register(input);
                let value = if input.bool() { u32::from(BUS_MASTER) | 0x2 } else { input.u32() };
                self.ask(task, ALL, &Request::ConfigWrite { device, offset, width, value });
            }
            8 => self.die(task, input.bool()),
            9 => self.deliver_reclaims(),
            10 => {
                let operations = u64::from(input.u8());
                let request = Request::ConfigRead { device, offset: input.u16() % 0x1000, width: 1 << input.below(3) };
                self.ask(task, operations, &request);
            }
            11 => {
                let (first, count) = (u16::from(input.u8() % 6), input.u8() % 6);
                self.ask(task, ALL, &Request::MsixVectors { device, first, count });
            }
            12 => self.ask(
                task,
                ALL,
                &Request::MsixMask { device, entry: u16::from(input.u8() % 6), masked: input.bool() },
            ),
            _ => {
                let len = input.below(24);
                let bytes = input.take(len).to_vec();
                self.send(badge::policy(task, ALL), &bytes);
            }
        }
    }
}

impl System {
    /// The IOMMU server's owner of `device`'s group, if it is in one.
    fn owner(&self, device: Bdf) -> Option<Owner> {
        let ready = self.iommu.service.ready()?;
        ready.ownership.owner(ready.group_of(device)?).ok()
    }

    /// Every invariant of the module's list.
    fn check(&mut self) {
        let Some(ready) = self.iommu.service.ready() else { return };
        let handles: Vec<(Bdf, u16)> = ready.handles.iter().map(|handle| (handle.device, handle.driver)).collect();
        for device in self.core.devices().to_vec() {
            let at = device.function.bdf;
            let owner = self.owner(at);
            let command = self.config.read16(at, 0x04).expect("a present function");
            let masters = command & BUS_MASTER != 0;
            let endpoint = !bus_master_at_rest(&device.function);
            match device.holder.map(|holder| (holder.task, holder.role)) {
                Some((driver, Role::Driver { dma: true })) => {
                    assert!(
                        matches!(owner, Some(Owner::Kernel { .. })),
                        "{at} held by DMA driver {driver} in a group {owner:?}"
                    );
                    assert!(handles.contains(&(at, driver)), "{at}: driver {driver} holds it without a DMA handle");
                }
                Some((task, Role::User)) => assert!(
                    matches!(owner, Some(Owner::User { task: t, .. } | Owner::Reclaiming { task: t }) if t == task),
                    "{at} held by user {task} in a group {owner:?}"
                ),
                Some((driver, Role::Driver { dma: false })) => {
                    assert!(!(endpoint && masters), "{at}: driver {driver}, bound without DMA, masters the bus");
                }
                None if device.unquiesced.is_none() => {
                    assert_eq!(masters, !endpoint, "{at}, held by nobody: bus mastering {command:#06x}");
                    if let Some(msi) = device.function.msi {
                        let control = self.config.read16(at, u16::from(msi.offset) + 2).expect("present");
                        assert_eq!(control & 1, 0, "{at}, held by nobody, has MSI on");
                    }
                }
                None => {}
            }
        }
    }

    /// Every task dies and every reclaim is delivered: nothing may be left.
    fn tear_down(&mut self, input: &mut Input<'_>) {
        for task in 1..TASKS {
            self.die(task, input.bool());
        }
        for _ in 0..4 {
            self.deliver_reclaims();
        }
        self.check();
        for device in self.core.devices() {
            assert_eq!(device.holder, None, "{} is still held", device.function.bdf);
            let owner = self.owner(device.function.bdf);
            assert!(matches!(owner, None | Some(Owner::Unowned)), "{}: group left {owner:?}", device.function.bdf);
        }
        assert!(self.iommu.kernel.pins.is_empty(), "pins left: {:?}", self.iommu.kernel.pins);
        let minted = &self.iommu.kernel.minted;
        assert!(minted.is_empty(), "the IOMMU server left capabilities minted: {minted:?}");
        let held = self.kernel.0.borrow().held();
        assert_eq!(held, self.slots_at_rest, "the PCI server's capabilities balance");
        assert!(self.kernel.0.borrow().tables.is_empty(), "an MSI-X table is still mapped");
    }
}

/// `pci-driver-core`: up to 64 steps, the invariants after each, and a
/// clean teardown.
pub fn driver_core(data: &[u8]) {
    let mut input = Input::new(data);
    let Some(mut system) = System::new(&mut input) else { return };
    system.check();
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        system.step(&mut input);
        system.check();
    }
    system.tear_down(&mut input);
}

/// Every operation of the PCI protocol.
const ALL: u64 = (1 << pci_api::PROTOCOL.operations.len()) - 1;

/// A register worth writing: the command register, a BAR, MSI control,
/// ACS control, PCIe device control, or anywhere.
fn register(input: &mut Input<'_>) -> (u16, u8) {
    match input.below(7) {
        0 | 1 => (0x04, 2),
        2 => (0x10, 4),
        3 => (0x42, 2),
        4 => (0x106, 2),
        5 => (0x78, 2),
        _ => (input.u16() % 0x1000, 1 << input.below(3)),
    }
}
