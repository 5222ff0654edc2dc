//! Running the system in QEMU and reading what it says.
//!
//! [`machine`] describes emulated machines as data, [`runner`] boots one
//! with a kernel and boot image and collects its console, [`console`]
//! turns the serial byte stream into readable log lines (with backtraces
//! turned into functions and lines by [`symbols`]), and [`harness`]
//! reads test results out of those lines. [`scenario`] lists the
//! integration scenarios `cargo xtask test` runs.

pub mod console;
pub mod harness;
pub mod machine;
pub mod runner;
pub mod scenario;
pub mod symbols;
