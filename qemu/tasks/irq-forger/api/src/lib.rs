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

/// The badge bit of request word `op`, if it names an operation.
pub fn operation(op: u64) -> Option<u8> {
    let bit = op.checked_sub(1)?;
    (bit < PROTOCOL.operations.len() as u64).then_some(bit as u8)
}

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
}
