//! What every server protocol shares: its operation list, and refusals.
//!
//! Each server's API crate (`iommu-api`, `pci-api`, `edu-api`,
//! `echo-api`) lists its operations in order with [`operations!`]; an operation's index is its
//! number in requests and its bit in a client's badge (`crate::badge`).
//! The build tool checks policy operation names against these lists.

use heapless::String;

use crate::ErrorCode;

/// A protocol: its name in the policy and its operations in number order.
#[derive(Clone, Copy, Debug)]
pub struct Protocol {
    /// Name used in the policy's `protocol =` field.
    pub name: &'static str,
    /// Operation names; the index is the operation number.
    pub operations: &'static [&'static str],
}

impl Protocol {
    /// The number of operation `name`.
    pub fn operation(&self, name: &str) -> Option<u8> {
        self.operations.iter().position(|op| *op == name).map(|index| index as u8)
    }

    /// The name of operation number `number` (`"?"` past the list).
    pub fn name_of(&self, number: u8) -> &'static str {
        self.operations.get(usize::from(number)).copied().unwrap_or("?")
    }
}

/// Declares a protocol's `Operation` enum and its [`Protocol`] from one
/// list, so an operation's number, its bit and its policy name are
/// written once. Each variant is `Name = number => "policy-name"`, in
/// number order from 0.
#[macro_export]
macro_rules! operations {
    (
        $(#[$meta:meta])*
        protocol $protocol:literal;
        $( $(#[$doc:meta])* $variant:ident = $number:literal => $name:literal, )+
    ) => {
        $(#[$meta])*
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub enum Operation {
            $( $(#[$doc])* $variant = $number, )+
        }

        /// The protocol as the policy names it.
        pub const PROTOCOL: $crate::protocol::Protocol =
            $crate::protocol::Protocol { name: $protocol, operations: &[$($name),+] };

        const _: () = {
            let mut expected = 0;
            $(
                assert!(Operation::$variant as u8 == expected, "operations are numbered in order from 0");
                expected += 1;
            )+
            let _ = expected;
        };
    };
}

/// Longest explanation a server gives with a refusal.
pub const REASON_MAX: usize = 400;

/// A reply that may be a refusal: its error code and the server's reason.
pub trait Refusal {
    /// The code and reason, if the reply is a refusal.
    fn refusal(&self) -> Option<(ErrorCode, &str)>;
}

/// Implements [`Refusal`] for a protocol's `Reply` with a `Refused { code, reason }` variant.
#[macro_export]
macro_rules! refusal_reply {
    ($reply:ty) => {
        impl $crate::protocol::Refusal for $reply {
            fn refusal(&self) -> Option<($crate::ErrorCode, &str)> {
                match self {
                    Self::Refused { code, reason } => Some((*code, reason.as_str())),
                    _ => None,
                }
            }
        }
    };
}

/// Why a call failed, as a client sees it: the code, and the server's
/// reason if it gave one (empty when the call itself failed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The error.
    pub code: ErrorCode,
    /// The server's explanation.
    pub reason: String<REASON_MAX>,
}

impl Refused {
    /// A refusal with the server's `reason` (cut to [`REASON_MAX`]).
    pub fn new(code: ErrorCode, reason: &str) -> Self {
        let mut kept = String::new();
        for c in reason.chars() {
            if kept.push(c).is_err() {
                break;
            }
        }
        Self { code, reason: kept }
    }

    /// The error code, with the reason logged (for a caller that goes on).
    #[cfg(feature = "defmt")]
    pub fn logged(self) -> ErrorCode {
        defmt::info!("  refused ({}): {=str}", self.code, self.reason.as_str());
        self.code
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Refused {
    fn format(&self, formatter: defmt::Formatter<'_>) {
        defmt::write!(formatter, "{} ({=str})", self.code, self.reason.as_str());
    }
}

impl From<ErrorCode> for Refused {
    fn from(code: ErrorCode) -> Self {
        Self { code, reason: String::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary() {
        let long: std::string::String = core::iter::repeat_n('é', REASON_MAX).collect();
        let refused = Refused::new(ErrorCode::Busy, &long);
        assert_eq!(refused.reason.len(), REASON_MAX);
        assert_eq!(Refused::new(ErrorCode::Busy, "short").reason.as_str(), "short");
    }
}
