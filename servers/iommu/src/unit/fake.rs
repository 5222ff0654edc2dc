//! A model of QEMU 7.2's VT-d registers for the unit tests and, with the `testing` feature, the fuzz targets.
//!
//! It follows what `hw/i386/intel_iommu.c` does with each access and notes
//! every access QEMU would abort on or silently ignore, so tests can
//! require that none happened.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use super::queue::QueueMemory;
use crate::invalidation::Descriptor;
use crate::registers::{Register32, Register64, Registers, ccmd, frcd, fsts, gcmd, gsts, iotlb};

/// Offsets QEMU accepts only 4-byte accesses to (it asserts the size).
const ONLY_32: [u32; 20] = [
    0x00, 0x18, 0x1c, 0x24, 0x2c, 0x34, 0x38, 0x3c, 0x44, 0x64, 0x84, 0x8c, 0x94, 0x9c, 0xa0, 0xa4, 0xa8, 0xac, 0xbc,
    0x22c,
];

/// Memory shared by the model and the queue memory the unit writes.
#[derive(Default)]
pub struct SharedMemory {
    /// Invalidation-queue slots the server wrote, by index.
    pub descriptors: BTreeMap<u32, Descriptor>,
    /// Status words the unit wrote for wait descriptors, by address.
    pub status: BTreeMap<u64, u32>,
    /// Where the server's status word is.
    pub status_address: u64,
    /// Every invalidation the unit carried out, in order (its
    /// [`Event::Queued`], [`Event::ContextRegister`] and
    /// [`Event::IotlbRegister`]): here, where a model of the kernel can
    /// see how far the unit had got when the server released a pin.
    pub invalidations: Vec<Event>,
}

/// The unit's view of the shared memory.
pub struct FakeQueue(pub Rc<RefCell<SharedMemory>>);

impl QueueMemory for FakeQueue {
    fn write_descriptor(&mut self, slot: u32, descriptor: Descriptor) {
        self.0.borrow_mut().descriptors.insert(slot, descriptor);
    }

    fn read_status(&mut self) -> u32 {
        let memory = self.0.borrow();
        memory.status.get(&memory.status_address).copied().unwrap_or(0)
    }

    fn write_status(&mut self, value: u32) {
        let mut memory = self.0.borrow_mut();
        let address = memory.status_address;
        memory.status.insert(address, value);
    }
}

/// Something the unit did to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A global command (GCMD value written).
    Gcmd(u32),
    /// A 32-bit register write: offset, value.
    Write32(u32, u32),
    /// A 64-bit register write: offset, value.
    Write64(u32, u64),
    /// A context-cache invalidation through CCMD.
    ContextRegister(u64),
    /// An IOTLB invalidation through the IOTLB registers.
    IotlbRegister {
        /// IVA: the address invalidated.
        address: u64,
        /// IOTLB command register.
        command: u64,
    },
    /// A descriptor the unit took from the invalidation queue.
    Queued(Descriptor),
}

/// A device's fault that reaches the unit while the server works: right
/// after the server's next access (read or write) to register `after`,
/// one fault an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// Byte offset of the register whose access lets the fault in.
    pub after: u32,
    /// The faulting requester's source id.
    pub source: u16,
    /// The address it tried to write.
    pub address: u64,
}

/// What the model did with the faults devices made ([`FakeUnit::fault`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FaultOutcomes {
    /// Put in a fault recording register.
    pub recorded: u32,
    /// Not recorded: a record of the same requester was still pending.
    pub collapsed: u32,
    /// Not recorded: the next register was full (PFO set then) or PFO was
    /// set already.
    pub lost: u32,
    /// Fault events (interrupts) raised.
    pub events: u32,
}

/// The model's state.
pub struct FakeUnit {
    /// The capability register.
    pub cap: u64,
    /// The extended capability register.
    pub ecap: u64,
    /// Global status.
    pub gsts: u32,
    /// Fault status.
    pub fsts: u32,
    /// Other 64-bit registers, by offset.
    pub regs64: BTreeMap<u32, u64>,
    /// Other 32-bit registers, by offset.
    pub regs32: BTreeMap<u32, u32>,
    /// The memory the unit shares with the server.
    pub memory: Rc<RefCell<SharedMemory>>,
    /// Slots of the invalidation queue.
    pub queue_slots: u32,
    /// The queue head (the next slot the unit takes).
    pub head: u32,
    /// Reads of the queue head register.
    pub head_reads: usize,
    /// What the server did to the unit, in order.
    pub events: Vec<Event>,
    /// What QEMU would abort on or ignore.
    pub violations: Vec<String>,
    /// Commands take effect but status bits never change (a hung unit).
    pub stuck: bool,
    /// Every queued descriptor is refused (FSTS.IQE), as a unit whose
    /// queue broke would.
    pub refuse_queue: bool,
    /// Faults still to arrive, in order, each after an access of the
    /// server's.
    pub arrivals: VecDeque<Arrival>,
    /// What became of the faults devices made.
    pub outcomes: FaultOutcomes,
    /// The recording register the next fault goes into.
    next_record: u32,
}

impl FakeUnit {
    /// A unit with these capability registers, off.
    pub fn new(cap: u64, ecap: u64) -> Self {
        Self {
            cap,
            ecap,
            gsts: 0,
            fsts: 0,
            regs64: BTreeMap::new(),
            regs32: BTreeMap::new(),
            memory: Rc::new(RefCell::new(SharedMemory { status_address: 0x9_0000, ..SharedMemory::default() })),
            queue_slots: 0,
            head: 0,
            head_reads: 0,
            events: Vec::new(),
            violations: Vec::new(),
            stuck: false,
            refuse_queue: false,
            arrivals: VecDeque::new(),
            outcomes: FaultOutcomes::default(),
            next_record: 0,
        }
    }

    /// Records an invalidation the unit carried out, in both logs.
    fn note(&mut self, invalidation: Event) {
        self.memory.borrow_mut().invalidations.push(invalidation.clone());
        self.events.push(invalidation);
    }

    /// The queue memory the server writes, shared with this unit.
    pub fn queue_memory(&self) -> FakeQueue {
        FakeQueue(self.memory.clone())
    }

    /// Puts a fault in recording register `index` and raises PPF.
    pub fn inject_fault(&mut self, index: u32, low: u64, high: u64) {
        let offset = self.fault_offset() + 16 * index;
        self.regs64.insert(offset, low);
        self.regs64.insert(offset + 8, high);
        self.fsts |= fsts::PPF;
    }

    /// A device's write to `address` faults (reason 2, a blocked
    /// requester), handled as QEMU 7.2's `vtd_report_dmar_fault` does:
    /// nothing is recorded while PFO is set, nor while a record of the same
    /// requester is pending; if the next register in turn is full, PFO is
    /// set and the fault lost; otherwise it is recorded there, and a fault
    /// event raised unless one is pending already (PPF, or IQE).
    pub fn fault(&mut self, source: u16, address: u64) {
        let count = self.record_count();
        let pending = |unit: &Self, index: u32| unit.record_high(index) & frcd::F != 0;
        if self.fsts & fsts::PFO != 0 {
            self.outcomes.lost += 1;
            return;
        }
        if (0..count).any(|index| pending(self, index) && self.record_high(index) as u16 == source) {
            self.outcomes.collapsed += 1;
            return;
        }
        if pending(self, self.next_record) {
            self.fsts |= fsts::PFO;
            self.outcomes.lost += 1;
            return;
        }
        let offset = self.fault_offset() + 16 * self.next_record;
        self.regs64.insert(offset, address & !0xfff);
        self.regs64.insert(offset + 8, frcd::F | 2 << 32 | u64::from(source));
        self.outcomes.recorded += 1;
        if self.fsts & (fsts::PPF | fsts::IQE) == 0 {
            self.fsts = self.fsts & !(0xff << fsts::FRI_SHIFT) | self.next_record << fsts::FRI_SHIFT;
            self.outcomes.events += 1;
        }
        self.fsts |= fsts::PPF;
        self.next_record = (self.next_record + 1) % count;
    }

    /// CAP.NFR + 1.
    fn record_count(&self) -> u32 {
        (self.cap >> 40 & 0xff) as u32 + 1
    }

    fn record_high(&self, index: u32) -> u64 {
        self.regs64.get(&(self.fault_offset() + 16 * index + 8)).copied().unwrap_or(0)
    }

    /// The index of the recording register whose high half is at `offset`.
    fn record_at(&self, offset: u32) -> Option<u32> {
        let relative = offset.checked_sub(self.fault_offset() + 8)?;
        (relative % 16 == 0 && relative / 16 < self.record_count()).then_some(relative / 16)
    }

    /// Lets in the next fault if it waits for an access to `offset`.
    fn arrive(&mut self, offset: u32) {
        if let Some(arrival) = self.arrivals.front().copied().filter(|arrival| arrival.after == offset) {
            self.arrivals.pop_front();
            self.fault(arrival.source, arrival.address);
        }
    }

    fn fault_offset(&self) -> u32 {
        ((self.cap >> 24 & 0x3ff) * 16) as u32
    }

    fn iotlb_offset(&self) -> u32 {
        ((self.ecap >> 8 & 0x3ff) * 16) as u32
    }

    fn command(&mut self, value: u32) {
        self.events.push(Event::Gcmd(value));
        let changed = (value ^ (self.gsts & gcmd::PRESERVE_MASK)).count_ones();
        if changed != 1 {
            self.violations.push(format!("GCMD {value:#x} changes {changed} bits of GSTS {:#x}", self.gsts));
        }
        if self.stuck {
            return;
        }
        let toggle = |status: &mut u32, bit: u32| {
            if value & bit != 0 {
                *status |= bit;
            } else {
                *status &= !bit;
            }
        };
        toggle(&mut self.gsts, gsts::TES);
        toggle(&mut self.gsts, gsts::IRES);
        if value & gcmd::SRTP != 0 {
            self.gsts |= gsts::RTPS;
        }
        if value & gcmd::SIRTP != 0 {
            self.gsts |= gsts::IRTPS;
        }
        if (value ^ self.gsts) & gcmd::QIE != 0 {
            if value & gcmd::QIE != 0 {
                let iqa = self.regs64.get(&0x90).copied().unwrap_or(0);
                self.queue_slots = 256 << (iqa & 7);
                self.head = 0;
            }
            toggle(&mut self.gsts, gsts::QIES);
        }
    }

    fn process_queue(&mut self, tail: u32) {
        if self.gsts & gsts::QIES == 0 || self.fsts & fsts::IQE != 0 {
            return;
        }
        if tail >= self.queue_slots || self.refuse_queue {
            self.fsts |= fsts::IQE;
            return;
        }
        while self.head != tail {
            let descriptor = self.memory.borrow().descriptors.get(&self.head).copied();
            let Some(descriptor) = descriptor else {
                self.fsts |= fsts::IQE;
                return;
            };
            let valid = match descriptor.kind() {
                1 => descriptor.low & 0xfffc_0000_0000_ffc0 == 0 && descriptor.high == 0,
                2 => descriptor.low & 0xffff_ffff_0000_ff00 == 0 && descriptor.high & 0xf80 == 0,
                4 => true,
                5 => {
                    if descriptor.low & 0x30 == 0x30 {
                        self.violations.push("wait descriptor with status write and interrupt".into());
                    }
                    if descriptor.low & 0x20 != 0 {
                        let mut memory = self.memory.borrow_mut();
                        if descriptor.high != memory.status_address {
                            self.violations.push(format!("status written to {:#x}", descriptor.high));
                        }
                        memory.status.insert(descriptor.high, (descriptor.low >> 32) as u32);
                    }
                    descriptor.low & 0xffff_ff80 == 0 && descriptor.low & 0x30 != 0
                }
                _ => false,
            };
            if !valid {
                self.fsts |= fsts::IQE;
                return;
            }
            self.note(Event::Queued(descriptor));
            self.head = (self.head + 1) % self.queue_slots;
        }
    }
}

impl Registers for FakeUnit {
    fn read32(&mut self, register: Register32) -> u32 {
        let value = match register.offset {
            0x00 => 0x10,
            0x1c => self.gsts,
            0x34 => self.fsts,
            offset => self.regs32.get(&offset).copied().unwrap_or(0),
        };
        self.arrive(register.offset);
        value
    }

    fn read64(&mut self, register: Register64) -> u64 {
        let value = self.read64_value(register);
        self.arrive(register.offset);
        value
    }

    fn write32(&mut self, register: Register32, value: u32) {
        self.write32_value(register, value);
        self.arrive(register.offset);
    }

    fn write64(&mut self, register: Register64, value: u64) {
        self.write64_value(register, value);
        self.arrive(register.offset);
    }
}

impl FakeUnit {
    fn read64_value(&mut self, register: Register64) -> u64 {
        if ONLY_32.contains(&register.offset) {
            self.violations.push(format!("8-byte read of 32-bit register {}", register.name));
        }
        match register.offset {
            0x08 => self.cap,
            0x10 => self.ecap,
            0x80 => {
                self.head_reads += 1;
                u64::from(self.head) << 4
            }
            offset => self.regs64.get(&offset).copied().unwrap_or(0),
        }
    }

    fn write32_value(&mut self, register: Register32, value: u32) {
        if !ONLY_32.contains(&register.offset) && register.offset != 0x40 {
            self.violations.push(format!("4-byte write to 64-bit register {}", register.name));
        }
        self.events.push(Event::Write32(register.offset, value));
        match register.offset {
            0x18 => self.command(value),
            0x34 => {
                self.fsts &= !(value & fsts::ERRORS);
            }
            offset => {
                self.regs32.insert(offset, value);
            }
        }
    }

    fn write64_value(&mut self, register: Register64, value: u64) {
        if ONLY_32.contains(&register.offset) {
            self.violations.push(format!("8-byte write to 32-bit register {} (QEMU aborts)", register.name));
        }
        self.events.push(Event::Write64(register.offset, value));
        if self.record_at(register.offset).is_some() {
            // F is write-1-to-clear, the rest read-only; PPF says whether
            // any record is still pending.
            let current = self.regs64.get(&register.offset).copied().unwrap_or(0);
            self.regs64.insert(register.offset, current & !(value & frcd::F));
            if (0..self.record_count()).all(|index| self.record_high(index) & frcd::F == 0) {
                self.fsts &= !fsts::PPF;
            }
            return;
        }
        let iotlb_command = self.iotlb_offset() + 8;
        match register.offset {
            0x28 if value & ccmd::ICC != 0 => {
                if self.gsts & gsts::QIES != 0 {
                    self.violations.push("CCMD while queued invalidation is on (QEMU ignores it)".into());
                    self.regs64.insert(0x28, value);
                    return;
                }
                self.note(Event::ContextRegister(value));
                let granularity = value >> ccmd::CIRG_SHIFT & 3;
                self.regs64.insert(0x28, granularity << ccmd::CAIG_SHIFT);
            }
            0x88 => {
                self.regs64.insert(0x88, value);
                self.process_queue((value >> 4 & 0x7fff) as u32);
            }
            offset if offset == iotlb_command && value & iotlb::IVT != 0 => {
                if self.gsts & gsts::QIES != 0 {
                    self.violations.push("IOTLB register while queued invalidation is on".into());
                    self.regs64.insert(offset, value);
                    return;
                }
                let address = self.regs64.get(&self.iotlb_offset()).copied().unwrap_or(0);
                self.note(Event::IotlbRegister { address, command: value });
                let granularity = value >> iotlb::IIRG_SHIFT & 3;
                self.regs64.insert(offset, granularity << iotlb::IAIG_SHIFT);
            }
            offset => {
                self.regs64.insert(offset, value);
            }
        }
    }
}
