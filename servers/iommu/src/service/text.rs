//! Refusals in words: which devices share the group, why, and who holds it.

use core::fmt::Write;

use capabilities::ErrorCode;
use heapless::String;
use iommu_api::{REASON_MAX, Reply};
use iommu_groups::GroupId;

use super::{AppliedAssertion, Ready};
use crate::ownership::Owner;

/// A refusal with `reason`.
pub fn refused(code: ErrorCode, reason: &str) -> Reply {
    let mut text = String::<REASON_MAX>::new();
    let _ = text.push_str(reason.get(..reason.len().min(REASON_MAX)).unwrap_or(""));
    Reply::Refused { code, reason: text }
}

/// Why `group` cannot change hands: its members, why they share it, and
/// its holder by name.
pub fn busy(ready: &Ready, names: &capabilities::config::TaskNames, group: u16, owner: Owner) -> Reply {
    let mut text = String::<REASON_MAX>::new();
    let id = GroupId(group);
    let _ = write!(text, "group {group} (");
    for (index, member) in ready.groups.members(id).enumerate() {
        let _ = write!(text, "{}{member}", if index > 0 { ", " } else { "" });
    }
    let _ = write!(text, ") ");
    let _ = match owner {
        Owner::Kernel { .. } => {
            let _ = write!(text, "is driven by trusted drivers with DMA:");
            for handle in ready.handles.iter().filter(|handle| handle.group == group) {
                let _ = write!(text, " {} on {};", names.name(handle.driver), handle.device);
            }
            Ok(())
        }
        Owner::User { task, .. } => write!(text, "is owned by user task {};", names.name(task)),
        Owner::Reclaiming { task } => {
            write!(text, "is being reclaimed from {} until its devices are quiesced;", names.name(task))
        }
        Owner::Unowned => write!(text, "is free;"),
    };
    let _ = write!(text, " {}", ready.groups.explain(id));
    assertion_notes(&ready.asserted, ready.groups.members(id), &mut text);
    Reply::Refused { code: ErrorCode::Busy, reason: text }
}

/// Appends, for each isolation assertion covering a member of the group
/// `members` lists, which functions it covers and the policy's reason.
pub fn assertion_notes<const N: usize>(
    asserted: &[AppliedAssertion],
    members: impl Iterator<Item = capabilities::pci::Bdf> + Clone,
    text: &mut String<N>,
) {
    for applied in asserted {
        if !members.clone().any(|member| applied.functions.contains(&member)) {
            continue;
        }
        let _ = write!(text, "; the policy asserts (`{}`) that", applied.name);
        for (index, function) in applied.functions.iter().enumerate() {
            let _ = write!(text, "{}{function}", if index > 0 { ", " } else { " " });
        }
        let _ = write!(text, " are isolated: {}", applied.reason);
    }
}
