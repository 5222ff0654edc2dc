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

/// What one drain found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultDrain {
    /// Records read and cleared.
    pub records: u32,
    /// Faults were lost because every record was full (FSTS.PFO), now
    /// cleared so that recording resumes.
    pub overflowed: bool,
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
    /// hands each to `sink` and clears it, then clears an overflow. Records
    /// are cleared promptly because, while one is pending, further faults
    /// from its requester are not recorded.
    pub fn drain_faults(&mut self, mut sink: impl FnMut(FaultRecord)) -> Result<FaultDrain, UnitError> {
        let status = self.registers.read32(registers::FSTS);
        let mut drain = FaultDrain::default();
        let count = u32::from(self.capabilities.fault_recording_count);
        let first = (status >> fsts::FRI_SHIFT & 0xff) % count;
        for step in 0..count {
            let index = (first + step) % count;
            let (low_register, high_register) =
                registers::fault_recording(self.capabilities.fault_recording_offset, index)
                    .ok_or(UnitError::Unsupported { feature: "fault recording registers" })?;
            let high = self.registers.read64(high_register);
            let Some(record) = FaultRecord::decode(self.registers.read64(low_register), high) else {
                break;
            };
            // F is write-1-to-clear and the other bits are read-only: an
            // 8-byte write of F alone clears this record only.
            self.registers.write64(high_register, frcd::F);
            drain.records += 1;
            sink(record);
        }
        if status & fsts::PFO != 0 {
            self.registers.write32(registers::FSTS, fsts::PFO);
            drain.overflowed = true;
        }
        Ok(drain)
    }
}
