//! Which driven unit translates each group, and why a group that has none goes to no one.
//!
//! One unit must translate every member of a group: its context entries,
//! its default domain's invalidations and its interrupt entries all live
//! on that unit. A group is placed on the unit DMAR puts all its members
//! under; a group with a member under no driven unit, under a unit that
//! did not come up, under two units at once, or with members under
//! different units, is never split: it goes to no one, and every claim of
//! it is refused naming the member and the units.

use core::fmt::Write;

use capabilities::ErrorCode;
use capabilities::pci::{Bdf, PciFunction};
use heapless::{String, Vec};
use iommu_api::REASON_MAX;
use iommu_groups::Groups;

use super::scope::{Coverage, Scopes};
use super::text::refused;
use super::units::{DownUnit, UnitIndex};
use super::{Answer, Ready};
use crate::ownership::MAX_GROUPS;

/// Where a group's DMA is translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupUnit {
    /// By this driven unit, which every member is under.
    Driven(UnitIndex),
    /// Not at all: DMAR puts this member under no unit the server drives.
    Untranslated(Bdf),
    /// By a granted unit that did not come up, which this member is under.
    Down {
        /// The member.
        device: Bdf,
        /// The unit, and why it is down.
        unit: DownUnit,
    },
    /// By two units: the first member under one, the second under another.
    Spanning {
        /// A member and the register base of its unit.
        first: (Bdf, u64),
        /// A member under another unit, and that unit's register base.
        second: (Bdf, u64),
    },
    /// DMAR puts this member under two units at once (these bases).
    Ambiguous {
        /// The member.
        device: Bdf,
        /// The two units' register bases.
        units: (u64, u64),
    },
}

impl GroupUnit {
    /// The driven unit, if the group has one.
    pub fn driven(self) -> Option<UnitIndex> {
        match self {
            Self::Driven(unit) => Some(unit),
            _ => None,
        }
    }
}

/// What the server knows of the units when it places groups.
pub(super) struct Units<'a> {
    /// DMAR's device scopes.
    pub scopes: &'a Scopes,
    /// The register base of each driven unit, by index.
    pub driven: &'a [u64],
    /// The granted units that did not come up.
    pub down: &'a [DownUnit],
}

impl Units<'_> {
    /// The driven unit of `device` and its base, or why it has none.
    fn of(&self, topology: &[PciFunction], device: Bdf) -> Result<(u64, UnitIndex), GroupUnit> {
        match self.scopes.unit_of(topology, device) {
            Coverage::Unit(base) => {
                if let Some(index) = self.driven.iter().position(|&driven| driven == base) {
                    return Ok((base, index as UnitIndex));
                }
                match self.down.iter().find(|unit| unit.base == base) {
                    Some(&unit) => Err(GroupUnit::Down { device, unit }),
                    None => Err(GroupUnit::Untranslated(device)),
                }
            }
            Coverage::Ambiguous(first, second) => Err(GroupUnit::Ambiguous { device, units: (first, second) }),
            Coverage::Nothing => Err(GroupUnit::Untranslated(device)),
        }
    }

    /// Where `members` (a group's) are translated.
    fn place(&self, topology: &[PciFunction], members: impl Iterator<Item = Bdf>) -> GroupUnit {
        let mut placed: Option<(Bdf, u64, UnitIndex)> = None;
        for member in members {
            let (base, index) = match self.of(topology, member) {
                Ok(found) => found,
                Err(refusal) => return refusal,
            };
            match placed {
                None => placed = Some((member, base, index)),
                Some((first, first_base, first_index)) if first_index != index => {
                    return GroupUnit::Spanning { first: (first, first_base), second: (member, base) };
                }
                Some(_) => {}
            }
        }
        // Groups are never empty; an empty one would have nothing to translate.
        placed.map_or(GroupUnit::Untranslated(Bdf::from_requester_id(0)), |(_, _, index)| GroupUnit::Driven(index))
    }
}

/// The unit of every group of `groups`, by group.
pub(super) fn place_groups(units: &Units<'_>, topology: &[PciFunction], groups: &Groups) -> Vec<GroupUnit, MAX_GROUPS> {
    groups.ids().map(|id| units.place(topology, groups.members(id))).collect()
}

/// Why no one may claim `group`, placed as `placed`, if no one driven
/// unit translates all of it.
pub(super) fn refusal_words(group: u16, placed: GroupUnit) -> Option<String<REASON_MAX>> {
    let mut text = String::new();
    let _ = match placed {
        GroupUnit::Driven(_) => return None,
        GroupUnit::Untranslated(device) => write!(
            text,
            "group {group} holds {device}, which no remapping unit this server drives translates (outside its DMAR scope): its DMA would reach memory untranslated, so the group goes to no one"
        ),
        GroupUnit::Down { device, unit } => write!(
            text,
            "group {group} holds {device}, whose remapping unit at {:#x} did not come up ({}): the group goes to no one",
            unit.base, unit.reason
        ),
        GroupUnit::Spanning { first, second } => write!(
            text,
            "group {group} spans two remapping units ({} under the unit at {:#x}, {} under the unit at {:#x}): one unit must translate a whole group, so it goes to no one",
            first.0, first.1, second.0, second.1
        ),
        GroupUnit::Ambiguous { device, units } => write!(
            text,
            "group {group} holds {device}, which DMAR puts under two remapping units at once ({:#x} and {:#x}): the group goes to no one",
            units.0, units.1
        ),
    };
    Some(text)
}

/// The refusal of any claim of `group` if no one driven unit translates
/// all of it.
pub(super) fn refusal(ready: &Ready, group: u16) -> Option<Answer> {
    let words = refusal_words(group, ready.units.get(usize::from(group)).copied()?)?;
    Some(refused(ErrorCode::PermissionDenied, &words).into())
}
