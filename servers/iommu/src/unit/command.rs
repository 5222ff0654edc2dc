//! Global commands: root table pointer, write-buffer flush, translation.
//!
//! Each GCMD write starts from GSTS with the one-shot status bits masked
//! off (so SRTP, SFL, WBF and SIRTP are never re-issued by accident) and
//! changes exactly one command bit; QEMU acts on every bit that differs
//! from GSTS, and real hardware requires one command per write.

use super::error::UnitError;
use super::queue::QueueMemory;
use super::remapping::RemappingUnit;
use crate::memory::TablePage;
use crate::registers::{self, Registers, gcmd, gsts, pmen};

impl<R: Registers, Q: QueueMemory> RemappingUnit<R, Q> {
    /// Issues one global command: `command` set (or cleared, if `enable` is
    /// false), then waits for `status` to be set (or clear, `status_set`).
    pub(crate) fn global_command(
        &mut self,
        command: u32,
        enable: bool,
        status: u32,
        status_set: bool,
        operation: &'static str,
    ) -> Result<(), UnitError> {
        let current = self.registers.read32(registers::GSTS) & gcmd::PRESERVE_MASK;
        let value = if enable { current | command } else { current & !command };
        self.registers.write32(registers::GCMD, value);
        self.wait32(registers::GSTS, status, status_set, operation).map(|_| ())
    }

    /// Points the unit at a legacy-mode root table. Caches may still hold
    /// entries of the previous table: invalidate context cache and IOTLB
    /// globally afterwards ([`RemappingUnit::bring_up`] does).
    pub fn set_root_table(&mut self, root: TablePage) -> Result<(), UnitError> {
        // Bits 11:10 (translation table mode) zero: legacy root entries.
        self.registers.write64(registers::RTADDR, root.address());
        self.global_command(gcmd::SRTP, true, gsts::RTPS, true, "set the root table pointer")
    }

    /// Flushes the unit's write buffer, on units that need it (CAP.RWBF);
    /// a no-op elsewhere.
    pub fn flush_write_buffer(&mut self) -> Result<(), UnitError> {
        if !self.capabilities.write_buffer_flush {
            return Ok(());
        }
        self.global_command(gcmd::WBF, true, gsts::WBFS, false, "flush the write buffer")
    }

    /// Turns DMA translation on: from here every request goes through the
    /// root table, and requesters without a present context entry fault.
    /// Then lifts the protected memory regions firmware may have set: the
    /// tables protect that memory now, and the regions would block DMA the
    /// tables allow.
    pub fn enable_translation(&mut self) -> Result<(), UnitError> {
        if cfg!(feature = "mutant-translation-off") {
            return Ok(());
        }
        self.global_command(gcmd::TE, true, gsts::TES, true, "enable translation")?;
        if self.capabilities.protected_low_memory || self.capabilities.protected_high_memory {
            self.registers.write32(registers::PMEN, 0);
            self.wait32(registers::PMEN, pmen::PRS, false, "disable protected memory regions")?;
        }
        Ok(())
    }

    /// Turns DMA translation off: requests then reach memory untranslated,
    /// so only for shutdown, with devices quiesced.
    pub fn disable_translation(&mut self) -> Result<(), UnitError> {
        self.global_command(gcmd::TE, false, gsts::TES, false, "disable translation")
    }

    /// True if translation is on.
    pub fn translation_enabled(&mut self) -> bool {
        self.registers.read32(registers::GSTS) & gsts::TES != 0
    }
}
