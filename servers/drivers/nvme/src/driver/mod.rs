//! The trusted driver's hardware side: the controller and its DMA memory.

pub mod controller;
pub mod memory;
