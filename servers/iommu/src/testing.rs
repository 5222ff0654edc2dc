//! Simulated table memory and kernel for the unit tests and, with the `testing` feature, the fuzz targets.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

use capabilities::ErrorCode;
use capabilities::pci::{Bdf, BridgeBuses, HeaderKind, PciFunction, PcieDeviceType};

use crate::memory::{ENTRIES_PER_PAGE, TablePage, TablePages};
use crate::service::kernel::{Kernel, Pin};
use crate::service::{Platform, UnitParts};
use crate::unit::QueueConfig;
use crate::unit::fake::{FakeQueue, FakeUnit, SharedMemory};

/// The simulated platform: QEMU's unit model, its queue, simulated table memory.
pub struct Simulated;

impl Platform for Simulated {
    type Registers = FakeUnit;
    type Queue = FakeQueue;
    type Pages = FakePages;
}

/// Table pages in a map, with a page budget and a record of flushes.
pub struct FakePages {
    /// Pages handed out, by address, with their entries.
    pub pages: BTreeMap<u64, Vec<u64>>,
    /// Addresses of pages released at least once.
    pub released: BTreeSet<u64>,
    /// Write-backs asked for: page, first entry, entries.
    pub flushes: Vec<(TablePage, usize, usize)>,
    /// Entries written and not yet flushed.
    pub dirty: BTreeSet<(u64, usize)>,
    /// Most pages handed out at once.
    pub budget: usize,
    /// Entries read so far.
    pub reads: std::cell::Cell<usize>,
    next: u64,
}

impl FakePages {
    /// Memory that hands out at most `budget` pages.
    pub fn new(budget: usize) -> Self {
        Self {
            pages: BTreeMap::new(),
            released: BTreeSet::new(),
            flushes: Vec::new(),
            dirty: BTreeSet::new(),
            budget,
            reads: std::cell::Cell::new(0),
            next: 0x10_0000,
        }
    }

    /// Pages handed out and not released.
    pub fn live(&self) -> usize {
        self.pages.len()
    }
}

impl TablePages for FakePages {
    fn in_use(&self) -> usize {
        self.live()
    }

    fn spare(&self) -> usize {
        self.budget.saturating_sub(self.live())
    }

    fn grow(&mut self) -> bool {
        false
    }

    fn allocate(&mut self) -> Option<TablePage> {
        if self.pages.len() >= self.budget {
            return None;
        }
        let address = self.next;
        self.next += 0x1000;
        self.pages.insert(address, vec![0; ENTRIES_PER_PAGE]);
        TablePage::new(address)
    }

    fn release(&mut self, page: TablePage) {
        assert!(self.pages.remove(&page.address()).is_some(), "released a page twice: {page:?}");
        self.dirty.retain(|(address, _)| *address != page.address());
        self.released.insert(page.address());
    }

    fn read(&self, page: TablePage, index: usize) -> u64 {
        assert!(index < ENTRIES_PER_PAGE);
        self.reads.set(self.reads.get() + 1);
        self.pages.get(&page.address()).expect("read of a page not handed out")[index]
    }

    fn write(&mut self, page: TablePage, index: usize, value: u64) {
        assert!(index < ENTRIES_PER_PAGE);
        self.pages.get_mut(&page.address()).expect("write to a page not handed out")[index] = value;
        self.dirty.insert((page.address(), index));
    }

    fn flush(&mut self, page: TablePage, first: usize, count: usize) {
        assert!(first + count <= ENTRIES_PER_PAGE && count > 0);
        assert!(self.pages.contains_key(&page.address()), "flush of a page not handed out");
        self.flushes.push((page, first, count));
        for index in first..first + count {
            self.dirty.remove(&(page.address(), index));
        }
    }
}

/// A kernel that records what the server asked of it.
#[derive(Default)]
pub struct FakeKernel {
    /// Frame capabilities the next request brings: slot -> pages.
    pub frames: BTreeMap<u32, u64>,
    /// Those of them sent without the write right.
    pub read_only: BTreeSet<u32>,
    /// Pins alive: handle -> pages.
    pub pins: BTreeMap<u64, u64>,
    /// Those of them a device may write.
    pub writable_pins: BTreeSet<u64>,
    /// The last pin handle given.
    pub next_pin: u64,
    /// Capabilities minted and not revoked: slot -> badge.
    pub minted: BTreeMap<u32, u64>,
    /// Slots revoked, in order.
    pub revoked: Vec<u32>,
    /// Received slots the server deleted, in order.
    pub deleted: Vec<u32>,
    /// Task capabilities the next request brings: slot -> task.
    pub tasks: BTreeMap<u32, u16>,
    /// Tasks the server asked to be told of the death of.
    pub watched: BTreeSet<u16>,
    /// Times the server asked the PCI server to quiesce groups.
    pub reclaims: u32,
    /// The last slot a mint filled.
    pub next_slot: u32,
    /// Pins revoked and not yet named to the server, oldest first.
    pub revoked_pins: VecDeque<u64>,
    /// The unit's memory, when unpins are to be ordered against its
    /// invalidations.
    pub unit: Option<Rc<RefCell<SharedMemory>>>,
    /// Each pin released while `unit` was set, with the number of
    /// invalidations the unit had carried out by then.
    pub unpins: Vec<(u64, usize)>,
}

impl FakeKernel {
    /// The physical address the frame of pin `handle` is at.
    pub fn physical(handle: u64) -> u64 {
        0x4000_0000 + handle * 0x10_0000
    }

    /// Revokes pin `handle`, as revoking its frame capability would: the
    /// server is named it once by [`Kernel::revoked_pin`]; it stays pinned.
    pub fn revoke_pin(&mut self, handle: u64) {
        assert!(self.pins.contains_key(&handle), "pin {handle} is not alive");
        if !self.revoked_pins.contains(&handle) {
            self.revoked_pins.push_back(handle);
        }
    }
}

impl Kernel for FakeKernel {
    fn pin(&mut self, slot: u32, device_writes: bool) -> Result<Pin, ErrorCode> {
        if device_writes && self.read_only.contains(&slot) {
            return Err(ErrorCode::PermissionDenied);
        }
        let pages = *self.frames.get(&slot).ok_or(ErrorCode::WrongKind)?;
        self.next_pin += 1;
        self.pins.insert(self.next_pin, pages);
        if device_writes {
            self.writable_pins.insert(self.next_pin);
        }
        Ok(Pin { handle: self.next_pin, physical: Self::physical(self.next_pin), pages })
    }
    fn unpin(&mut self, pin: u64) {
        assert!(self.pins.remove(&pin).is_some(), "pin {pin} released twice");
        self.writable_pins.remove(&pin);
        if let Some(unit) = &self.unit {
            self.unpins.push((pin, unit.borrow().invalidations.len()));
        }
    }
    fn revoked_pin(&mut self) -> Option<u64> {
        self.revoked_pins.pop_front()
    }
    fn delete(&mut self, slot: u32) {
        self.deleted.push(slot);
    }
    fn mint(&mut self, badge: u64) -> Result<u32, ErrorCode> {
        self.next_slot += 1;
        self.minted.insert(self.next_slot, badge);
        Ok(self.next_slot)
    }
    fn revoke(&mut self, slot: u32) {
        assert!(self.minted.remove(&slot).is_some(), "revoked slot {slot} twice");
        self.revoked.push(slot);
    }
    fn task_of(&mut self, slot: u32) -> Option<u16> {
        self.tasks.get(&slot).copied()
    }
    fn watch(&mut self, _slot: u32, task: u16) -> Result<(), ErrorCode> {
        self.watched.insert(task);
        Ok(())
    }
    fn request_reclaim(&mut self) {
        self.reclaims += 1;
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Where QEMU 7.2 puts its unit's registers.
pub const QEMU_BASE: u64 = 0xfed9_0000;

/// `fake` as the unit at `base`, with an invalidation queue of 256
/// descriptors if `queued`, as the server binary hands a unit over.
pub fn unit_parts(base: u64, fake: FakeUnit, queued: bool) -> UnitParts<Simulated> {
    let config =
        || QueueConfig { base: TablePage::new(0x8_0000).expect("aligned"), size_order: 0, status_address: 0x9_0000 };
    let queue = queued.then(|| (fake.queue_memory(), config()));
    UnitParts { base, registers: fake, register_window: 4096, queue }
}

/// QEMU 7.2's capability register for `-device intel-iommu`.
pub const QEMU_CAP: u64 = 0x00d2_008c_2226_0206;
/// The same with `caching-mode=on`.
pub const QEMU_CAP_CACHING: u64 = 0x00d2_008c_2226_0286;
/// QEMU 7.2's extended capability register.
pub const QEMU_ECAP: u64 = 0xf0_0f4a;

/// An edu-like function at `bus:device.function` (see
/// `capabilities::testing::function`).
pub fn function(bus: u8, device: u8, function: u8, header: HeaderKind, pcie: Option<PcieDeviceType>) -> PciFunction {
    capabilities::testing::function(Bdf::new(bus, device, function).expect("a valid address"), header, pcie)
}

/// edu at 00:03.0 and 00:04.0, a PCIe-to-PCI bridge at 00:05.0 with two
/// edu behind it (01:01.0, 01:02.0): three groups.
pub fn topology() -> Vec<PciFunction> {
    let mut bridge = function(0, 5, 0, HeaderKind::PciBridge, Some(PcieDeviceType::PcieToPciBridge));
    bridge.bridge = Some(BridgeBuses { primary: 0, secondary: 1, subordinate: 1 });
    vec![
        function(0, 3, 0, HeaderKind::Normal, None),
        function(0, 4, 0, HeaderKind::Normal, None),
        bridge,
        function(1, 1, 0, HeaderKind::Normal, None),
        function(1, 2, 0, HeaderKind::Normal, None),
    ]
}
