//! The edu device's registers and its DMA engine, completion by MSI.

use capabilities::ErrorCode;
use userlib::cap::{Cap, DeviceMemory, Interrupt, Notification, own};
use userlib::mmio::Mapping;

/// What the identification register reads (version 1.0, "ed").
pub const IDENTIFICATION: u32 = 0x0100_00ed;

/// Register offsets in BAR0 (32-bit below 0x80, 64-bit from 0x80), for
/// this driver and for the test tasks that poke an edu directly.
pub mod reg {
    /// Reads [`IDENTIFICATION`](super::IDENTIFICATION).
    pub const IDENTIFICATION: u64 = 0x00;
    /// Reads back the complement of what was written.
    pub const LIVENESS: u64 = 0x04;
    /// Interrupt status: the bits raised and not yet acknowledged.
    pub const INTERRUPT_STATUS: u64 = 0x24;
    /// A write ORs its value into the status and sends one interrupt.
    pub const INTERRUPT_RAISE: u64 = 0x60;
    /// A write clears those bits of the status.
    pub const INTERRUPT_ACK: u64 = 0x64;
    /// DMA source address.
    pub const DMA_SOURCE: u64 = 0x80;
    /// DMA destination address.
    pub const DMA_DESTINATION: u64 = 0x88;
    /// DMA byte count.
    pub const DMA_COUNT: u64 = 0x90;
    /// DMA command ([`command`](super::command) bits).
    pub const DMA_COMMAND: u64 = 0x98;
}

/// DMA command bits.
pub mod command {
    /// Starts the transfer; the device clears it when the transfer ends.
    pub const RUN: u64 = 1;
    /// From the device's buffer to memory (else memory to the buffer).
    pub const TO_MEMORY: u64 = 2;
    /// Raise the DMA interrupt when done.
    pub const INTERRUPT: u64 = 4;
}

/// The interrupt status bit of a finished DMA.
const DMA_DONE: u32 = 0x100;
/// Where the device's own buffer sits in its DMA address map.
pub const DEVICE_BUFFER: u64 = 0x4_0000;
/// Its size.
pub const DEVICE_BUFFER_SIZE: u64 = 4096;
/// The notification bit the completion interrupt sets.
const DONE_BIT: u64 = 1;
/// QEMU runs an edu DMA 100 ms of virtual time after it is started; a
/// completion later than this means the device or its interrupt is gone.
const DMA_TIMEOUT_US: u64 = 2_000_000;

/// How often [`Edu::settle`] looks at a running transfer.
const SETTLE_POLL_US: u64 = 10_000;

/// One edu device with its BAR mapped and its interrupt bound.
pub struct Edu {
    registers: Mapping<DeviceMemory>,
    interrupt: Cap<Interrupt>,
    done: Cap<Notification>,
}

impl Edu {
    /// Maps BAR0 at `virt`, checks the identification register and binds
    /// the interrupt to `done`.
    pub fn new(
        bar: Cap<DeviceMemory>,
        interrupt: Cap<Interrupt>,
        done: Cap<Notification>,
        virt: u64,
    ) -> Result<Self, ErrorCode> {
        let registers = Mapping::map(own::SPACE, bar, virt, true)?;
        let edu = Self { registers, interrupt, done };
        if edu.registers.read32(reg::IDENTIFICATION) != Some(IDENTIFICATION) {
            edu.registers.unmap()?;
            return Err(ErrorCode::WrongKind);
        }
        edu.settle()?;
        edu.interrupt.bind(done, DONE_BIT)?;
        Ok(edu)
    }

    /// Waits out a transfer a previous holder left running (edu has no
    /// reset: a DMA started before the hand-over still completes, into the
    /// previous owner's IOVA, which the IOMMU now blocks) and clears its
    /// interrupt status, so the next completion is this holder's.
    fn settle(&self) -> Result<(), ErrorCode> {
        let mut waited = 0;
        while self.running() {
            if waited >= DMA_TIMEOUT_US {
                return Err(ErrorCode::Busy);
            }
            // Nothing is bound to `done` yet: the wait only times out.
            let _ = self.done.wait(0, SETTLE_POLL_US);
            waited += SETTLE_POLL_US;
        }
        let status = self.registers.read32(reg::INTERRUPT_STATUS).ok_or(ErrorCode::InvalidArgument)?;
        self.registers.write32(reg::INTERRUPT_ACK, status).ok_or(ErrorCode::InvalidArgument)
    }

    /// Copies `len` bytes by DMA from bus address `source` to `destination`
    /// (one of them inside the device's buffer) and waits for the
    /// completion interrupt.
    pub fn dma(&self, source: u64, destination: u64, len: u64, to_memory: bool) -> Result<(), ErrorCode> {
        self.start_notified(source, destination, len, to_memory)?;
        self.finish()
    }

    /// Waits for the completion interrupt of the transfer
    /// [`Self::start_notified`] began and acknowledges it; `Busy` if the
    /// device says it is not done.
    pub fn finish(&self) -> Result<(), ErrorCode> {
        self.done.wait(0, DMA_TIMEOUT_US)?;
        let status = self.registers.read32(reg::INTERRUPT_STATUS).ok_or(ErrorCode::InvalidArgument)?;
        self.registers.write32(reg::INTERRUPT_ACK, status).ok_or(ErrorCode::InvalidArgument)?;
        self.interrupt.acknowledge()?;
        if status & DMA_DONE == 0 || self.running() {
            return Err(ErrorCode::Busy);
        }
        Ok(())
    }

    /// Whether a transfer is still running.
    fn running(&self) -> bool {
        self.registers.read64(reg::DMA_COMMAND).is_some_and(|command| command & command::RUN != 0)
    }

    /// Starts a DMA without waiting for it, and without a completion
    /// interrupt (which the next [`Self::dma`] would take for its own).
    pub fn start(&self, source: u64, destination: u64, len: u64, to_memory: bool) -> Result<(), ErrorCode> {
        self.begin(source, destination, len, to_memory, 0)
    }

    /// Starts a DMA that raises the completion interrupt; [`Self::finish`]
    /// waits for it.
    pub fn start_notified(&self, source: u64, destination: u64, len: u64, to_memory: bool) -> Result<(), ErrorCode> {
        self.begin(source, destination, len, to_memory, command::INTERRUPT)
    }

    /// Programs and starts a transfer with the extra command bits `flags`;
    /// `Busy` while one runs (edu ignores register writes then, so the new
    /// one would never start).
    fn begin(&self, source: u64, destination: u64, len: u64, to_memory: bool, flags: u64) -> Result<(), ErrorCode> {
        // QEMU 7.2's edu stops the whole machine (hw_error) on a transfer
        // that ends exactly at its buffer's end, so a full buffer is refused.
        if len == 0 || len >= DEVICE_BUFFER_SIZE {
            return Err(ErrorCode::InvalidArgument);
        }
        if self.running() {
            return Err(ErrorCode::Busy);
        }
        let direction = if to_memory { command::TO_MEMORY } else { 0 };
        let r = &self.registers;
        r.write64(reg::DMA_SOURCE, source)
            .and_then(|()| r.write64(reg::DMA_DESTINATION, destination))
            .and_then(|()| r.write64(reg::DMA_COUNT, len))
            .and_then(|()| r.write64(reg::DMA_COMMAND, command::RUN | flags | direction))
            .ok_or(ErrorCode::InvalidArgument)
    }

    /// Unmaps the registers (before the device is given back).
    pub fn close(self) {
        let _ = self.registers.unmap();
    }
}
