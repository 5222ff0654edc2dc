//! PCIe Access Control Services: the ACS bits and the ACS capability.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::listed::Listed;

/// ACS capability or control bits (PCIe Access Control Services).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AcsFlags(pub u16);

impl AcsFlags {
    /// No bits.
    pub const NONE: Self = Self(0);
    /// Source validation: the port checks requester ids of upstream requests.
    pub const SOURCE_VALIDATION: Self = Self(0x01);
    /// Translation blocking of pre-translated requests.
    pub const TRANSLATION_BLOCKING: Self = Self(0x02);
    /// Peer-to-peer request redirect: peer requests go upstream.
    pub const REQUEST_REDIRECT: Self = Self(0x04);
    /// Peer-to-peer completion redirect.
    pub const COMPLETION_REDIRECT: Self = Self(0x08);
    /// Upstream forwarding of requests aimed back down through the port.
    pub const UPSTREAM_FORWARDING: Self = Self(0x10);
    /// Peer-to-peer egress control.
    pub const EGRESS_CONTROL: Self = Self(0x20);
    /// Direct translated peer-to-peer.
    pub const DIRECT_TRANSLATED: Self = Self(0x40);
    /// The bits IOMMU isolation requires (Linux's `REQ_ACS_FLAGS`).
    pub const ISOLATION: Self = Self(0x01 | 0x04 | 0x08 | 0x10);

    /// Names of the seven defined bits, lowest first.
    const NAMES: [(Self, &'static str); 7] = [
        (Self::SOURCE_VALIDATION, "source validation"),
        (Self::TRANSLATION_BLOCKING, "translation blocking"),
        (Self::REQUEST_REDIRECT, "request redirect"),
        (Self::COMPLETION_REDIRECT, "completion redirect"),
        (Self::UPSTREAM_FORWARDING, "upstream forwarding"),
        (Self::EGRESS_CONTROL, "egress control"),
        (Self::DIRECT_TRANSLATED, "direct translated P2P"),
    ];

    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Bits set in either.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Bits set in both.
    pub const fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// Bits set here but not in `other`.
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Lists the set bits by name: "request redirect and completion redirect".
impl fmt::Display for AcsFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = Self::NAMES.iter().filter(|(flag, _)| self.contains(*flag)).map(|(_, name)| name);
        write!(f, "{}", Listed(names))
    }
}

/// The ACS extended capability (id 0x000d).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AcsInfo {
    /// Offset of the capability in extended configuration space.
    pub offset: u16,
    /// The capability register: which controls the hardware implements.
    pub capability: AcsFlags,
    /// The control register: which controls are enabled.
    pub control: AcsFlags,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acs_flags_print_by_name() {
        assert_eq!(std::format!("{}", AcsFlags::REQUEST_REDIRECT), "request redirect");
        assert_eq!(
            std::format!("{}", AcsFlags::ISOLATION),
            "source validation, request redirect, completion redirect and upstream forwarding"
        );
        assert_eq!(std::format!("{}", AcsFlags::NONE), "");
    }
}
