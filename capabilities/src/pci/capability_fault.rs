//! A broken capability list: which list, where, and what is wrong.

use serde::{Deserialize, Serialize};

/// Which capability list a fault was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CapabilityList {
    /// The list in the first 256 bytes, starting at the capabilities pointer.
    Legacy,
    /// The PCI Express extended list, starting at 0x100.
    Extended,
}

/// What is wrong with a capability list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CapabilityFaultKind {
    /// A next pointer leads back to a capability already visited.
    Loop,
    /// A capability's registers run past the end of configuration space.
    Truncated,
}

/// A broken capability list. The walk stopped there; capabilities after
/// the fault are missing from the description, which can only make groups
/// larger (a missing ACS or PCI Express capability never isolates more).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CapabilityFault {
    /// The list the fault is in.
    pub list: CapabilityList,
    /// The offset of the offending capability or pointer target.
    pub offset: u16,
    /// What is wrong.
    pub kind: CapabilityFaultKind,
}
