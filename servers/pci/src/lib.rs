//! The PCI server's logic: configuration space, enumeration and capabilities.
//!
//! Everything here works through the [`ConfigSpace`] trait, so the same code
//! runs over ECAM in the server and over recorded bytes in host tests.
//! [`enumerate()`] walks the buses firmware numbered and describes every
//! function as the [`capabilities::pci`] topology the IOMMU server forms
//! groups from; [`bar`] sizes BARs for the [`driver_core`], which decides
//! who holds which device and hands its capabilities over.
#![cfg_attr(not(any(test, feature = "testing")), no_std)]

#[macro_use]
extern crate log_shim;

pub mod bar;
pub mod caps;
pub mod config;
pub mod driver_core;
pub mod ecam;
pub mod enumerate;
pub mod error;
pub mod header;
pub mod quirks;
pub mod reach;
pub mod roots;

mod acs;
mod describe;
mod msi;
mod pcie;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use config::{AccessError, ConfigSpace};
pub use enumerate::{Options, enumerate};
pub use error::PciError;
