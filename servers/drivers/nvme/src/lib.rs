//! NVMe controller logic with no hardware access, shared by NVMe drivers.
//!
//! Everything here is pure: register values in, decoded fields out;
//! commands in, 64-byte entries out; queue memory through a trait, so the
//! host tests drive it against a model controller. The drivers add the
//! register window, the DMA mappings and the clock.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod command;
pub mod error;
pub mod identify;
pub mod pair;
pub mod prp;
pub mod queue;
pub mod registers;
pub mod wait;

#[cfg(test)]
mod model;

pub use error::Error;
