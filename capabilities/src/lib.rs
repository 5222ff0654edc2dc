//! The shared vocabulary of the kernel, the servers and the host tools.
//!
//! Everything that crosses a protection boundary is defined here once: the
//! system-call ABI ([`abi`]), the error codes every call and server returns
//! ([`error`]), the boot image the build tool writes and the kernel reads
//! ([`manifest`]), and the serial log framing ([`logframe`]).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod abi;
pub mod badge;
pub mod capslots;
pub mod config;
pub mod echo;
pub mod edu;
pub mod error;
pub mod iommu;
pub mod logframe;
pub mod manifest;
pub mod pci;
pub mod pci_api;
pub mod protocol;

pub use error::ErrorCode;
