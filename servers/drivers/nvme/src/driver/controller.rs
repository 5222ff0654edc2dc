//! One NVMe controller driven through BAR0 and the driver's DMA frame.
//!
//! Commands run one at a time per queue. Admin completions are polled;
//! I/O completions are polled too until the driver gives the controller
//! an MSI-X vector, and are then waited for on it. The controller states
//! no bound for a command, so the wait uses CAP.TO, its own worst case for
//! becoming ready: a controller slower than that is treated as hung.

use capabilities::ErrorCode;
use nvme::command::{self, Direction, Identify};
use nvme::identify::{self, IDENTIFY_BYTES, Namespace};
use nvme::pair::QueuePair;
use nvme::queue::{CompletionEntry, QueueMemory, SubmissionEntry};
use nvme::registers::{self, Capabilities, ControllerStatus};
use nvme::wait::{self, Clock};
use nvme::{Error, prp};
use userlib::cap::{Cap, DeviceMemory, Frame, Interrupt, Notification};
use userlib::mmio::Mapping;
use userlib::syscall;

use super::memory::Region;
use crate::{PAGE, PAGE_SHIFT};

/// Pages of the DMA frame, by use.
mod page {
    pub const ADMIN_SUBMISSIONS: u64 = 0;
    pub const ADMIN_COMPLETIONS: u64 = 1;
    pub const IO_SUBMISSIONS: u64 = 2;
    pub const IO_COMPLETIONS: u64 = 3;
    pub const IDENTIFY: u64 = 4;
    /// Two pages, so a transfer may cross a page and use both PRPs.
    pub const DATA: u64 = 5;
}

/// Pages in the DMA frame: a power of two, as frames are; the last is
/// spare.
pub const FRAME_PAGES: u64 = 8;
/// Bytes of data one transfer may move.
pub const DATA_BYTES: u64 = 2 * PAGE;
/// Entries in each queue: few, since one command is in flight at a time.
const ENTRIES: u16 = 16;
/// The I/O queue pair's identifier.
const IO_QUEUE: u16 = 1;

/// An MSI-X vector the I/O completion queue raises, delivered as a bit of
/// the driver's notification.
#[derive(Clone, Copy)]
pub struct CompletionInterrupt {
    /// The MSI-X table entry, as Create I/O Completion Queue names it.
    pub entry: u16,
    /// The interrupt capability the PCI server granted for the entry.
    pub interrupt: Cap<Interrupt>,
    /// The notification it is bound to.
    pub raised: Cap<Notification>,
}

/// A controller and the host's side of its queues.
pub struct Controller {
    registers: Mapping<DeviceMemory>,
    memory: Mapping<Frame>,
    iova: u64,
    /// The controller's capabilities (CAP).
    pub capabilities: Capabilities,
    admin: QueuePair,
    io: Option<QueuePair>,
    interrupt: Option<CompletionInterrupt>,
    interrupts_taken: u64,
}

fn region(memory: &Mapping<Frame>, iova: u64, first: u64, pages: u64) -> Region<'_> {
    Region::new(memory, iova, first, pages)
}

/// Waits by yielding between looks.
struct Polling;

impl Clock for Polling {
    fn now_micros(&self) -> u64 {
        syscall::now()
    }

    fn pause(&mut self, _: u64) -> Result<(), Error> {
        syscall::yield_now();
        Ok(())
    }
}

/// Waits by sleeping until the completion interrupt, counting each taken.
struct Interrupted {
    interrupt: CompletionInterrupt,
    taken: u64,
}

impl Clock for Interrupted {
    fn now_micros(&self) -> u64 {
        syscall::now()
    }

    fn pause(&mut self, micros: u64) -> Result<(), Error> {
        match self.interrupt.raised.wait(0, micros.max(1)) {
            Ok(_) => {
                self.interrupt.interrupt.acknowledge().map_err(|_| Error::InterruptWait)?;
                self.taken += 1;
                Ok(())
            }
            Err(ErrorCode::TimedOut) => Ok(()),
            Err(_) => Err(Error::InterruptWait),
        }
    }
}

impl Controller {
    /// The controller behind `registers`, with `memory` mapped for the
    /// device at `iova`; nothing is written to it yet.
    pub fn new(registers: Mapping<DeviceMemory>, memory: Mapping<Frame>, iova: u64) -> Result<Self, Error> {
        let cap = registers.read64(registers::CAP).ok_or(Error::OutOfBounds)?;
        let capabilities = Capabilities::decode(cap);
        capabilities.check_queue_entries(ENTRIES)?;
        // The highest doorbell the driver rings must be inside the grant.
        if capabilities.completion_doorbell(IO_QUEUE) + 4 > registers.len() {
            return Err(Error::OutOfBounds);
        }
        Ok(Self {
            registers,
            memory,
            iova,
            capabilities,
            admin: QueuePair::new(0, ENTRIES)?,
            io: None,
            interrupt: None,
            interrupts_taken: 0,
        })
    }

    /// The version register.
    pub fn version(&self) -> Result<u32, Error> {
        self.registers.read32(registers::VS).ok_or(Error::OutOfBounds)
    }

    /// The controller status.
    pub fn status(&self) -> Result<ControllerStatus, Error> {
        self.registers.read32(registers::CSTS).map(ControllerStatus::decode).ok_or(Error::OutOfBounds)
    }

    fn write32(&self, offset: u64, value: u32) -> Result<(), Error> {
        self.registers.write32(offset, value).ok_or(Error::OutOfBounds)
    }

    /// Writes a 64-bit register as two halves, low first, which every
    /// controller accepts.
    fn write64(&self, offset: u64, value: u64) -> Result<(), Error> {
        self.write32(offset, value as u32)?;
        self.write32(offset + 4, (value >> 32) as u32)
    }

    /// Waits, at most CAP.TO, for CSTS.RDY to read `ready`.
    fn wait_ready(&self, ready: bool) -> Result<(), Error> {
        let bound = self.capabilities.ready_timeout_micros;
        wait::until(&mut Polling, bound, || Ok(self.status()?.reached(ready)?.then_some(())))
    }

    /// Disables the controller (CC.EN cleared), which resets its queues,
    /// and waits for it to say so.
    pub fn reset(&mut self) -> Result<(), Error> {
        self.write32(registers::CC, 0)?;
        self.io = None;
        self.wait_ready(false)
    }

    /// Sets up empty admin queues and enables the controller with 4 KiB
    /// pages, waiting for it to become ready.
    pub fn enable(&mut self) -> Result<(), Error> {
        self.capabilities.check(PAGE_SHIFT)?;
        let mut submissions = region(&self.memory, self.iova, page::ADMIN_SUBMISSIONS, 1);
        let mut completions = region(&self.memory, self.iova, page::ADMIN_COMPLETIONS, 1);
        submissions.zero()?;
        completions.zero()?;
        self.write32(registers::AQA, registers::admin_queue_attributes(ENTRIES))?;
        self.write64(registers::ASQ, submissions.iova)?;
        self.write64(registers::ACQ, completions.iova)?;
        self.admin = QueuePair::new(0, ENTRIES)?;
        self.write32(registers::CC, registers::enabled_configuration(PAGE_SHIFT))?;
        self.wait_ready(true)
    }

    /// Runs one command on `pair` and waits for its completion: on
    /// `interrupt` if given, else by polling.
    fn execute(
        &mut self,
        pair: &mut QueuePair,
        (submission_page, completion_page): (u64, u64),
        interrupt: Option<CompletionInterrupt>,
        build: impl FnOnce(u16) -> Result<SubmissionEntry, Error>,
    ) -> Result<CompletionEntry, Error> {
        let mut submissions = region(&self.memory, self.iova, submission_page, 1);
        let tail = pair.submit(&mut submissions, build)?;
        self.write32(self.capabilities.submission_doorbell(pair.id()), u32::from(tail))?;
        let bound = self.capabilities.ready_timeout_micros;
        let this = &*self;
        let look = |pair: &mut QueuePair| -> Result<Option<CompletionEntry>, Error> {
            let completions = region(&this.memory, this.iova, completion_page, 1);
            let Some((entry, head)) = pair.reap(&completions)? else {
                this.status()?.reached(true)?;
                return Ok(None);
            };
            this.write32(this.capabilities.completion_doorbell(pair.id()), u32::from(head))?;
            Ok(Some(entry))
        };
        let waited = match interrupt {
            Some(interrupt) => {
                // Wait for the interrupt before the first look: the message
                // for this command comes after the doorbell, so it is never
                // left pending by a completion seen early; a stale one costs
                // one more look.
                let mut clock = Interrupted { interrupt, taken: 0 };
                let mut first = true;
                let waited =
                    wait::until(&mut clock, bound, || if core::mem::take(&mut first) { Ok(None) } else { look(pair) });
                self.interrupts_taken += clock.taken;
                waited
            }
            None => wait::until(&mut Polling, bound, || look(pair)),
        };
        if let Err(Error::Timeout { .. }) = waited {
            pair.abandon();
        }
        let entry = waited?;
        entry.outcome().map(|_| entry)
    }

    /// Has the I/O completion queue, once created, raise `interrupt`.
    pub fn use_interrupt(&mut self, interrupt: CompletionInterrupt) {
        self.interrupt = Some(interrupt);
    }

    /// Completion interrupts taken so far.
    pub fn interrupts_taken(&self) -> u64 {
        self.interrupts_taken
    }

    fn admin(&mut self, build: impl FnOnce(u16) -> Result<SubmissionEntry, Error>) -> Result<CompletionEntry, Error> {
        let mut pair = self.admin;
        let result = self.execute(&mut pair, (page::ADMIN_SUBMISSIONS, page::ADMIN_COMPLETIONS), None, build);
        self.admin = pair;
        result
    }

    /// Runs Identify and copies its structure out of the identify page.
    fn identify(&mut self, what: Identify) -> Result<[u8; IDENTIFY_BYTES], Error> {
        let buffer = region(&self.memory, self.iova, page::IDENTIFY, 1);
        let prp = prp::build(&buffer.pages()[..1], 0, PAGE, PAGE_SHIFT)?;
        self.admin(|id| Ok(command::identify(id, what, prp)))?;
        let mut data = [0; IDENTIFY_BYTES];
        region(&self.memory, self.iova, page::IDENTIFY, 1).read(0, &mut data)?;
        Ok(data)
    }

    /// Identify Controller, decoded.
    pub fn identify_controller(&mut self) -> Result<identify::Controller, Error> {
        identify::Controller::decode(&self.identify(Identify::Controller)?)
    }

    /// Identify Namespace `namespace`, decoded.
    pub fn identify_namespace(&mut self, namespace: u32) -> Result<Namespace, Error> {
        Namespace::decode(&self.identify(Identify::Namespace(namespace))?)
    }

    /// Creates I/O queue pair 1: its completion queue, then its submission
    /// queue, in zeroed pages.
    pub fn create_io_queues(&mut self) -> Result<(), Error> {
        let mut submissions = region(&self.memory, self.iova, page::IO_SUBMISSIONS, 1);
        let mut completions = region(&self.memory, self.iova, page::IO_COMPLETIONS, 1);
        submissions.zero()?;
        completions.zero()?;
        let (submissions, completions) = (submissions.iova, completions.iova);
        let vector = self.interrupt.map(|interrupt| interrupt.entry);
        self.admin(|id| command::create_completion_queue(id, IO_QUEUE, ENTRIES, completions, vector))?;
        self.admin(|id| command::create_submission_queue(id, IO_QUEUE, ENTRIES, submissions, IO_QUEUE))?;
        self.io = Some(QueuePair::new(IO_QUEUE, ENTRIES)?);
        Ok(())
    }

    /// Moves `blocks` blocks of `namespace` from block `first` to or from
    /// the data pages at `offset`, after checking the range against the
    /// namespace: a bad range never reaches the device.
    pub fn transfer(
        &mut self,
        direction: Direction,
        namespace: u32,
        geometry: &Namespace,
        first: u64,
        blocks: u32,
        offset: u64,
    ) -> Result<(), Error> {
        geometry.check_range(first, u64::from(blocks))?;
        self.transfer_unchecked(direction, namespace, geometry.block_shift, first, blocks, offset)
    }

    /// [`Controller::transfer`] without the range check, so a test can see
    /// what the device itself answers.
    pub fn transfer_unchecked(
        &mut self,
        direction: Direction,
        namespace: u32,
        block_shift: u8,
        first: u64,
        blocks: u32,
        offset: u64,
    ) -> Result<(), Error> {
        let length = u64::from(blocks).checked_shl(u32::from(block_shift)).ok_or(Error::BadBuffer)?;
        let data = region(&self.memory, self.iova, page::DATA, 2);
        let prp = prp::build(&data.pages(), offset, length, PAGE_SHIFT)?;
        if offset + length > DATA_BYTES {
            return Err(Error::BadBuffer);
        }
        self.transfer_at(direction, namespace, first, blocks, prp)
    }

    /// Sends a Read or Write whose data is wherever `prp` says, even
    /// outside the driver's frame: how a test aims the controller at an
    /// IOVA nobody mapped, to see the IOMMU block it.
    pub fn transfer_at(
        &mut self,
        direction: Direction,
        namespace: u32,
        first: u64,
        blocks: u32,
        prp: prp::Prp,
    ) -> Result<(), Error> {
        self.io_command(|id| command::transfer(id, direction, namespace, first, blocks, prp))
    }

    /// Flushes `namespace`'s volatile write cache.
    pub fn flush(&mut self, namespace: u32) -> Result<(), Error> {
        self.io_command(|id| Ok(command::flush(id, namespace)))
    }

    /// Runs the command `build` makes on the I/O queue pair.
    fn io_command(&mut self, build: impl FnOnce(u16) -> Result<SubmissionEntry, Error>) -> Result<(), Error> {
        let mut pair = self.io.ok_or(Error::NoQueue)?;
        let interrupt = self.interrupt;
        let result = self.execute(&mut pair, (page::IO_SUBMISSIONS, page::IO_COMPLETIONS), interrupt, build);
        self.io = Some(pair);
        match result {
            // A controller that stopped answering, or says it is broken,
            // gets a reset and fresh queues, so the next command has a
            // chance; this one's error is still the caller's to see.
            Err(error @ (Error::Timeout { .. } | Error::ControllerFatal)) => {
                self.recover()?;
                Err(error)
            }
            result => result.map(|_| ()),
        }
    }

    /// Resets the controller and builds its admin and I/O queues again;
    /// the namespace's data stays.
    pub fn recover(&mut self) -> Result<(), Error> {
        self.reset()?;
        self.enable()?;
        self.create_io_queues()
    }

    /// The first IOVA past the driver's frame, which nothing maps.
    pub fn past_the_frame(&self) -> u64 {
        self.iova + FRAME_PAGES * PAGE
    }

    /// The data pages, for the caller to fill and check.
    pub fn data(&self) -> Region<'_> {
        region(&self.memory, self.iova, page::DATA, 2)
    }
}
