//! QEMU's edu device and the edu protocol, shared by the trusted driver and the user-assigned task.
//!
//! The two differ only in how the device's DMA buffer gets into the
//! device's I/O address space: through a DMA handle on the group's default
//! domain, or through the user task's own address space on its group
//! capability. That difference is the [`Mapper`] trait; the device and the
//! requests are the same code.
#![no_std]
#![expect(clippy::result_large_err, reason = "a refusal carries the server's reason inline; there is no heap")]

mod device;
mod serve;

pub use device::{DEVICE_BUFFER, Edu, IDENTIFICATION, command, reg};
pub use serve::{Mapper, Taken, serve};
