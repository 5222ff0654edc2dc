//! The task runtime: what every ring-3 task links.
//!
//! It provides the entry point that calls the task's `main` (see
//! [`entry!`]), typed capabilities ([`cap`]) and the calls on them
//! ([`ipc`], [`objects`], [`syscall`]), bounds-checked mapped memory
//! ([`mmio`]), the ACPI table lookup the servers check their grants
//! with, the `defmt` logger that hands frames to the kernel, the
//! panic handler, and the test kit test tasks report through.
#![no_std]
// Unsafe code is allowed here: the system-call stub, the IPC buffer and mapped memory are raw pointers and assembly.
#![allow(unsafe_code)]

#[macro_use]
extern crate log_shim;

#[cfg(feature = "bare-metal")]
pub mod acpi;
pub mod boot;
pub mod cap;
pub mod ipc;
pub mod mmio;
pub mod objects;
pub mod server;
pub mod syscall;
#[cfg(feature = "bare-metal")]
pub mod testkit;

#[cfg(feature = "bare-metal")]
mod log;
#[cfg(feature = "bare-metal")]
mod panic;
#[cfg(feature = "bare-metal")]
mod start;

#[cfg(feature = "bare-metal")]
extern crate bare_runtime;

pub use syscall::exit;

/// Exit code of a task that panicked.
pub const EXIT_PANIC: u64 = 101;

/// Declares the task's `main`, a `fn() -> u64` returning its exit code.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// Called by the runtime's `_start` once the task is set up.
        #[unsafe(no_mangle)]
        pub extern "Rust" fn __task_main() -> u64 {
            $main()
        }
    };
}
