//! Host tests of the driver core, over models of the kernel, the IOMMU server and a machine.
//!
//! The models share one journal, so tests can check the order of effects
//! across them (revoke, then quiesce, then release the claim).

mod admin;
mod bus_master;
mod grant;
mod hostile;
mod interrupts;
mod iommu_link;
mod msix;
mod release;
mod reset;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::vec::Vec;

use capabilities::config::{Binding, DeviceMatch, DriverTask, PciConfig, TaskNames};
use capabilities::pci::Bdf;
use capabilities::{ErrorCode, badge};
use iommu_api as iommu;
use iommu_api::OwnerReport;
use pci_api::{Operation, Reply, Request};

use super::env::{Hardware, IommuLink, Kernel, MsiVector, Slot};
use super::state::{Answer, DriverCore};
use crate::config::{AccessError, ConfigSpace};
use crate::enumerate::{Options, enumerate};
use crate::testing::{FakeConfig, FakeFunction, bdf};

/// Something one of the models did, in order.
#[expect(clippy::large_enum_variant, reason = "a test journal; topology reports are large")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A capability's descendants were revoked.
    Revoke(Slot),
    /// A capability was deleted.
    Delete(Slot),
    /// The command register of a function was written.
    Command(Bdf, u16),
    /// A request reached the IOMMU server.
    Iommu(iommu::Request),
    /// A 32-bit word of a mapped table was written: physical address, value.
    Table(u64, u32),
}

/// What the kernel model holds.
#[derive(Default)]
pub struct KernelState {
    /// Slots holding a capability.
    pub live: BTreeSet<u32>,
    /// Slots emptied because another task revoked an ancestor of their
    /// capability (not yet freed by a delete).
    pub emptied: BTreeSet<u32>,
    /// Device-memory capabilities created: slot, base, pages.
    pub device_memory: Vec<(Slot, u64, u64)>,
    /// Task capabilities (slot → task index) a client could present.
    pub tasks: BTreeMap<u32, u16>,
    /// Death watches registered: task, bits.
    pub watches: Vec<(u16, u64)>,
    /// Microseconds slept.
    pub slept: u64,
    /// The next MSI allocation fails with this.
    pub msi_failure: Option<ErrorCode>,
    /// The next watch fails with this.
    pub watch_failure: Option<ErrorCode>,
    /// Device memory may not cover this range (RAM, say).
    pub forbidden: Option<(u64, u64)>,
    /// The next table mapping fails with this.
    pub table_failure: Option<ErrorCode>,
    /// Tables mapped: key → (base, pages).
    pub tables: BTreeMap<usize, (u64, u64)>,
    /// What table memory holds, by physical address (32-bit words written).
    pub table_memory: BTreeMap<u64, u32>,
    next: u32,
}

/// What the IOMMU model holds.
#[derive(Default)]
pub struct IommuState {
    /// Each device's group.
    pub groups: BTreeMap<Bdf, u16>,
    /// Each group's owner.
    pub owners: BTreeMap<u16, OwnerReport>,
    /// Claims are refused with this.
    pub refuse_claims: Option<(ErrorCode, &'static str)>,
    /// The topology report is refused with this.
    pub refuse_topology: Option<(ErrorCode, &'static str)>,
    /// Answers claims with `Done` and no handle (a broken server).
    pub broken_claims: bool,
    /// Groups waiting to be reclaimed, until a `Reclaimed` naming every
    /// member takes them off.
    pub pending: Vec<(u16, Vec<Bdf>)>,
    /// DMA handles handed out: device, driver, and the slot the PCI server got.
    pub handles: Vec<(Bdf, u16, Slot)>,
    /// The server remaps interrupts (else it hands the kernel's message back).
    pub remapping: bool,
    /// Interrupt entries in use: handle, device, holder, vector.
    pub entries: Vec<(u16, Bdf, u16, u32)>,
    /// Interrupt entries are refused with this.
    pub refuse_interrupts: Option<ErrorCode>,
}

/// Everything the models share.
#[derive(Default)]
pub struct World {
    /// The kernel.
    pub kernel: KernelState,
    /// The IOMMU server.
    pub iommu: IommuState,
    /// What happened, in order.
    pub journal: Vec<Effect>,
    /// A function whose device-control register starts a reset that
    /// clears its BARs (function, device-control offset).
    pub flr: Option<(Bdf, u16)>,
    /// A function whose Advanced Features control register (this offset)
    /// starts a reset with bit 0.
    pub af_flr: Option<(Bdf, u16)>,
    /// 16-bit registers a reset also clears (ACS control, MSI control...).
    pub reset_clears: Vec<(Bdf, u16)>,
    /// Resets seen, by function.
    pub resets: Vec<Bdf>,
    /// That function never comes back from its reset: it reads all ones.
    pub lost_on_reset: bool,
}

impl World {
    fn new_slot(&mut self) -> Slot {
        self.kernel.next += 1;
        let slot = 63 + self.kernel.next;
        self.kernel.live.insert(slot);
        Slot(slot)
    }
}

/// A handle on the shared world.
pub type Shared = Rc<RefCell<World>>;

/// The kernel model.
pub struct MockKernel(pub Shared);

impl Kernel for MockKernel {
    fn create_device_memory(&mut self, base: u64, pages: u64) -> Result<Slot, ErrorCode> {
        let mut world = self.0.borrow_mut();
        if let Some((start, end)) = world.kernel.forbidden
            && base < end
            && start < base + pages * 4096
        {
            return Err(ErrorCode::PermissionDenied);
        }
        let slot = world.new_slot();
        world.kernel.device_memory.push((slot, base, pages));
        Ok(slot)
    }

    fn alloc_msi(&mut self) -> Result<MsiVector, ErrorCode> {
        let mut world = self.0.borrow_mut();
        if let Some(code) = world.kernel.msi_failure.take() {
            return Err(code);
        }
        let slot = world.new_slot();
        let vector = 0x30u8.wrapping_add(slot.0 as u8);
        Ok(MsiVector { slot, vector, address: 0xfee0_0000, data: u32::from(vector) })
    }

    fn revoke(&mut self, slot: Slot) -> Result<(), ErrorCode> {
        let mut world = self.0.borrow_mut();
        if !world.kernel.live.contains(&slot.0) {
            return Err(ErrorCode::InvalidCapability);
        }
        world.journal.push(Effect::Revoke(slot));
        Ok(())
    }

    fn delete(&mut self, slot: Slot) {
        let mut world = self.0.borrow_mut();
        let held = world.kernel.live.remove(&slot.0) || world.kernel.emptied.remove(&slot.0);
        assert!(held, "deleted a slot the server never filled or already freed: {slot:?}");
        world.journal.push(Effect::Delete(slot));
    }

    fn task_of(&mut self, slot: Slot) -> Result<u16, ErrorCode> {
        self.0.borrow().kernel.tasks.get(&slot.0).copied().ok_or(ErrorCode::WrongKind)
    }

    fn watch(&mut self, slot: Slot, bits: u64) -> Result<(), ErrorCode> {
        let mut world = self.0.borrow_mut();
        if let Some(code) = world.kernel.watch_failure.take() {
            return Err(code);
        }
        let task = *world.kernel.tasks.get(&slot.0).ok_or(ErrorCode::WrongKind)?;
        world.kernel.watches.push((task, bits));
        Ok(())
    }

    fn sleep(&mut self, micros: u64) {
        self.0.borrow_mut().kernel.slept += micros;
    }

    fn map_table(&mut self, key: usize, base: u64, pages: u64) -> Result<(), ErrorCode> {
        let mut world = self.0.borrow_mut();
        if let Some(code) = world.kernel.table_failure.take() {
            return Err(code);
        }
        assert!(!world.kernel.tables.contains_key(&key), "table {key} mapped twice");
        world.kernel.tables.insert(key, (base, pages));
        Ok(())
    }

    fn table_write32(&mut self, key: usize, offset: u64, value: u32) -> Result<(), ErrorCode> {
        let mut world = self.0.borrow_mut();
        let &(base, pages) = world.kernel.tables.get(&key).ok_or(ErrorCode::InvalidCapability)?;
        if offset + 4 > pages * 4096 {
            return Err(ErrorCode::InvalidArgument);
        }
        world.kernel.table_memory.insert(base + offset, value);
        world.journal.push(Effect::Table(base + offset, value));
        Ok(())
    }

    fn unmap_table(&mut self, key: usize) {
        self.0.borrow_mut().kernel.tables.remove(&key);
    }
}

/// The IOMMU server model: groups, owners, claims and reclaims.
pub struct MockIommu(pub Shared);

impl IommuLink for MockIommu {
    fn call(&mut self, request: &iommu::Request) -> Result<(iommu::Reply, Option<Slot>), ErrorCode> {
        let mut world = self.0.borrow_mut();
        world.journal.push(Effect::Iommu(request.clone()));
        let refused = |code, reason: &str| iommu::Reply::Refused { code, reason: reason.try_into().unwrap() };
        let group_of = |world: &World, device: &Bdf| world.iommu.groups.get(device).copied();
        Ok(match request {
            iommu::Request::ReportTopology { .. } => match world.iommu.refuse_topology {
                Some((code, reason)) => (refused(code, reason), None),
                None => (iommu::Reply::Done, None),
            },
            iommu::Request::Reclaimed { group, quiesced } => {
                match world.iommu.pending.iter().position(|(pending, _)| pending == group) {
                    Some(at) if world.iommu.pending[at].1.len() == usize::from(*quiesced) => {
                        world.iommu.pending.remove(at);
                        (iommu::Reply::Done, None)
                    }
                    Some(_) => (refused(ErrorCode::InvalidArgument, "not every member was quiesced"), None),
                    None => (refused(ErrorCode::InvalidArgument, "that group is not being reclaimed"), None),
                }
            }
            iommu::Request::ClaimKernel { device, driver } => {
                if let Some((code, reason)) = world.iommu.refuse_claims {
                    (refused(code, reason), None)
                } else if world.iommu.broken_claims {
                    (iommu::Reply::Done, None)
                } else {
                    let group = group_of(&world, device).ok_or(ErrorCode::NotFound)?;
                    let drivers = match world.iommu.owners.get(&group) {
                        Some(OwnerReport::Kernel { drivers }) => drivers + 1,
                        _ => 1,
                    };
                    world.iommu.owners.insert(group, OwnerReport::Kernel { drivers });
                    let handle = world.new_slot();
                    world.iommu.handles.push((*device, *driver, handle));
                    (iommu::Reply::Group { group }, Some(handle))
                }
            }
            iommu::Request::ReleaseKernel { device, driver } => {
                let group = group_of(&world, device).ok_or(ErrorCode::NotFound)?;
                let Some(position) = world.iommu.handles.iter().position(|h| h.0 == *device && h.1 == *driver) else {
                    return Ok((refused(ErrorCode::NotFound, "that driver holds no DMA handle for that device"), None));
                };
                // Revoking its original empties the PCI server's copy, as the kernel would.
                let (_, _, slot) = world.iommu.handles.swap_remove(position);
                if world.kernel.live.remove(&slot.0) {
                    world.kernel.emptied.insert(slot.0);
                }
                world.iommu.owners.insert(group, OwnerReport::Unowned);
                (iommu::Reply::Done, None)
            }
            iommu::Request::Owner { device } => match group_of(&world, device) {
                Some(group) => {
                    let owner = world.iommu.owners.get(&group).copied().unwrap_or(OwnerReport::Unowned);
                    (iommu::Reply::Owner { group, owner }, None)
                }
                None => (refused(ErrorCode::NotFound, "no such device"), None),
            },
            iommu::Request::PendingReclaims { group: from, offset } => {
                let mut pending = world.iommu.pending.clone();
                pending.sort_by_key(|(group, _)| *group);
                let page = pending.into_iter().find(|(group, _)| group >= from).map(|(group, members)| {
                    let offset = if group == *from { *offset } else { 0 };
                    iommu::ReclaimPage {
                        group,
                        offset,
                        total: members.len() as u16,
                        members: members.iter().skip(usize::from(offset)).take(iommu::RECLAIM_PAGE).copied().collect(),
                    }
                });
                (iommu::Reply::Reclaims { page }, None)
            }
            iommu::Request::AllocInterrupt { device, holder, address, data } => {
                if let Some(code) = world.iommu.refuse_interrupts {
                    (refused(code, "no interrupt entry"), None)
                } else if world.iommu.remapping {
                    let handle = world.iommu.entries.iter().map(|e| e.0).max().unwrap_or(0) + 1;
                    world.iommu.entries.push((handle, *device, *holder, *data));
                    let address = 0xfee0_0018 | u64::from(handle) << 5;
                    (iommu::Reply::Interrupt { address, data: 0, entry: Some(handle) }, None)
                } else {
                    (iommu::Reply::Interrupt { address: *address, data: *data, entry: None }, None)
                }
            }
            iommu::Request::FreeInterrupt { device, entry } => {
                match world.iommu.entries.iter().position(|e| e.0 == *entry && e.1 == *device) {
                    Some(position) => {
                        world.iommu.entries.remove(position);
                        (iommu::Reply::Done, None)
                    }
                    None => (refused(ErrorCode::NotFound, "no such entry"), None),
                }
            }
            _ => (refused(ErrorCode::NoSuchCall, "not modelled"), None),
        })
    }
}

/// Configuration space that journals command writes and models resets.
pub struct Machine {
    /// The functions.
    pub config: FakeConfig,
    /// The journal and reset model.
    pub world: Shared,
}

impl Machine {
    fn note(&mut self, bdf: Bdf, offset: u16, width: u16, value: u32) {
        let mut world = self.world.borrow_mut();
        if offset == 0x04 && width >= 2 {
            world.journal.push(Effect::Command(bdf, value as u16));
        }
        let pcie = world.flr == Some((bdf, offset)) && value & 0x8000 != 0;
        let af = world.af_flr == Some((bdf, offset)) && value & 1 != 0;
        if pcie || af {
            world.resets.push(bdf);
            // A reset clears the command register and the BARs' address
            // bits (their type bits are wired), and what the test lists.
            if world.lost_on_reset {
                self.config.functions.remove(&bdf);
                return;
            }
            let function = self.config.functions.get_mut(&bdf).unwrap();
            function.bytes[0x04..0x06].fill(0);
            for &(_, at) in world.reset_clears.iter().filter(|(cleared, _)| *cleared == bdf) {
                function.set16(usize::from(at), 0);
            }
            for (index, mask) in function.bar_masks.into_iter().enumerate() {
                let at = 0x10 + 4 * index;
                let wired = !mask.unwrap_or(u32::MAX);
                let value = u32::from_le_bytes(function.bytes[at..at + 4].try_into().unwrap()) & wired;
                function.bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
        }
    }
}

impl ConfigSpace for Machine {
    fn read8(&mut self, bdf: Bdf, offset: u16) -> Result<u8, AccessError> {
        self.config.read8(bdf, offset)
    }
    fn read16(&mut self, bdf: Bdf, offset: u16) -> Result<u16, AccessError> {
        self.config.read16(bdf, offset)
    }
    fn read32(&mut self, bdf: Bdf, offset: u16) -> Result<u32, AccessError> {
        self.config.read32(bdf, offset)
    }
    fn write8(&mut self, bdf: Bdf, offset: u16, value: u8) -> Result<(), AccessError> {
        self.config.write8(bdf, offset, value)?;
        self.note(bdf, offset, 1, value.into());
        Ok(())
    }
    fn write16(&mut self, bdf: Bdf, offset: u16, value: u16) -> Result<(), AccessError> {
        self.config.write16(bdf, offset, value)?;
        self.note(bdf, offset, 2, value.into());
        Ok(())
    }
    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) -> Result<(), AccessError> {
        self.config.write32(bdf, offset, value)?;
        self.note(bdf, offset, 4, value);
        Ok(())
    }
}

/// Task indices of the test system.
pub mod task {
    // Task 0 is the PCI server.
    /// A no-DMA driver bound to the first edu.
    pub const EDU_PROBE: u16 = 1;
    /// A DMA-capable driver bound to the NVMe-like function.
    pub const DMA_DRIVER: u16 = 2;
    /// The bridge driver bound to the root port.
    pub const BRIDGE: u16 = 3;
    /// The administrator.
    pub const ADMIN: u16 = 4;
    /// A user task that may own groups.
    pub const USER: u16 = 5;
    /// A no-DMA driver bound to nothing at boot.
    pub const STUB: u16 = 6;
    /// A DMA-capable driver bound to nothing at boot.
    pub const SPARE: u16 = 7;
}

/// Addresses of the test machine.
pub mod at {
    /// First edu (conventional PCI, 32-bit MSI, bound to edu-probe).
    pub const EDU: &str = "00:03.0";
    /// Second edu (unbound).
    pub const EDU2: &str = "00:04.0";
    /// A PCI Express root port with ACS (bound to the bridge driver).
    pub const PORT: &str = "00:05.0";
    /// An NVMe-like endpoint below it: 64-bit BAR, 64-bit MSI with
    /// masking, MSI-X (4 entries, the table at 8 KiB into BAR0 and the
    /// PBA at 12 KiB, as QEMU's nvme lays them out), FLR, a resizable
    /// BAR (bound with DMA).
    pub const NVME: &str = "01:00.0";
}

/// The first edu's BAR0.
pub const EDU_BAR: u64 = 0xfea0_0000;
/// The NVMe-like function's BAR0 (64-bit).
pub const NVME_BAR: u64 = 0x8_0000_0000;
/// MSI-X table entries of the NVMe-like function.
pub const NVME_MSIX_ENTRIES: u16 = 4;
/// Where its MSI-X table lies in BAR0.
pub const NVME_MSIX_TABLE: u64 = 0x2000;
/// Where its pending-bit array lies in BAR0.
pub const NVME_MSIX_PBA: u64 = 0x3000;
/// Offset of the NVMe-like function's PCI Express capability.
pub const NVME_PCIE: u16 = 0x70;

/// The test machine's configuration space.
pub fn machine_config() -> FakeConfig {
    let mut host = FakeFunction::endpoint(0x8086, 0x29c0).conventional();
    host.bytes[0x0b] = 0x06;
    let edu = |bar: u64| {
        let mut edu = FakeFunction::endpoint(0x1234, 0x11e8).conventional().bar(0, bar as u32, 0xfff0_0000);
        edu.bytes[0x0b] = 0x00;
        edu.bytes[0x0a] = 0xff;
        edu = edu.legacy_cap(0x40, 0x05, 0);
        edu.set16(0x42, 0x0000);
        edu.set16(0x04, 0x0007);
        edu
    };
    let port = FakeFunction::bridge(0x1b36, 0x000c, 0, 1, 1)
        .bar(0, 0xfe80_0000, 0xffff_f000)
        .pcie(0x40, 4, 0)
        .acs(0x100, 0x5f, 0, 0);
    let mut nvme = FakeFunction::endpoint(0x1b36, 0x0010)
        .bar(0, NVME_BAR as u32 | 0x4, 0xffff_c000)
        .bar(1, (NVME_BAR >> 32) as u32, 0xffff_ffff)
        .legacy_cap(0x40, 0x05, 0x60)
        .legacy_cap(0x60, 0x11, NVME_PCIE as u8)
        .pcie(NVME_PCIE as u8, 0, 0)
        .extended_cap(0x100, 0x0015, 0);
    nvme.set16(0x42, 0x0180);
    nvme.set16(0x62, NVME_MSIX_ENTRIES - 1);
    nvme.set32(0x64, NVME_MSIX_TABLE as u32);
    nvme.set32(0x68, NVME_MSIX_PBA as u32);
    nvme.set32(usize::from(NVME_PCIE) + 4, 1 << 28);
    nvme.set16(0x04, 0x0006);
    FakeConfig::default()
        .with("00:00.0", host)
        .with(at::EDU, edu(EDU_BAR))
        .with(at::EDU2, edu(0xfeb0_0000))
        .with(at::PORT, port)
        .with(at::NVME, nvme)
}

/// The policy's part for the PCI server.
pub fn pci_config() -> PciConfig {
    let mut tasks = TaskNames::default();
    for name in ["pci", "edu-probe", "dma-driver", "bridge", "admin", "user", "stub", "spare"] {
        tasks.0.push(name.try_into().unwrap()).unwrap();
    }
    let drivers = [
        (task::EDU_PROBE, false),
        (task::DMA_DRIVER, true),
        (task::BRIDGE, false),
        (task::STUB, false),
        (task::SPARE, true),
    ];
    let bindings = [
        Binding { device: DeviceMatch::Address(bdf(at::EDU)), driver: task::EDU_PROBE },
        Binding { device: DeviceMatch::Ids { vendor: 0x1b36, device: 0x0010 }, driver: task::DMA_DRIVER },
        Binding { device: DeviceMatch::Address(bdf(at::PORT)), driver: task::BRIDGE },
        Binding { device: DeviceMatch::Address(bdf("07:00.0")), driver: task::BRIDGE },
    ];
    // The QEMU scenarios' policies allow users edus, which have no reset.
    PciConfig {
        tasks,
        drivers: drivers.into_iter().map(|(task, dma)| DriverTask { task, dma }).collect(),
        bindings: bindings.into_iter().collect(),
        assignment_without_reset: true,
    }
}

/// A running driver core on the test machine.
pub struct Rig {
    /// The shared world.
    pub world: Shared,
    /// Configuration space.
    pub machine: Machine,
    /// The kernel.
    pub kernel: MockKernel,
    /// The IOMMU server, or none.
    pub iommu: Option<MockIommu>,
    /// The driver core.
    pub core: DriverCore,
}

/// Every operation.
pub const ALL_OPERATIONS: u64 = (1 << 10) - 1;

/// A driver's operations.
pub const DRIVER_OPERATIONS: u64 = 1 << Operation::Probe as u64
    | 1 << Operation::Release as u64
    | 1 << Operation::ConfigRead as u64
    | 1 << Operation::ConfigWrite as u64
    | 1 << Operation::Devices as u64
    | 1 << Operation::MsixVectors as u64
    | 1 << Operation::MsixMask as u64;

/// A user task's operations.
pub const USER_OPERATIONS: u64 = 1 << Operation::Acquire as u64
    | 1 << Operation::Release as u64
    | 1 << Operation::ConfigRead as u64
    | 1 << Operation::ConfigWrite as u64;

impl Rig {
    /// The test machine with an IOMMU server that put every function in its own group.
    pub fn new() -> Self {
        Self::build(machine_config(), pci_config(), true)
    }

    /// The test machine without an IOMMU server.
    pub fn without_iommu() -> Self {
        Self::build(machine_config(), pci_config(), false)
    }

    /// `config` with the policy part `pci`, with or without an IOMMU server.
    pub fn build(config: FakeConfig, pci: PciConfig, with_iommu: bool) -> Self {
        Self::build_with(config, pci, with_iommu, |_| {})
    }

    /// Like [`Self::build`], with the world changed by `prepare` before the
    /// driver core starts.
    pub fn build_with(config: FakeConfig, pci: PciConfig, with_iommu: bool, prepare: impl FnOnce(&mut World)) -> Self {
        let world: Shared = Rc::default();
        let mut machine = Machine { config, world: world.clone() };
        let topology = enumerate(&mut machine, &[0], Options { segment: 0, extended_config: true, enable_acs: true })
            .expect("enumeration");
        {
            let mut shared = world.borrow_mut();
            for (group, function) in topology.functions.iter().enumerate() {
                shared.iommu.groups.insert(function.bdf, group as u16 + 10);
            }
            for index in 0..8 {
                shared.kernel.tasks.insert(1000 + u32::from(index), index);
            }
            prepare(&mut shared);
        }
        let mut kernel = MockKernel(world.clone());
        let mut iommu = with_iommu.then(|| MockIommu(world.clone()));
        let mut hw = Hardware { config: &mut machine, kernel: &mut kernel, iommu: iommu.as_mut() };
        let core = DriverCore::start(pci, &topology, &mut hw);
        Self { world, machine, kernel, iommu, core }
    }

    /// Sends `request` as `task` with `operations` in its badge, presenting
    /// its own task capability.
    pub fn ask(&mut self, task: u16, operations: u64, request: &Request) -> Answer {
        self.ask_with(badge::policy(task, operations), request, Some(own_task(task)))
    }

    /// Sends `request` with `badge`, presenting `presented`.
    pub fn ask_with(&mut self, badge: u64, request: &Request, presented: Option<Slot>) -> Answer {
        let bytes = postcard::to_stdvec(request).unwrap();
        self.send_bytes(badge, &bytes, presented)
    }

    /// Sends raw message bytes.
    pub fn send_bytes(&mut self, badge: u64, bytes: &[u8], presented: Option<Slot>) -> Answer {
        let mut hw = Hardware { config: &mut self.machine, kernel: &mut self.kernel, iommu: self.iommu.as_mut() };
        self.core.handle(&mut hw, badge, bytes, presented)
    }

    /// Delivers notification bits.
    pub fn event(&mut self, bits: u64) {
        let mut hw = Hardware { config: &mut self.machine, kernel: &mut self.kernel, iommu: self.iommu.as_mut() };
        self.core.event(&mut hw, bits);
    }

    /// The 16-bit register of `at` at `offset`.
    pub fn read16(&mut self, at: &str, offset: u16) -> u16 {
        self.machine.config.read16(bdf(at), offset).unwrap()
    }

    /// The 32-bit register of `at` at `offset`.
    pub fn read32(&mut self, at: &str, offset: u16) -> u32 {
        self.machine.config.read32(bdf(at), offset).unwrap()
    }

    /// The holder of `at`.
    pub fn holder(&self, at: &str) -> Option<u16> {
        self.core.devices().iter().find(|d| d.function.bdf == bdf(at)).and_then(|d| d.holder).map(|h| h.task)
    }

    /// The effects journaled since the last call.
    pub fn take_journal(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.world.borrow_mut().journal)
    }

    /// The slots holding capabilities now.
    pub fn live(&self) -> BTreeSet<u32> {
        self.world.borrow().kernel.live.clone()
    }
}

/// The slot a task's own task capability arrives in, in the model.
pub fn own_task(task: u16) -> Slot {
    Slot(1000 + u32::from(task))
}

/// The refusal in an answer: its code and reason.
/// Asserts that `answer` refuses with `code` and a reason naming each of `words`.
#[track_caller]
pub fn assert_refused(answer: &Answer, code: ErrorCode, words: &[&str]) {
    let (refused, reason) = refusal(answer);
    assert_eq!(refused, code, "{reason}");
    for word in words {
        assert!(reason.contains(word), "{word:?} missing from {reason:?}");
    }
}

pub fn refusal(answer: &Answer) -> (ErrorCode, String) {
    match &answer.reply {
        Reply::Refused { code, reason } => (*code, reason.as_str().to_owned()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
