//! Refusals in words: which devices share the group, why, and who holds it.

use core::fmt::Write;

use capabilities::ErrorCode;
use capabilities::config::TaskNames;
use capabilities::pci::Bdf;
use heapless::String;
use iommu_api::{OwnerReport, REASON_MAX, Reply};
use iommu_groups::GroupId;

use super::{Answer, AppliedAssertion, Ready};
use crate::ownership::{Owner, OwnershipError};

/// A refusal with `reason`.
pub fn refused(code: ErrorCode, reason: &str) -> Reply {
    let mut text = String::<REASON_MAX>::new();
    let _ = text.push_str(reason.get(..reason.len().min(REASON_MAX)).unwrap_or(""));
    Reply::Refused { code, reason: text }
}

/// A refusal whose reason is formatted from `args` (cut to fit).
pub fn refused_with(code: ErrorCode, args: core::fmt::Arguments<'_>) -> Reply {
    let mut text = String::<REASON_MAX>::new();
    let _ = text.write_fmt(args);
    Reply::Refused { code, reason: text }
}

/// The refusal of a request naming a device the topology lacks.
pub fn not_found(device: Bdf) -> Answer {
    refused_with(ErrorCode::NotFound, format_args!("no device {device} in the topology")).into()
}

/// The refusal of an ownership change the state machine turned down.
pub fn ownership_refusal(ready: &Ready, names: &TaskNames, group: u16, error: OwnershipError) -> Answer {
    match error {
        OwnershipError::Busy(owner) => busy(ready, names, group, owner).into(),
        OwnershipError::Hardware => refused(ErrorCode::Busy, "the remapping unit refused the change").into(),
        _ => refused(ErrorCode::InvalidArgument, "not allowed in the group's current state").into(),
    }
}

/// A group's owner as the protocol reports it.
pub fn owner_report(owner: Owner) -> OwnerReport {
    match owner {
        Owner::Unowned => OwnerReport::Unowned,
        Owner::Kernel { drivers } => OwnerReport::Kernel { drivers },
        Owner::User { task, .. } => OwnerReport::User { task },
        Owner::Reclaiming { task } => OwnerReport::Reclaiming { task },
    }
}

/// Why `group` cannot change hands: its members, why they share it, and
/// its holder by name.
pub fn busy(ready: &Ready, names: &TaskNames, group: u16, owner: Owner) -> Reply {
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
    members: impl Iterator<Item = Bdf> + Clone,
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
