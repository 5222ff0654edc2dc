//! The edu DMA servers' protocol: what a trusted edu driver and a user-assigned edu task both serve.
//!
//! QEMU's `edu` device copies between memory and a 4 KiB buffer of its
//! own by DMA. The trusted driver maps its buffer through its DMA handle
//! (the group's default domain); the user task through its own I/O
//! address space. Both serve the same requests, so one test drives
//! either and compares what the IOMMU lets each do.
#![cfg_attr(not(test), no_std)]

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use capabilities::ErrorCode;
use capabilities::pci::Bdf;
use iommu_api::{FAULTS_PER_REPLY, Fault};

/// Longest refusal reason.
pub const REASON_MAX: usize = 160;

capabilities::operations! {
    /// Operation numbers (also the badge bits).
    protocol "edu";
    /// Take a device: the driver probes the one bound to it, the user task
    /// claims the device's group and acquires it.
    Adopt = 0 => "adopt",
    /// Copy a pattern to the device and back, and compare.
    Copy = 1 => "copy",
    /// Unmap the buffer.
    Unmap = 2 => "unmap",
    /// Map the buffer again.
    Map = 3 => "map",
    /// One DMA at a bus address the caller names (a diagnostic for tests).
    DmaAt = 4 => "dma-at",
    /// The device's group's fault log.
    Faults = 5 => "faults",
    /// Start a DMA and answer before it runs (a transfer in flight).
    Start = 6 => "start",
    /// Give the device back.
    Release = 7 => "release",
    /// Map a frame the caller lends for the device (a diagnostic for tests).
    MapLent = 8 => "map-lent",
    /// Fill the DMA buffer with a pattern (a canary for tests).
    FillBuffer = 9 => "fill-buffer",
    /// Count the DMA buffer's bytes that differ from a pattern.
    CheckBuffer = 10 => "check-buffer",
}

impl Request {
    /// The operation a request invokes.
    pub fn operation(&self) -> Operation {
        match self {
            Request::Adopt { .. } => Operation::Adopt,
            Request::Copy { .. } => Operation::Copy,
            Request::Unmap => Operation::Unmap,
            Request::Map => Operation::Map,
            Request::DmaAt { .. } => Operation::DmaAt,
            Request::Faults => Operation::Faults,
            Request::Start { .. } => Operation::Start,
            Request::Release => Operation::Release,
            Request::MapLent => Operation::MapLent,
            Request::FillBuffer { .. } => Operation::FillBuffer,
            Request::CheckBuffer { .. } => Operation::CheckBuffer,
        }
    }
}

/// A request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Request {
    /// Take `device` (none held yet).
    Adopt {
        /// The edu function to drive.
        device: Bdf,
    },
    /// Copy `len` bytes of a pattern seeded with `seed` from memory to the
    /// device's buffer and back to another part of memory, and compare.
    Copy {
        /// Bytes, at most 2048.
        len: u16,
        /// Offsets the pattern (byte `i` is `31 i + seed`), so runs differ.
        seed: u8,
    },
    /// Unmap the buffer; the reply names the IOVA it had.
    Unmap,
    /// Map the buffer (after `Unmap`).
    Map,
    /// One DMA of a page at `iova`: the device reads it (`to_device`) or
    /// writes its buffer there. Completes whether or not the IOMMU let it
    /// through; the fault log says which.
    DmaAt {
        /// Bus address.
        iova: u64,
        /// Read by the device (else written by it).
        to_device: bool,
    },
    /// Take the group's recorded faults.
    Faults,
    /// Start the device writing the first 64 bytes of its own buffer to
    /// `iova` and answer at once: QEMU's edu runs a transfer 100 ms of
    /// virtual time after it starts, translating `iova` only then, so the
    /// transfer is still in flight when the reply arrives (a test kills
    /// the server next). `Busy` while a transfer runs.
    Start {
        /// Bus address the device will write.
        iova: u64,
    },
    /// Unmap the buffer and give the device (and a user task's group) back.
    Release,
    /// Map the one-page frame capability that comes with the request for
    /// the device to read and write (the reply names its IOVA,
    /// `Buffer`). The server keeps no capability to it, so it stays the
    /// lender's to take back: revoking it unmaps it from the device.
    MapLent,
    /// Fill every byte of the DMA buffer with the pattern `seed` names
    /// (byte `i` is `13 i + seed`, wrapping): a canary a blocked DMA aimed
    /// at the buffer must leave as it is.
    FillBuffer {
        /// Offsets the pattern.
        seed: u8,
    },
    /// Count the DMA buffer's bytes that differ from the `FillBuffer`
    /// pattern of `seed` (the reply is `Checked`).
    CheckBuffer {
        /// The seed the buffer was filled with.
        seed: u8,
    },
}

/// Byte `at` of the canary pattern `seed` names (`FillBuffer`).
pub fn canary(seed: u8, at: u64) -> u8 {
    (at as u8).wrapping_mul(13).wrapping_add(seed)
}

/// A reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Reply {
    /// The request was carried out; nothing to report.
    Done,
    /// `Adopt`: the device's group.
    Adopted {
        /// The IOMMU group of the device taken.
        group: u16,
    },
    /// `Copy`: where the buffer is mapped and whether the bytes came back.
    Copied {
        /// The buffer's IOVA.
        iova: u64,
        /// The bytes read back equal those sent.
        matched: bool,
    },
    /// `Map`, `Unmap` and `MapLent`: the buffer's IOVA (as mapped, or as
    /// it was), or the lent frame's.
    Buffer {
        /// The buffer's I/O virtual address.
        iova: u64,
    },
    /// `CheckBuffer`: how many of the buffer's bytes differ from the pattern.
    Checked {
        /// 0 if the buffer holds the pattern, up to 4096.
        changed: u16,
    },
    /// `Faults`.
    Faults {
        /// The oldest first.
        records: Vec<Fault, FAULTS_PER_REPLY>,
        /// Lost because the log was full.
        dropped: u64,
    },
    /// Refused, with the reason (often the IOMMU or PCI server's).
    Refused {
        /// The error.
        code: ErrorCode,
        /// Why.
        reason: String<REASON_MAX>,
    },
}

capabilities::refusal_reply!(Reply);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_follow_the_protocol_list() {
        let requests = [
            Request::Adopt { device: Bdf::new(0, 3, 0).unwrap() },
            Request::Copy { len: 1, seed: 2 },
            Request::Unmap,
            Request::Map,
            Request::DmaAt { iova: 0, to_device: true },
            Request::Faults,
            Request::Start { iova: 0x1000 },
            Request::Release,
            Request::MapLent,
            Request::FillBuffer { seed: 1 },
            Request::CheckBuffer { seed: 1 },
        ];
        for (number, request) in requests.iter().enumerate() {
            assert_eq!(request.operation() as usize, number);
            assert_eq!(PROTOCOL.operation(PROTOCOL.operations[number]), Some(number as u8));
        }
    }

    #[test]
    fn the_largest_reply_fits_a_message() {
        let fault = Fault { source: Bdf::new(255, 31, 7).unwrap(), address: u64::MAX, write: true, reason: 255 };
        let records = core::iter::repeat_n(fault, FAULTS_PER_REPLY).collect();
        let reason = core::iter::repeat_n('x', REASON_MAX).collect();
        let mut buffer = [0u8; capabilities::abi::ipc::MSG_MAX];
        for reply in [Reply::Faults { records, dropped: u64::MAX }, Reply::Refused { code: ErrorCode::Busy, reason }] {
            assert!(postcard::to_slice(&reply, &mut buffer).is_ok());
        }
    }
}
