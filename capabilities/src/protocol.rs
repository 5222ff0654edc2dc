//! The server protocols the policy can grant operations of, by name.
//!
//! Each server's API module lists its operations in order; the operation's
//! index is its number in requests and its bit in a client's badge
//! (`crate::badge`). The build tool checks policy operation names against
//! these lists.

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
}

/// A reply that may be a refusal: its error code and the server's reason.
pub trait Refusal {
    /// The code and reason, if the reply is a refusal.
    fn refusal(&self) -> Option<(crate::ErrorCode, &str)>;
}

/// Implements [`Refusal`] for a protocol's `Reply` with a `Refused { code, reason }` variant.
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
pub(crate) use refusal_reply;

/// Every protocol a policy may name.
pub const ALL: &[Protocol] =
    &[crate::echo::PROTOCOL, crate::edu::PROTOCOL, crate::iommu::PROTOCOL, crate::pci_api::PROTOCOL];

/// The protocol called `name`.
pub fn find(name: &str) -> Option<&'static Protocol> {
    ALL.iter().find(|protocol| protocol.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_and_operations_are_unique_and_fit_a_badge() {
        for (index, protocol) in ALL.iter().enumerate() {
            assert!(ALL[..index].iter().all(|other| other.name != protocol.name));
            assert!(protocol.operations.len() <= crate::badge::MAX_OPERATIONS);
            for (number, name) in protocol.operations.iter().enumerate() {
                assert_eq!(protocol.operation(name), Some(number as u8), "{name} listed twice");
            }
        }
    }
}
