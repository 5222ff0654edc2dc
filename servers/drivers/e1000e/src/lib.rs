//! e1000e (Intel 82574, QEMU's `e1000e`) logic with no hardware access, for network drivers.
//!
//! Everything here is pure: register values in, decoded fields out;
//! frames in, legacy descriptors out; ring indices that never let the
//! driver overrun the device or the device the driver. A driver adds the
//! register window (BAR0), the DMA mappings and the clock.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod descriptor;
pub mod registers;
pub mod ring;
