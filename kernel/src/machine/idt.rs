//! The interrupt descriptor table: every vector enters through its stub in
//! `entry`, which saves a `TrapFrame` and calls the common handler.

use spin::Once;
use x86_64::VirtAddr;
use x86_64::structures::idt::{Entry, HandlerFunc, InterruptDescriptorTable};

use crate::entry;
use crate::stacks::Ist;

static IDT: Once<InterruptDescriptorTable> = Once::new();

/// Builds and loads the IDT.
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        let stub = |vector: u8| VirtAddr::new(entry::trap_stub(vector));
        // SAFETY: every `set_handler_addr` below installs the entry stub of
        // that very vector, which saves the full register state in the
        // layout `trap_entry` expects and never returns normally; the
        // NMI's entry touches no state but its counter and the local APIC
        // and returns with `iretq`.
        unsafe {
            let plain: [(&mut Entry<HandlerFunc>, u8); 11] = [
                (&mut idt.divide_error, 0),
                (&mut idt.debug, 1),
                (&mut idt.breakpoint, 3),
                (&mut idt.overflow, 4),
                (&mut idt.bound_range_exceeded, 5),
                (&mut idt.invalid_opcode, 6),
                (&mut idt.device_not_available, 7),
                (&mut idt.x87_floating_point, 16),
                (&mut idt.simd_floating_point, 19),
                (&mut idt.virtualization, 20),
                (&mut idt.hv_injection_exception, 28),
            ];
            for (slot, vector) in plain {
                slot.set_handler_addr(stub(vector));
            }
            idt.double_fault.set_handler_addr(stub(8)).set_stack_index(Ist::DoubleFault.index());
            idt.invalid_tss.set_handler_addr(stub(10));
            idt.segment_not_present.set_handler_addr(stub(11));
            idt.stack_segment_fault.set_handler_addr(stub(12));
            idt.non_maskable_interrupt
                .set_handler_addr(VirtAddr::new(entry::nmi_stub()))
                .set_stack_index(Ist::Nmi.index());
            idt.general_protection_fault.set_handler_addr(stub(13)).set_stack_index(Ist::GeneralProtection.index());
            idt.page_fault.set_handler_addr(stub(14));
            idt.alignment_check.set_handler_addr(stub(17));
            idt.machine_check.set_handler_addr(stub(18)).set_stack_index(Ist::MachineCheck.index());
            idt.cp_protection_exception.set_handler_addr(stub(21));
            idt.vmm_communication_exception.set_handler_addr(stub(29));
            idt.security_exception.set_handler_addr(stub(30));
            for vector in 32..=255u8 {
                idt[vector].set_handler_addr(stub(vector));
            }
        }
        idt
    });
    idt.load();
}
