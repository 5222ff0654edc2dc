//! Interrupt remapping on the unit: the table pointer, enabling, and invalidating cached entries.
//!
//! Cached entries can only be invalidated through the invalidation queue
//! (there is no register for it), so remapping needs queued invalidation.
//! Compatibility-format interrupts stay refused (GCMD.CFI is never set):
//! once remapping is on, only messages naming an entry are delivered.

use crate::invalidation::{Descriptor, InterruptEntryScope};
use crate::memory::TablePage;
use crate::registers::{self, Registers, gcmd, gsts};
use crate::unit::{QueueMemory, RemappingUnit, UnitError};

/// IRTA bit 11: extended interrupt mode (x2APIC ids); left clear.
const IRTA_EXTENDED_MODE: u64 = 1 << 11;

impl<R: Registers, Q: QueueMemory> RemappingUnit<R, Q> {
    /// Points the unit at the interrupt-remapping table at `table`, of
    /// 2^(`size_field` + 1) entries, in xAPIC mode, and invalidates every
    /// cached entry. Needs ECAP.IR and queued invalidation.
    pub fn set_interrupt_table(&mut self, table: TablePage, size_field: u8) -> Result<(), UnitError> {
        if !self.capabilities.interrupt_remapping {
            return Err(UnitError::Unsupported { feature: "interrupt remapping" });
        }
        if self.queue.is_none() {
            return Err(UnitError::Unsupported { feature: "interrupt remapping without queued invalidation" });
        }
        if size_field > 0xf {
            return Err(UnitError::Unsupported { feature: "an interrupt table that large" });
        }
        let value = table.address() | u64::from(size_field);
        self.registers.write64(registers::IRTA, value & !IRTA_EXTENDED_MODE);
        self.global_command(gcmd::SIRTP, true, gsts::IRTPS, true, "set the interrupt remapping table pointer")?;
        self.invalidate_interrupt_entries(InterruptEntryScope::Global)
    }

    /// Turns interrupt remapping on: from here a message in remappable
    /// format is delivered as its entry says, if its requester passes the
    /// entry's source check.
    pub fn enable_interrupt_remapping(&mut self) -> Result<(), UnitError> {
        self.global_command(gcmd::IRE, true, gsts::IRES, true, "enable interrupt remapping")
    }

    /// True if interrupt remapping is on.
    pub fn interrupt_remapping_enabled(&mut self) -> bool {
        self.registers.read32(registers::GSTS) & gsts::IRES != 0
    }

    /// True if compatibility-format interrupts are let through (GSTS.CFIS).
    pub fn compatibility_interrupts_allowed(&mut self) -> bool {
        self.registers.read32(registers::GSTS) & gsts::CFIS != 0
    }

    /// Invalidates cached interrupt entries in `scope` and waits until the
    /// unit has done it.
    pub fn invalidate_interrupt_entries(&mut self, scope: InterruptEntryScope) -> Result<(), UnitError> {
        if self.queue.is_none() {
            return Err(UnitError::Unsupported { feature: "interrupt entry invalidation without the queue" });
        }
        self.submit(&[Descriptor::interrupt_entries(scope)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::QueueConfig;
    use crate::unit::fake::{Event, FakeQueue, FakeUnit};

    const QEMU_CAP: u64 = 0x00d2_008c_2226_0206;
    const QEMU_ECAP: u64 = 0xf0_0f4a;

    fn unit(ecap: u64, queued: bool) -> RemappingUnit<FakeUnit, FakeQueue> {
        let fake = FakeUnit::new(QEMU_CAP, ecap);
        let queue = fake.queue_memory();
        let config = QueueConfig { base: TablePage::new(0x8_0000).unwrap(), size_order: 0, status_address: 0x9_0000 };
        let mut unit = RemappingUnit::new(fake, 4096).unwrap();
        unit.set_spin_limit(100);
        unit.bring_up(TablePage::new(0x7_0000).unwrap(), queued.then_some((queue, config))).unwrap();
        unit.registers().events.clear();
        unit
    }

    #[test]
    fn the_table_is_set_invalidated_and_remapping_enabled_one_command_at_a_time() {
        let mut unit = unit(QEMU_ECAP, true);
        unit.set_interrupt_table(TablePage::new(0x6_0000).unwrap(), 7).unwrap();
        unit.enable_interrupt_remapping().unwrap();
        assert!(unit.interrupt_remapping_enabled());
        assert!(!unit.compatibility_interrupts_allowed(), "compatibility format stays refused");
        let fake = unit.registers();
        assert!(fake.violations.is_empty(), "{:?}", fake.violations);
        let commands: Vec<u32> =
            fake.events.iter().filter_map(|e| if let Event::Gcmd(v) = e { Some(*v) } else { None }).collect();
        // QIE stays on; SIRTP once; then IRE.
        assert_eq!(commands, [0x0500_0000, 0x0600_0000]);
        assert!(fake.events.contains(&Event::Write64(0xb8, 0x6_0007)));
        let global = Descriptor::interrupt_entries(InterruptEntryScope::Global);
        assert!(fake.events.contains(&Event::Queued(global)));
        unit.invalidate_interrupt_entries(InterruptEntryScope::Indexed { index: 9, order: 0 }).unwrap();
        let indexed = Descriptor::interrupt_entries(InterruptEntryScope::Indexed { index: 9, order: 0 });
        assert!(unit.registers().events.contains(&Event::Queued(indexed)));
    }

    #[test]
    fn remapping_needs_the_capability_and_the_queue() {
        let page = TablePage::new(0x6_0000).unwrap();
        let mut no_ir = unit(QEMU_ECAP & !(1 << 3), true);
        assert_eq!(no_ir.set_interrupt_table(page, 7), Err(UnitError::Unsupported { feature: "interrupt remapping" }));
        let mut registers_only = unit(QEMU_ECAP, false);
        assert!(matches!(registers_only.set_interrupt_table(page, 7), Err(UnitError::Unsupported { .. })));
        assert!(registers_only.invalidate_interrupt_entries(InterruptEntryScope::Global).is_err());
        assert!(registers_only.registers().events.is_empty(), "nothing written");
    }
}
