//! AHCI controller logic with no hardware access, for SATA drivers.
//!
//! Everything here is pure: register values in, decoded fields out;
//! commands in, the bytes of their FIS, command header and PRDT out. A
//! driver adds the register window (the HBA's ABAR, BAR5), the DMA
//! mappings and the clock.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod command;
pub mod error;
pub mod fis;
pub mod hba;
pub mod identify;

pub use error::Error;
