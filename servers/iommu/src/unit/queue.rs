//! Queued invalidation: the descriptor ring and waiting for completion.

use super::error::UnitError;
use super::remapping::RemappingUnit;
use crate::invalidation::{Descriptor, WaitAction};
use crate::memory::TablePage;
use crate::registers::{self, Registers, fsts, gcmd, gsts, iqa};

/// Memory of the invalidation queue and of the status word its wait
/// descriptors write; the server implements it over pages it owns.
pub trait QueueMemory {
    /// Stores a descriptor in queue slot `slot` (below the queue's size).
    fn write_descriptor(&mut self, slot: u32, descriptor: Descriptor);
    /// Reads the status word.
    fn read_status(&mut self) -> u32;
    /// Writes the status word.
    fn write_status(&mut self, value: u32);
}

/// The queue memory of a unit driven without queued invalidation.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoQueue;

impl QueueMemory for NoQueue {
    fn write_descriptor(&mut self, _slot: u32, _descriptor: Descriptor) {}

    fn read_status(&mut self) -> u32 {
        0
    }

    fn write_status(&mut self, _value: u32) {}
}

/// Where the invalidation queue lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// First page of the queue (2^size_order contiguous pages).
    pub base: TablePage,
    /// log2 of the queue's pages, 0 to 7: 256 << size_order descriptors.
    pub size_order: u8,
    /// Physical address of the status word, 4-byte aligned.
    pub status_address: u64,
}

/// The queue of an enabled unit.
pub(crate) struct Queue<Q> {
    memory: Q,
    status_address: u64,
    slots: u32,
    tail: u32,
    sequence: u32,
    /// The unit has processed everything queued (the last submission's
    /// wait descriptor completed), so the head equals the tail and need
    /// not be read back.
    drained: bool,
}

impl<R: Registers, Q: QueueMemory> RemappingUnit<R, Q> {
    /// Enables queued invalidation with 128-bit descriptors. From then on
    /// invalidations go through the queue: the unit ignores the registers.
    pub fn enable_queued_invalidation(&mut self, mut memory: Q, config: QueueConfig) -> Result<(), UnitError> {
        if !self.capabilities.queued_invalidation {
            return Err(UnitError::Unsupported { feature: "queued invalidation" });
        }
        if config.size_order > 7 || !config.status_address.is_multiple_of(4) {
            return Err(UnitError::QueueConfig);
        }
        memory.write_status(0);
        // The tail must be 0 when the queue is enabled, and head follows.
        self.registers.write64(registers::IQT, 0);
        self.registers.write64(registers::IQA, config.base.address() | u64::from(config.size_order) & iqa::QS_MASK);
        self.global_command(gcmd::QIE, true, gsts::QIES, true, "enable queued invalidation")?;
        self.queue = Some(Queue {
            memory,
            status_address: config.status_address,
            slots: 256 << config.size_order,
            tail: 0,
            sequence: 0,
            drained: true,
        });
        Ok(())
    }

    /// Disables queued invalidation (only with the queue drained, as every
    /// submission leaves it); returns the queue memory.
    pub fn disable_queued_invalidation(&mut self) -> Result<Option<Q>, UnitError> {
        if self.queue.is_none() {
            return Ok(None);
        }
        self.global_command(gcmd::QIE, false, gsts::QIES, false, "disable queued invalidation")?;
        Ok(self.queue.take().map(|queue| queue.memory))
    }

    /// Queues `descriptors` and a status-writing wait descriptor, and waits
    /// until the unit has processed them all.
    ///
    /// After a submission that completed, the queue is known to be empty
    /// and the head register is not read: one register access fewer per
    /// invalidation (each costs an exit to the device model under
    /// emulation, and an uncached read on hardware).
    pub fn submit(&mut self, descriptors: &[Descriptor]) -> Result<(), UnitError> {
        let spin_limit = self.spin_limit;
        let drained = self.queue.as_ref().is_some_and(|queue| queue.drained);
        let head =
            if drained { None } else { Some((self.registers.read64(registers::IQH) >> iqa::INDEX_SHIFT) as u32) };
        let queue = self.queue.as_mut().ok_or(UnitError::Unsupported { feature: "queued invalidation enabled" })?;
        let used = head.map_or(0, |head| queue.tail.wrapping_sub(head) % queue.slots);
        let free = queue.slots - 1 - used;
        let needed = descriptors.len().saturating_add(1);
        if needed > free as usize {
            return Err(UnitError::QueueFull { needed, free });
        }
        queue.sequence = queue.sequence.wrapping_add(1).max(1);
        let wait = WaitAction::StatusWrite { address: queue.status_address, data: queue.sequence };
        let wait = Descriptor::wait(wait, false).ok_or(UnitError::QueueConfig)?;
        for descriptor in descriptors.iter().chain(core::iter::once(&wait)) {
            queue.memory.write_descriptor(queue.tail, *descriptor);
            queue.tail = (queue.tail + 1) % queue.slots;
        }
        let tail = queue.tail;
        queue.drained = false;
        self.registers.write64(registers::IQT, u64::from(tail) << iqa::INDEX_SHIFT);
        let mut refused = None;
        for _ in 0..spin_limit {
            let queue = self.queue.as_mut().ok_or(UnitError::QueueConfig)?;
            if queue.memory.read_status() == queue.sequence {
                // The wait descriptor runs after everything before it.
                queue.drained = true;
                return refused.map_or(Ok(()), Err);
            }
            if self.registers.read32(registers::FSTS) & fsts::IQE != 0 {
                refused = Some(self.recover_queue(tail)?);
            }
        }
        Err(UnitError::Timeout { operation: "complete queued invalidation" })
    }

    /// After the unit refused the descriptor at its head: overwrite it
    /// with a harmless wait descriptor, clear IQE and restart the queue.
    /// Returns the error to report once the batch completes.
    fn recover_queue(&mut self, tail: u32) -> Result<UnitError, UnitError> {
        let head = (self.registers.read64(registers::IQH) >> iqa::INDEX_SHIFT) as u32;
        let queue = self.queue.as_mut().ok_or(UnitError::QueueConfig)?;
        let slot = head % queue.slots;
        // Status 0 is never a sequence number, so the batch still counts
        // as complete only when its own wait descriptor has run.
        let filler = WaitAction::StatusWrite { address: queue.status_address, data: 0 };
        queue.memory.write_descriptor(slot, Descriptor::wait(filler, false).ok_or(UnitError::QueueConfig)?);
        self.registers.write32(registers::FSTS, fsts::IQE);
        // Real units resume once IQE is clear; QEMU 7.2 waits for the next
        // tail write, which rewriting the same tail provides.
        self.registers.write64(registers::IQT, u64::from(tail) << iqa::INDEX_SHIFT);
        Ok(UnitError::InvalidDescriptor { slot })
    }
}
