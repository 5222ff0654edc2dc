//! The interrupt descriptor table: all 256 vectors enter through their
//! stubs in `entry`, which save a `TrapFrame` and call the common handler.
//!
//! Every gate is present, the vectors no exception uses (9, 15, 22-27, 31)
//! among them: a device may send a message on any vector, and one whose
//! gate is missing raises a segment-not-present fault instead, which would
//! be taken as a fault of whatever ran. The table is the kernel's own
//! array, not `x86_64`'s `InterruptDescriptorTable`, whose reserved
//! entries cannot be set.

use core::mem::size_of;

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;
use x86_64::structures::idt::{Entry, HandlerFunc};

use crate::entry;
use crate::stacks::Ist;

/// Vector of the non-maskable interrupt, which has an entry of its own.
const NMI_VECTOR: u8 = 2;

/// One gate per vector, aligned as the SDM recommends.
#[repr(C, align(16))]
struct Table([Entry<HandlerFunc>; 256]);

static IDT: Once<Table> = Once::new();

/// Builds and loads the IDT.
pub fn init() {
    let table = IDT.call_once(|| {
        let mut table = Table([Entry::missing(); 256]);
        for (vector, gate) in (0..=u8::MAX).zip(table.0.iter_mut()) {
            let handler = if vector == NMI_VECTOR { entry::nmi_stub() } else { entry::trap_stub(vector) };
            // SAFETY: the handler is the entry stub of this very vector,
            // which saves the full register state in the layout
            // `trap_entry` expects and never returns normally (every stub
            // pushes the same frame, whether or not the CPU pushed an error
            // code), or the NMI's entry, which touches no state but its
            // counter and the local APIC and returns with `iretq`.
            let options = unsafe { gate.set_handler_addr(VirtAddr::new(handler)) };
            if let Some(ist) = Ist::of_vector(vector) {
                // SAFETY: `gdt::init`, which runs first, gave every IST slot
                // a stack of its own in the TSS.
                unsafe { options.set_stack_index(ist.index()) };
            }
        }
        table
    });
    let pointer = DescriptorTablePointer {
        limit: (size_of::<Table>() - 1) as u16,
        base: VirtAddr::new(&raw const table.0 as u64),
    };
    // SAFETY: the table is a `static` that is never changed after it is
    // built, so it stays valid and in place for as long as it is loaded.
    unsafe { lidt(&pointer) };
}
