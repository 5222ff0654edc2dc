//! Reads through a null pointer. The kernel must kill it, report the fault
//! with the task's name and the address, and run the next task.
#![no_std]
#![no_main]
// Unsafe code is allowed here: it dereferences null on purpose, to die by a page fault.
#![allow(unsafe_code)]

userlib::entry!(main);

fn main() -> u64 {
    defmt::info!("reading address 0");
    let null = core::hint::black_box(core::ptr::null::<u64>());
    // SAFETY: none; this read is the point of the task. Page 0 is never
    // mapped in a task, so it faults instead of reading anything.
    let value = unsafe { null.read_volatile() }; // the foundation scenario names this line
    defmt::error!("read {=u64} from address 0: the kernel did not stop it", value);
    1
}
