//! Errors of the PCI server's logic, each naming the function and offset.

use core::fmt;

use capabilities::pci::{Bdf, CapabilityList, MAX_FUNCTIONS};

use crate::config::AccessError;

/// Why reading or configuring a function failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PciError {
    /// A configuration access failed.
    Access {
        /// The function accessed.
        bdf: Bdf,
        /// The register offset.
        offset: u16,
        /// What the accessor reported.
        error: AccessError,
    },
    /// A capability list's next pointer leads back to a capability already
    /// visited (a broken or malicious device).
    CapabilityLoop {
        /// The function.
        bdf: Bdf,
        /// The list.
        list: CapabilityList,
        /// The offset the pointer leads back to.
        offset: u16,
    },
    /// A capability's registers run past the end of configuration space.
    CapabilityTruncated {
        /// The function.
        bdf: Bdf,
        /// Capability id.
        id: u16,
        /// Offset of the capability.
        offset: u16,
    },
    /// A BAR index beyond the header's BARs (6 for type 0, 2 for type 1).
    NoSuchBar {
        /// The function.
        bdf: Bdf,
        /// The index asked for.
        index: u8,
    },
    /// The BAR index names the upper half of a 64-bit BAR.
    UpperHalfOfBar {
        /// The function.
        bdf: Bdf,
        /// Register offset of the upper half.
        offset: u16,
    },
    /// A 64-bit memory BAR in the header's last BAR slot has no upper half.
    Bar64WithoutUpperHalf {
        /// The function.
        bdf: Bdf,
        /// Register offset of the BAR.
        offset: u16,
    },
    /// A memory BAR with the reserved type 0b11.
    ReservedBarType {
        /// The function.
        bdf: Bdf,
        /// Register offset of the BAR.
        offset: u16,
    },
    /// The topology has no room for another function.
    TooManyFunctions {
        /// The function that did not fit.
        bdf: Bdf,
    },
    /// Bridges nest deeper than the enumerator follows.
    TooDeep {
        /// The bridge whose bus would exceed the depth.
        bridge: Bdf,
    },
    /// A bridge's secondary bus is not above its own bus, so firmware did
    /// not configure it (the PCI server does not renumber buses).
    UnconfiguredBridge {
        /// The bridge.
        bridge: Bdf,
        /// Its secondary bus register.
        secondary: u8,
    },
    /// A function still answered all ones after its reset and every wait
    /// for it (it may still be resetting, or be gone).
    ResetTimedOut {
        /// The function.
        bdf: Bdf,
    },
    /// Two bridges lead to the same bus.
    BusAlreadyScanned {
        /// The second bridge that claims the bus.
        bridge: Bdf,
        /// The bus.
        bus: u8,
    },
}

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Access { bdf, offset, error } => write!(f, "{bdf}: config access at {offset:#05x} failed: {error:?}"),
            Self::CapabilityLoop { bdf, list, offset } => {
                write!(f, "{bdf}: {list:?} capability list loops back to {offset:#05x}")
            }
            Self::CapabilityTruncated { bdf, id, offset } => {
                write!(f, "{bdf}: capability {id:#x} at {offset:#05x} runs past the end of config space")
            }
            Self::NoSuchBar { bdf, index } => write!(f, "{bdf}: no BAR {index}"),
            Self::UpperHalfOfBar { bdf, offset } => {
                write!(f, "{bdf}: register {offset:#04x} is the upper half of a 64-bit BAR")
            }
            Self::Bar64WithoutUpperHalf { bdf, offset } => {
                write!(f, "{bdf}: 64-bit BAR at {offset:#04x} has no upper half")
            }
            Self::ReservedBarType { bdf, offset } => write!(f, "{bdf}: BAR at {offset:#04x} has the reserved type"),
            Self::TooManyFunctions { bdf } => {
                write!(f, "{bdf}: more functions than the PCI server holds (MAX_FUNCTIONS = {MAX_FUNCTIONS})")
            }
            Self::TooDeep { bridge } => write!(f, "{bridge}: bridges nest too deep"),
            Self::UnconfiguredBridge { bridge, secondary } => {
                write!(f, "{bridge}: bridge not configured by firmware (secondary bus {secondary:#04x})")
            }
            Self::ResetTimedOut { bdf } => write!(f, "{bdf}: did not come back from its function-level reset"),
            Self::BusAlreadyScanned { bridge, bus } => {
                write!(f, "{bridge}: bus {bus:#04x} is already below another bridge")
            }
        }
    }
}
