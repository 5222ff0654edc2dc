//! Waits for one order, then dies as told: order 1 reads address 0 (a
//! page fault), order 2 exits with code 5, order 3 runs a privileged
//! instruction (a general-protection fault, which the kernel takes on a
//! stack of its own). Death-watch scenarios use it.
#![no_std]
#![no_main]
// Unsafe code is allowed here: it dereferences null on purpose, to die by a page fault.
#![allow(unsafe_code)]

use userlib::ipc::Buffer;

userlib::cap_slot!(ORDERS: Endpoint = "orders");
userlib::entry!(main);

fn main() -> u64 {
    let Some(mut buffer) = Buffer::take() else { return 1 };
    let order = match ORDERS.get().receive(&mut buffer, 0, 0) {
        Ok(message) if message.len > 0 => buffer.message()[0],
        _ => 0,
    };
    defmt::info!("order {=u8} received", order);
    match order {
        1 => {
            let null = core::hint::black_box(core::ptr::null::<u64>());
            // SAFETY: none; the fault is the point. Page 0 is never mapped.
            unsafe { null.read_volatile() }
        }
        2 => 5,
        3 => {
            // SAFETY: none; the fault is the point. `hlt` is privileged, so
            // in ring 3 it raises #GP(0) instead of halting.
            unsafe { core::arch::asm!("hlt") };
            1
        }
        _ => 1,
    }
}
