//! The shared vocabulary of the kernel, the servers and the host tools.
//!
//! What every side shares is defined here once: the system-call ABI
//! ([`abi`]) and the kernel's accounting figures ([`accounting`]), the
//! error codes every call and server returns ([`error`]), the boot image
//! the build tool writes and the kernel reads ([`manifest`]), the serial
//! log framing ([`logframe`]), frame-pointer walks ([`backtrace`]), badges ([`badge`]), capability slots by
//! name ([`capslots`]), the servers' boot configuration ([`config`]), PCI
//! topology ([`pci`]), what every protocol shares ([`protocol`]) and the
//! English lists their messages write ([`listed`]). Each
//! server's own protocol lives in its API crate beside it
//! (`servers/iommu/api`, `servers/pci/api`, `servers/drivers/edu/api`,
//! `qemu/tasks/echo-server/api`).
#![cfg_attr(not(test), no_std)]

pub mod abi;
pub mod accounting;
pub mod backtrace;
pub mod badge;
pub mod capslots;
pub mod config;
pub mod error;
pub mod listed;
pub mod logframe;
pub mod manifest;
pub mod pci;
pub mod protocol;
pub mod range;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::ErrorCode;
