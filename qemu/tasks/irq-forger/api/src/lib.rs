//! The irq-forger test helper's protocol: what a policy may grant its clients.
//!
//! A request is four little-endian words `[op, a, b, c]` and the reply
//! `[0 or an error code, value]` (`qemu/tasks/irq-forger` lists what each
//! does); operation `op` is badge bit `op - 1`. A protocol lets the
//! policy give clients capabilities with the GRANT right, so a request can
//! bring the frame whose place `where-is` tells.
#![no_std]

use capabilities::protocol::Protocol;

/// The protocol as the policy sees it: the name of operation `op` is at
/// index `op - 1`.
pub const PROTOCOL: Protocol = Protocol {
    name: "forger",
    operations: &[
        "config-read",
        "config-write",
        "raise",
        "rtc-tick",
        "dma-to",
        "fill-frame",
        "frame-differs",
        "where-is",
    ],
};

/// The request word `op` of each operation, in [`PROTOCOL`]'s order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Op {
    /// Reads `c` bytes at offset `b` of function `a` (a requester id).
    ConfigRead = 1,
    /// Writes `c & 0xffff_ffff` (`c >> 32` bytes wide) at offset `b` of function `a`.
    ConfigWrite = 2,
    /// Makes edu `a` raise its interrupt.
    Raise = 3,
    /// Waits up to `a` µs for one RTC periodic interrupt; the µs it took.
    RtcTick = 4,
    /// Edu `a` copies 256 bytes of its buffer to bus address `b`; 1 once done.
    DmaTo = 5,
    /// Fills the forger's frame with byte `a` and pins it; its physical address.
    FillFrame = 6,
    /// How many bytes of that frame differ from `a`.
    FrameDiffers = 7,
    /// Where the frame sent with the request is; its physical address.
    WhereIs = 8,
}

impl Op {
    /// Every operation, by request word.
    pub const ALL: [Op; 8] = [
        Op::ConfigRead,
        Op::ConfigWrite,
        Op::Raise,
        Op::RtcTick,
        Op::DmaTo,
        Op::FillFrame,
        Op::FrameDiffers,
        Op::WhereIs,
    ];

    /// The operation request word `op` names, if any.
    pub fn from_word(op: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|known| *known as u64 == op)
    }

    /// Its badge bit.
    pub const fn bit(self) -> u8 {
        self as u8 - 1
    }
}

/// The badge bit of request word `op`, if it names an operation.
pub fn operation(op: u64) -> Option<u8> {
    Op::from_word(op).map(Op::bit)
}

#[cfg(feature = "client")]
pub mod client;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_words_name_operations_from_one() {
        assert_eq!(operation(0), None);
        assert_eq!(operation(1), PROTOCOL.operation("config-read"));
        assert_eq!(operation(8), PROTOCOL.operation("where-is"));
        assert_eq!(operation(9), None);
        assert_eq!(operation(u64::MAX), None);
    }

    #[test]
    fn every_operation_has_its_protocol_name_at_its_bit() {
        assert_eq!(Op::ALL.len(), PROTOCOL.operations.len());
        for (index, op) in Op::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(op.bit()), index);
            assert_eq!(Op::from_word(op as u64), Some(op));
        }
    }
}
