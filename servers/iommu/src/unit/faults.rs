//! Draining fault records and programming the fault-event interrupt.

use super::error::UnitError;
use super::queue::QueueMemory;
use super::remapping::RemappingUnit;
use crate::fault::FaultRecord;
use crate::registers::{self, Registers, event, frcd, fsts};

/// The MSI the unit sends for fault events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiMessage {
    /// Message address (0xfee..... for x86 local APICs).
    pub address: u64,
    /// Message data (vector and delivery mode).
    pub data: u32,
}

/// Passes one drain makes at most: a device that faults again as soon as
/// its record is cleared must not keep the server here for ever.
const DRAIN_PASSES: u32 = 8;

/// What one drain found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultDrain {
    /// Records read and cleared.
    pub records: u32,
    /// Times FSTS.PFO was found set, and cleared so that recording
    /// resumes: each time at least one fault was lost that no record holds.
    pub overflows: u32,
    /// Faults were still arriving in the last pass: drain again soon,
    /// since the unit raises no new fault event while one is pending.
    pub unfinished: bool,
}

impl<R: Registers, Q: QueueMemory> RemappingUnit<R, Q> {
    /// Programs and unmasks the fault-event interrupt.
    pub fn configure_fault_event(&mut self, message: MsiMessage) {
        self.registers.write32(registers::FEDATA, message.data);
        self.registers.write32(registers::FEADDR, message.address as u32);
        self.registers.write32(registers::FEUADDR, (message.address >> 32) as u32);
        self.registers.write32(registers::FECTL, 0);
    }

    /// Masks or unmasks the fault-event interrupt (during a storm, say).
    pub fn mask_fault_event(&mut self, masked: bool) {
        self.registers.write32(registers::FECTL, if masked { event::IM } else { 0 });
    }

    /// Reads every pending fault record from the one FSTS.FRI names on,
    /// hands each to `sink` and clears it, then clears an overflow; and
    /// again, until a fresh read of FSTS shows neither a pending record
    /// nor an overflow. Records are cleared promptly because, while one is
    /// pending, further faults from its requester are not recorded. The
    /// status is read again because a fault may arrive at any point: one
    /// that sets PFO after a pass read FSTS would otherwise stay set, and
    /// while PFO is set the unit records nothing and raises no event.
    pub fn drain_faults(&mut self, mut sink: impl FnMut(FaultRecord)) -> Result<FaultDrain, UnitError> {
        let mut drain = FaultDrain::default();
        let mut progress = false;
        for _ in 0..DRAIN_PASSES {
            let status = self.registers.read32(registers::FSTS);
            if status & (fsts::PPF | fsts::PFO) == 0 {
                return Ok(drain);
            }
            let taken = self.take_records(status, &mut sink)?;
            if status & fsts::PFO != 0 {
                if !cfg!(feature = "mutant-pfo-never-cleared") {
                    self.registers.write32(registers::FSTS, fsts::PFO);
                }
                drain.overflows += u32::from(!cfg!(feature = "mutant-overflow-uncounted"));
            }
            drain.records += taken;
            progress = taken > 0;
        }
        // Coming back is worth it only if records were still arriving: a
        // unit whose status stays set with nothing to take (broken, or an
        // overflow that does not clear) would keep the server here for ever.
        drain.unfinished = progress;
        Ok(drain)
    }

    /// One pass over every recording register, from the one `status`
    /// names (the oldest) on; how many records it took. Empty registers
    /// are passed over rather than ending the pass, so a record is never
    /// left behind one the pass found empty.
    fn take_records(&mut self, status: u32, sink: &mut impl FnMut(FaultRecord)) -> Result<u32, UnitError> {
        let count = u32::from(self.capabilities.fault_recording_count);
        let first = (status >> fsts::FRI_SHIFT & 0xff) % count;
        let mut taken = 0;
        for step in 0..count {
            let index = (first + step) % count;
            let (low_register, high_register) =
                registers::fault_recording(self.capabilities.fault_recording_offset, index)
                    .ok_or(UnitError::Unsupported { feature: "fault recording registers" })?;
            let high = self.registers.read64(high_register);
            let Some(record) = FaultRecord::decode(self.registers.read64(low_register), high) else {
                continue;
            };
            // F is write-1-to-clear and the other bits are read-only: an
            // 8-byte write of F alone clears this record only.
            self.registers.write64(high_register, frcd::F);
            taken += 1;
            sink(record);
        }
        Ok(taken)
    }
}
