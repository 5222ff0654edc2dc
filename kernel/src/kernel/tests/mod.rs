//! Host tests of the kernel logic, driven through system calls on a
//! simulated machine.

mod accounting;
mod boot;
mod caps;
mod death;
mod fastpath;
mod interrupts;
mod ipc;
mod memory;
mod notify;
mod pins;
mod platform;
mod remapping;
mod revoke;
mod sched;
mod sim;
