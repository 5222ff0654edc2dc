//! The echo test server's protocol: a small real protocol that exercises
//! calls, badges, capability transfer and minting in QEMU scenarios.
#![cfg_attr(not(test), no_std)]

use serde::{Deserialize, Serialize};

capabilities::operations! {
    /// Operation numbers (also the badge bits).
    protocol "echo";
    /// Reply with the bytes reversed and the badge the server saw.
    Reverse = 0 => "reverse",
    /// Signal the notification capability sent with the request.
    SignalIt = 1 => "signal-it",
    /// Mint a fresh badged capability to the server and send it back.
    MintBadge = 2 => "mint-badge",
}

/// A request: the operation and its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Request<'a> {
    /// What to do.
    pub operation: Operation,
    /// Bytes for `Reverse`.
    #[serde(borrow)]
    pub bytes: &'a [u8],
}

/// A reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Reply<'a> {
    /// `Reverse`: the reversed bytes and the caller's badge.
    Reversed {
        /// The caller's badge as the server received it.
        badge: u64,
        /// The bytes, last first.
        #[serde(borrow)]
        bytes: &'a [u8],
    },
    /// `SignalIt` and `MintBadge` succeeded; `MintBadge` returns the new
    /// badge (the capability travels with the reply).
    Done {
        /// The minted badge, or 0.
        badge: u64,
    },
    /// The request failed with this error.
    Failed(capabilities::ErrorCode),
}
