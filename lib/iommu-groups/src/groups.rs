//! The result of group formation: each function's group, and why.

use core::fmt;

use capabilities::pci::{Bdf, MAX_FUNCTIONS};
use heapless::Vec;
use serde::{Deserialize, Serialize};

use crate::cause::{Cause, write_reason};

/// Most groups a topology may form: every server that keeps per-group
/// state (the IOMMU server's owners, default domains and fault logs) is
/// sized for this many, and formation refuses a topology that needs more.
pub const MAX_GROUPS: usize = 512;

/// Identifies a group. Ids count from 0 in the order Linux allocates them
/// (the probe order of each group's first function), so the same topology
/// always gets the same ids, which match Linux's `/sys/kernel/iommu_groups`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GroupId(pub u16);

/// Where one function went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Placement {
    /// The function.
    pub bdf: Bdf,
    /// Its group.
    pub group: GroupId,
    /// Why it is in that group.
    pub cause: Cause,
    /// The requester id its DMA carries at the IOMMU (its own, or the one
    /// the last aliasing bridge above it imposes).
    pub requester: Bdf,
}

/// Every function's group, in probe order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Groups {
    placements: Vec<Placement, MAX_FUNCTIONS>,
    count: u16,
}

impl Groups {
    pub(crate) fn new(placements: Vec<Placement, MAX_FUNCTIONS>, count: u16) -> Self {
        Self { placements, count }
    }

    /// Every function's placement, in the order Linux probes them.
    pub fn placements(&self) -> &[Placement] {
        &self.placements
    }

    /// How many groups there are; ids run from 0 to this minus one.
    pub fn count(&self) -> usize {
        usize::from(self.count)
    }

    /// The ids of all groups, in order.
    pub fn ids(&self) -> impl Iterator<Item = GroupId> {
        (0..self.count).map(GroupId)
    }

    /// The placement of `bdf`.
    pub fn placement(&self, bdf: Bdf) -> Option<&Placement> {
        self.placements.iter().find(|placement| placement.bdf == bdf)
    }

    /// The group of `bdf`.
    pub fn group_of(&self, bdf: Bdf) -> Option<GroupId> {
        self.placement(bdf).map(|placement| placement.group)
    }

    /// The members of `group`, in probe order.
    pub fn members(&self, group: GroupId) -> impl Iterator<Item = Bdf> + Clone + '_ {
        self.placements.iter().filter(move |placement| placement.group == group).map(|placement| placement.bdf)
    }

    /// The distinct requester ids DMA from `group`'s members carries at the
    /// IOMMU, in probe order of their first member.
    pub fn requesters(&self, group: GroupId) -> impl Iterator<Item = Bdf> + '_ {
        let in_group = move |placement: &&Placement| placement.group == group;
        self.placements.iter().filter(in_group).enumerate().filter_map(move |(position, placement)| {
            let earlier = self.placements.iter().filter(in_group).take(position);
            let mut earlier = earlier.map(|other| other.requester);
            (!earlier.any(|requester| requester == placement.requester)).then_some(placement.requester)
        })
    }

    /// Why `group` has its shape: one [`Reason`] per distinct cause among
    /// its members, in probe order. A group of one function has a single
    /// [`Cause::Founder`] reason; in larger groups the founder is left out,
    /// since the other reasons name it.
    pub fn reasons(&self, group: GroupId) -> impl Iterator<Item = Reason<'_>> + '_ {
        let alone = self.members(group).nth(1).is_none();
        let in_group = move |placement: &&Placement| placement.group == group;
        self.placements.iter().filter(in_group).enumerate().filter_map(move |(position, placement)| {
            let repeated = self.placements.iter().filter(in_group).take(position).any(|p| p.cause == placement.cause);
            let shown = alone || placement.cause != Cause::Founder;
            (shown && !repeated).then_some(Reason { groups: self, group, cause: placement.cause })
        })
    }

    /// All reasons of `group` as text, one sentence a line.
    pub fn explain(&self, group: GroupId) -> Explanation<'_> {
        Explanation { groups: self, group }
    }
}

/// Lists the groups in the format `linux-groups` and `cargo xtask groups`
/// print, one function a line: `group N BB:DD.F`, by group then probe order.
impl fmt::Display for Groups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for group in self.ids() {
            for bdf in self.members(group) {
                writeln!(f, "group {} {bdf}", group.0)?;
            }
        }
        Ok(())
    }
}

/// One reason a group has its shape: a cause and the members it applies to.
#[derive(Clone, Copy, Debug)]
pub struct Reason<'a> {
    groups: &'a Groups,
    group: GroupId,
    /// The rule.
    pub cause: Cause,
}

impl<'a> Reason<'a> {
    /// The members of the group placed there by this cause, in probe order.
    pub fn members(&self) -> impl Iterator<Item = Bdf> + Clone + 'a {
        let (group, cause) = (self.group, self.cause);
        self.groups
            .placements
            .iter()
            .filter(move |placement| placement.group == group && placement.cause == cause)
            .map(|placement| placement.bdf)
    }
}

/// The sentence, e.g. "01:01.0 and 01:02.0 issue DMA as 01:00.0 (alias
/// through PCIe-to-PCI bridge 00:04.0)".
impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_reason(f, self.cause, self.members())
    }
}

/// A group's reasons as text (see [`Groups::explain`]).
pub struct Explanation<'a> {
    groups: &'a Groups,
    group: GroupId,
}

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, reason) in self.groups.reasons(self.group).enumerate() {
            if position > 0 {
                writeln!(f)?;
            }
            write!(f, "{reason}")?;
        }
        Ok(())
    }
}
