//! Why a function landed in its group, as data and as a sentence.

use core::fmt;

use capabilities::listed::Listed;
use capabilities::pci::{Bdf, BridgeKind, PcieDeviceType};
use serde::{Deserialize, Serialize};

use crate::acs::AcsShortfall;

/// The rule that put a function into its group.
///
/// Group formation visits functions in Linux's probe order; a function
/// either joins the group of one probed before it, for one of the reasons
/// below, or starts a new group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Cause {
    /// Nothing probed earlier shares its requester id or can reach it
    /// peer-to-peer without the IOMMU: it starts a group.
    Founder,
    /// Its DMA carries `requester` when it passes `bridge`, which already has
    /// a group: the IOMMU cannot tell the two apart.
    DmaAlias {
        /// The bridge that takes over the requester id.
        bridge: Bdf,
        /// What kind of bridge it is.
        kind: BridgeKind,
        /// The requester id the bridge gives the DMA.
        requester: Bdf,
    },
    /// The path from `bridge` to the root lacks ACS isolation at `blocker`,
    /// so functions below `bridge` can reach each other peer-to-peer
    /// without the IOMMU; the function joins `bridge`'s group.
    AcsPath {
        /// The upstream bridge whose group it joins.
        bridge: Bdf,
        /// The first function on the path from `bridge` up that is not isolated.
        blocker: Bdf,
        /// What kind of bridge the blocker is.
        blocker_kind: BridgeKind,
        /// Why it is not isolated.
        shortfall: AcsShortfall,
    },
    /// The function and `peer` (on the same bus) alias each other's
    /// requester ids by device quirk.
    QuirkAlias {
        /// The function whose group it joins.
        peer: Bdf,
    },
    /// The function and `peer` are functions of one multifunction device and
    /// not isolated from each other by ACS.
    Multifunction {
        /// The function whose group it joins.
        peer: Bdf,
    },
}

/// Names a PCI Express type to which ACS never applies.
fn never_applies_name(kind: PcieDeviceType) -> &'static str {
    match kind {
        PcieDeviceType::PcieToPciBridge => "a PCIe-to-PCI bridge",
        PcieDeviceType::PciToPcieBridge => "a PCI-to-PCIe bridge",
        PcieDeviceType::RootComplexEventCollector => "a root complex event collector",
        _ => "a PCI Express function",
    }
}

/// The shortfall as the end of a sentence about the function.
impl fmt::Display for AcsShortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Conventional => write!(f, "is conventional PCI, which has no ACS"),
            Self::NeverApplies(kind) => write!(f, "is {}, to which ACS never applies", never_applies_name(kind)),
            Self::NoCapability => write!(f, "has no ACS capability"),
            Self::NotEnabled(missing) => write!(f, "lacks ACS {missing}"),
            Self::Quirk(missing) => write!(f, "lacks {missing} by device quirk"),
        }
    }
}

/// Writes the sentence for `cause` shared by `members` (in probe order).
pub(crate) fn write_reason<I: Iterator<Item = Bdf> + Clone>(
    f: &mut fmt::Formatter<'_>,
    cause: Cause,
    members: I,
) -> fmt::Result {
    let plural = members.clone().nth(1).is_some();
    let list = Listed(members);
    match cause {
        Cause::Founder => {
            write!(f, "{list} is isolated: no other function shares its requester id or reaches it peer-to-peer")
        }
        Cause::DmaAlias { bridge, kind, requester } => {
            let verb = if plural { "issue" } else { "issues" };
            write!(f, "{list} {verb} DMA as {requester} (alias through {} {bridge})", kind.name())
        }
        Cause::AcsPath { bridge, blocker, blocker_kind, shortfall } if bridge == blocker => {
            write!(f, "{} {blocker} {shortfall}, so everything below it shares its group: {list}", blocker_kind.name())
        }
        Cause::AcsPath { bridge, blocker, blocker_kind, shortfall } => {
            let verb = if plural { "join" } else { "joins" };
            write!(
                f,
                "{} {blocker} {shortfall}, so everything below it shares a group: {list} {verb} {bridge}",
                blocker_kind.name()
            )
        }
        Cause::QuirkAlias { peer } => {
            let all = Listed(list.0.chain(core::iter::once(peer)));
            write!(f, "{all} are DMA aliases of each other (device quirk)")
        }
        Cause::Multifunction { peer } => {
            let all = Listed(core::iter::once(peer).chain(list.0));
            write!(f, "{all} are functions of one multifunction device without ACS")
        }
    }
}
