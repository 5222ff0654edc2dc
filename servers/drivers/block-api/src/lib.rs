//! The block protocol: what a storage driver serves to the clients that hold its endpoint.
//!
//! A `Read` or `Write` comes with the client's data frame as a
//! capability. The driver maps it through its own DMA handle for the
//! pages the transfer needs and no more, aims the command at that
//! mapping, and unmaps it before answering: the client's memory reaches
//! the device only through a mapping the driver made, and only for the
//! length asked. [`check`] is the test every transfer passes first.
#![cfg_attr(not(test), no_std)]

use heapless::String;
use serde::{Deserialize, Serialize};

use capabilities::ErrorCode;

/// Longest refusal reason.
pub const REASON_MAX: usize = 160;
/// The page size frames and mappings are counted in.
pub const PAGE: u64 = 4096;

capabilities::operations! {
    /// Operation numbers (also the badge bits).
    protocol "block";
    /// The namespace's size and the longest transfer.
    Geometry = 0 => "geometry",
    /// Blocks from the device into the client's frame.
    Read = 1 => "read",
    /// Blocks from the client's frame to the device.
    Write = 2 => "write",
    /// Make every completed write durable.
    Flush = 3 => "flush",
}

impl Request {
    /// The operation a request invokes.
    pub fn operation(&self) -> Operation {
        match self {
            Request::Geometry => Operation::Geometry,
            Request::Read { .. } => Operation::Read,
            Request::Write { .. } => Operation::Write,
            Request::Flush => Operation::Flush,
        }
    }
}

/// A request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Request {
    /// The namespace's geometry (`Reply::Geometry`).
    Geometry,
    /// Read `count` blocks from `block` into the frame sent with the
    /// request, from its first byte.
    Read {
        /// The first block.
        block: u64,
        /// Blocks, at least 1.
        count: u32,
    },
    /// Write `count` blocks at `block` from the frame sent with the
    /// request, from its first byte.
    Write {
        /// The first block.
        block: u64,
        /// Blocks, at least 1.
        count: u32,
    },
    /// Flush the device's volatile write cache.
    Flush,
}

/// What the driver serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Geometry {
    /// Blocks in the namespace.
    pub blocks: u64,
    /// Bytes a block, a power of two no larger than a page.
    pub block_bytes: u32,
    /// The most blocks one `Read` or `Write` moves.
    pub max_blocks: u32,
}

/// Why a transfer was refused before the device saw it; each names the
/// limit it broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Invalid {
    /// A count of 0 blocks.
    ZeroCount,
    /// More blocks than one transfer moves.
    TooLong {
        /// The most one transfer moves (`Geometry::max_blocks`).
        max_blocks: u32,
    },
    /// Blocks past the end of the namespace.
    OutOfRange {
        /// Blocks in the namespace: the first block past it.
        blocks: u64,
    },
    /// The frame sent is smaller than the transfer.
    FrameTooSmall {
        /// Bytes the transfer needs.
        needed: u64,
        /// Bytes of the frame sent.
        frame: u64,
    },
    /// The frame sent has pages the transfer does not need: the DMA API
    /// maps whole frames, so the device would reach past the length asked.
    FrameTooLarge {
        /// Pages the transfer needs, the most the frame may have.
        pages: u64,
        /// Pages of the frame sent.
        frame: u64,
    },
    /// No frame came with the request.
    NoFrame,
}

/// A transfer that passed [`check`]: what to map of the client's frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Bytes the device moves.
    pub bytes: u64,
    /// Pages of the frame to map: `bytes` rounded up to a page.
    pub pages: u64,
}

/// Checks `count` blocks from `block` against `geometry` and a frame of
/// `frame_pages`; the mapping the transfer needs, which is the whole frame.
pub fn check(geometry: &Geometry, block: u64, count: u32, frame_pages: u64) -> Result<Transfer, Invalid> {
    if count == 0 {
        return Err(Invalid::ZeroCount);
    }
    if count > geometry.max_blocks {
        return Err(Invalid::TooLong { max_blocks: geometry.max_blocks });
    }
    match block.checked_add(u64::from(count)) {
        Some(end) if end <= geometry.blocks => {}
        _ => return Err(Invalid::OutOfRange { blocks: geometry.blocks }),
    }
    let bytes = u64::from(count) * u64::from(geometry.block_bytes);
    let frame = frame_pages.saturating_mul(PAGE);
    if bytes > frame {
        return Err(Invalid::FrameTooSmall { needed: bytes, frame });
    }
    let pages = bytes.div_ceil(PAGE);
    if frame_pages > pages {
        return Err(Invalid::FrameTooLarge { pages, frame: frame_pages });
    }
    Ok(Transfer { bytes, pages })
}

/// A reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Reply {
    /// `Read`, `Write` or `Flush` completed.
    Done,
    /// `Geometry`.
    Geometry(Geometry),
    /// The transfer broke a limit; the device never saw it.
    Invalid(Invalid),
    /// Refused: not granted, or the device or the IOMMU server failed.
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

    const DISK: Geometry = Geometry { blocks: 32768, block_bytes: 512, max_blocks: 16 };

    #[test]
    fn operations_follow_the_protocol_list() {
        let requests = [
            Request::Geometry,
            Request::Read { block: 0, count: 1 },
            Request::Write { block: 0, count: 1 },
            Request::Flush,
        ];
        for (number, request) in requests.iter().enumerate() {
            assert_eq!(request.operation() as usize, number);
            assert_eq!(PROTOCOL.operation(PROTOCOL.operations[number]), Some(number as u8));
        }
    }

    #[test]
    fn a_transfer_maps_its_bytes_rounded_to_pages() {
        assert_eq!(check(&DISK, 0, 1, 1), Ok(Transfer { bytes: 512, pages: 1 }));
        assert_eq!(check(&DISK, 7, 8, 1), Ok(Transfer { bytes: 4096, pages: 1 }));
        assert_eq!(check(&DISK, 32752, 16, 2), Ok(Transfer { bytes: 8192, pages: 2 }));
        assert_eq!(check(&DISK, 0, 9, 2), Ok(Transfer { bytes: 4608, pages: 2 }));
    }

    #[test]
    fn each_broken_limit_is_named() {
        assert_eq!(check(&DISK, 0, 0, 1), Err(Invalid::ZeroCount));
        assert_eq!(check(&DISK, 0, 17, 8), Err(Invalid::TooLong { max_blocks: 16 }));
        assert_eq!(check(&DISK, 32768, 1, 1), Err(Invalid::OutOfRange { blocks: 32768 }));
        assert_eq!(check(&DISK, 32767, 2, 1), Err(Invalid::OutOfRange { blocks: 32768 }));
        assert_eq!(check(&DISK, u64::MAX, 1, 1), Err(Invalid::OutOfRange { blocks: 32768 }));
        assert_eq!(check(&DISK, 0, 9, 1), Err(Invalid::FrameTooSmall { needed: 4608, frame: 4096 }));
        assert_eq!(check(&DISK, 0, 1, 2), Err(Invalid::FrameTooLarge { pages: 1, frame: 2 }));
        assert_eq!(check(&DISK, 0, 1, 0), Err(Invalid::FrameTooSmall { needed: 512, frame: 0 }));
    }

    #[test]
    fn the_largest_reply_fits_a_message() {
        let reason = core::iter::repeat_n('x', REASON_MAX).collect();
        let mut buffer = [0u8; capabilities::abi::ipc::MSG_MAX];
        let invalid = Invalid::FrameTooSmall { needed: u64::MAX, frame: u64::MAX };
        let geometry = Geometry { blocks: u64::MAX, block_bytes: u32::MAX, max_blocks: u32::MAX };
        for reply in
            [Reply::Invalid(invalid), Reply::Geometry(geometry), Reply::Refused { code: ErrorCode::Busy, reason }]
        {
            assert!(postcard::to_slice(&reply, &mut buffer).is_ok());
        }
    }
}
