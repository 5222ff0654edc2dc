//! Why a topology cannot be grouped: it contradicts itself.

use core::fmt;

use capabilities::pci::{Bdf, MAX_FUNCTIONS};

use crate::groups::MAX_GROUPS;

/// A topology that is not a tree of buses. Group formation refuses it
/// rather than guess, since a wrong guess could split a real group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum GroupError {
    /// More functions than a topology holds ([`capabilities::pci::MAX_FUNCTIONS`]).
    TooManyFunctions {
        /// How many there were.
        count: usize,
    },
    /// The topology forms more groups than [`MAX_GROUPS`].
    TooManyGroups {
        /// How many it would form.
        count: usize,
    },
    /// Two entries have the same address.
    DuplicateFunction {
        /// The address.
        bdf: Bdf,
    },
    /// Two bridges claim the same secondary bus.
    SharedSecondaryBus {
        /// The bus.
        bus: u8,
        /// The first bridge.
        first: Bdf,
        /// The second bridge.
        second: Bdf,
    },
    /// Following bridges upstream from this function never reaches a root
    /// bus (a bridge's secondary bus is its own bus or one above it).
    BridgeLoop {
        /// Where the loop was found.
        bdf: Bdf,
    },
}

impl fmt::Display for GroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooManyFunctions { count } => {
                write!(f, "{count} functions are more than a topology holds (MAX_FUNCTIONS = {MAX_FUNCTIONS})")
            }
            Self::TooManyGroups { count } => {
                write!(f, "the topology forms {count} groups, more than the servers hold (MAX_GROUPS = {MAX_GROUPS})")
            }
            Self::DuplicateFunction { bdf } => write!(f, "{bdf} appears twice in the topology"),
            Self::SharedSecondaryBus { bus, first, second } => {
                write!(f, "bridges {first} and {second} both claim bus {bus:02x}")
            }
            Self::BridgeLoop { bdf } => write!(f, "the bridges above {bdf} loop and never reach a root bus"),
        }
    }
}
