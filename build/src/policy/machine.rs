//! Checking a policy's `[devices]` against a machine's real IOMMU groups.
//!
//! The groups come from the machine itself (`crate::groups::boot`: the
//! IOMMU server's own formation code), so this module only applies the
//! policy to them, the way the servers will at run time: a function's
//! driver is the first device rule with a driver that matches it (the PCI
//! server's rule), and a user task may claim every group holding a
//! function one of its rules matches (the IOMMU server's rule). A group is
//! driven by trusted drivers or owned by one user task, never both: a
//! DMA-capable driver and a user task in one group would each lose, or
//! attack, the other's DMA.

use std::fmt::Write;

use capabilities::config::DeviceMatch;

use super::{Device, Policy, Problem};
use crate::groups::{Function, Group, MachineGroups};

/// What checking a policy against a machine found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineCheck {
    /// What makes the policy wrong for the machine.
    pub problems: Vec<Problem>,
    /// What the policy implies that its author may not have meant: the
    /// companions a user task owns along with the devices it names.
    pub notes: Vec<Problem>,
}

/// The selector in words, for "the machine has no function ...".
fn selector_words(selector: DeviceMatch) -> String {
    match selector {
        DeviceMatch::Address(bdf) => format!("at {bdf}"),
        DeviceMatch::Ids { vendor, device } => format!("with ids {vendor:04x}:{device:04x}"),
    }
}

fn matches(rule: &Device, function: &Function) -> bool {
    rule.selector.matches(function.bdf, function.vendor, function.device)
}

/// "a", "a and b", "a, b and c".
fn list(items: &[String]) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// The group's reasons, as one sentence run.
fn why(group: &Group) -> String {
    group.reasons.join("; ")
}

/// Memory the kernel and firmware keep out of the tasks' reach on a q35
/// machine: the low 1 MiB, the kernel image and its tables, the ACPI and
/// SeaBIOS areas near the top of low RAM, with room to spare.
pub const KERNEL_RESERVE_MIB: u64 = 16;

/// Whether the tasks' memory quotas fit a machine with `memory_mib` MiB:
/// a quota is a promise the kernel keeps only if the pages exist.
fn check_memory(policy: &Policy, machine: &str, memory_mib: u32) -> Option<Problem> {
    let pages: u64 = policy.tasks.iter().map(|task| u64::from(task.memory_pages)).sum();
    let wanted_kib = pages * 4;
    let usable_kib = u64::from(memory_mib).saturating_sub(KERNEL_RESERVE_MIB) * 1024;
    (wanted_kib > usable_kib).then(|| Problem {
        line: 1,
        message: format!(
            "the tasks' memory quotas add up to {} KiB ({pages} pages), but machine `{machine}` has {memory_mib} MiB, of which {KERNEL_RESERVE_MIB} MiB are the kernel's and the firmware's: {usable_kib} KiB for tasks",
            wanted_kib
        ),
    })
}

/// Checks `policy` against machine `machine`: its `memory_mib` of RAM and
/// its groups.
pub fn check(policy: &Policy, machine: &str, memory_mib: u32, groups: &MachineGroups) -> MachineCheck {
    let mut result = MachineCheck::default();
    result.problems.extend(check_memory(policy, machine, memory_mib));
    let functions: Vec<&Function> = groups.functions().map(|(_, function)| function).collect();
    result.problems.extend(missing_functions(policy, machine, &functions));
    result.problems.extend(double_bindings(policy, &functions));
    for group in &groups.groups {
        check_group(policy, group, &mut result);
    }
    // Reported in file order, like the policy's own checks.
    result.problems.sort_by_key(|problem| problem.line);
    result.notes.sort_by_key(|note| note.line);
    result
}

/// The name of task `index`, for messages.
fn task(policy: &Policy, index: usize) -> &str {
    policy.tasks.get(index).map_or("?", |task| task.name.as_str())
}

/// The name of the driver task of `rule`, for messages.
fn driver_of<'a>(policy: &'a Policy, rule: &Device) -> &'a str {
    rule.driver.map_or("?", |(driver, _)| task(policy, driver))
}

/// The rule that binds `function` to its driver: the PCI server binds each
/// function to the first rule with a driver that matches it.
fn binding(policy: &Policy, function: &Function) -> Option<usize> {
    policy.devices.iter().position(|rule| rule.driver.is_some() && matches(rule, function))
}

/// Rules that match no function of the machine.
fn missing_functions(policy: &Policy, machine: &str, functions: &[&Function]) -> Vec<Problem> {
    policy
        .devices
        .iter()
        .filter(|rule| !functions.iter().any(|function| matches(rule, function)))
        .map(|rule| Problem {
            line: rule.line,
            message: format!(
                "device `{}`: machine `{machine}` has no function {}",
                rule.name,
                selector_words(rule.selector)
            ),
        })
        .collect()
}

/// Later rules whose driver never gets a function an earlier rule binds.
fn double_bindings(policy: &Policy, functions: &[&Function]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for function in functions {
        let Some(first) = binding(policy, function) else { continue };
        let winner = &policy.devices[first];
        for later in policy.devices[first + 1..].iter().filter(|rule| rule.driver.is_some() && matches(rule, function))
        {
            let (Some((won, _)), Some((lost, _))) = (winner.driver, later.driver) else { continue };
            problems.push(Problem {
                line: later.line,
                message: format!(
                    "device `{}`: {} is already bound to driver `{}` by device `{}` (line {}); it cannot also be bound to `{}`",
                    later.name,
                    function.bdf,
                    task(policy, won),
                    winner.name,
                    winner.line,
                    task(policy, lost)
                ),
            });
        }
    }
    problems
}

/// One group as the policy reaches it.
struct Reach<'a> {
    group: &'a Group,
    /// Every user rule that names functions of the group, with those functions.
    users: Vec<(&'a Device, Vec<&'a Function>)>,
    /// The group's functions bound to drivers, with the binding rule and
    /// whether that driver does DMA.
    bound: Vec<(&'a Function, &'a Device, bool)>,
}

/// A user rule's claim on one group.
struct Claim<'a> {
    rule: &'a Device,
    /// The user task.
    user: usize,
    /// The group's functions the rule names.
    named: &'a [&'a Function],
    /// `named` in words.
    named_list: String,
}

/// The group's problems and notes: every user rule reaching it must be its
/// only owner, with no DMA-capable driver beside it.
fn check_group(policy: &Policy, group: &Group, result: &mut MachineCheck) {
    let users: Vec<(&Device, Vec<&Function>)> = policy
        .devices
        .iter()
        .filter(|rule| rule.user.is_some())
        .map(|rule| (rule, group.functions.iter().filter(|function| matches(rule, function)).collect::<Vec<_>>()))
        .filter(|(_, named)| !named.is_empty())
        .collect();
    if users.is_empty() {
        return;
    }
    let bound = group
        .functions
        .iter()
        .filter_map(|function| {
            let rule = &policy.devices[binding(policy, function)?];
            rule.driver.map(|(_, dma)| (function, rule, dma))
        })
        .collect();
    let reach = Reach { group, users, bound };
    for (rule, named) in &reach.users {
        let Some(user) = rule.user else { continue };
        let named_list = list(&named.iter().map(|function| function.bdf.to_string()).collect::<Vec<_>>());
        let claim = Claim { rule, user, named, named_list };
        result.problems.extend(dma_conflict(policy, &reach, &claim));
        result.problems.extend(second_owner(policy, &reach, &claim));
        result.notes.extend(companions(policy, &reach, &claim));
    }
}

/// A claim on a group that also holds functions bound to DMA-capable drivers.
fn dma_conflict(policy: &Policy, reach: &Reach<'_>, claim: &Claim<'_>) -> Option<Problem> {
    let conflicts: Vec<String> = reach
        .bound
        .iter()
        .filter(|(_, binder, dma)| *dma && !std::ptr::eq(*binder, claim.rule))
        .map(|(function, binder, _)| {
            let itself = claim.named.iter().any(|mine| mine.bdf == function.bdf);
            format!(
                "{}{}, bound to DMA-capable driver `{}` (device `{}`, line {})",
                function.bdf,
                if itself { " itself" } else { "" },
                driver_of(policy, binder),
                binder.name,
                binder.line
            )
        })
        .collect();
    if conflicts.is_empty() {
        return None;
    }
    let group = reach.group;
    let mut message = format!(
        "device `{}`: user task `{}` is assigned {}, but its IOMMU group {} ({}) also holds {}: a group is driven by trusted drivers or owned by one user task, never both",
        claim.rule.name,
        task(policy, claim.user),
        claim.named_list,
        group.id,
        group.member_list(),
        list(&conflicts)
    );
    if group.functions.len() > 1 {
        let _ = write!(message, ". {}", why(group));
    }
    Some(Problem { line: claim.rule.line, message })
}

/// A claim by another user task than the group's first claim.
fn second_owner(policy: &Policy, reach: &Reach<'_>, claim: &Claim<'_>) -> Option<Problem> {
    let (first_rule, first_named) = reach.users.first()?;
    let first_user = first_rule.user.filter(|first_user| *first_user != claim.user)?;
    let first_list = list(&first_named.iter().map(|function| function.bdf.to_string()).collect::<Vec<_>>());
    let group = reach.group;
    Some(Problem {
        line: claim.rule.line,
        message: format!(
            "device `{}`: user task `{}` is assigned {}, but its IOMMU group {} ({}) is also assigned to user task `{}` (device `{}`, line {}, names {first_list}): a group has one owner. {}",
            claim.rule.name,
            task(policy, claim.user),
            claim.named_list,
            group.id,
            group.member_list(),
            task(policy, first_user),
            first_rule.name,
            first_rule.line,
            why(group)
        ),
    })
}

/// The note on what else the user task owns with the group: the functions
/// it does not name.
fn companions(policy: &Policy, reach: &Reach<'_>, claim: &Claim<'_>) -> Option<Problem> {
    let group = reach.group;
    let companions: Vec<String> = group
        .functions
        .iter()
        .filter(|function| !claim.named.iter().any(|mine| mine.bdf == function.bdf))
        .map(|function| match reach.bound.iter().find(|(bound, _, _)| bound.bdf == function.bdf) {
            Some((_, binder, false)) => {
                format!("{} (stays with no-DMA driver `{}`)", function.bdf, driver_of(policy, binder))
            }
            _ => function.bdf.to_string(),
        })
        .collect();
    if companions.is_empty() {
        return None;
    }
    Some(Problem {
        line: claim.rule.line,
        message: format!(
            "device `{}`: user task `{}` owns all of IOMMU group {} with {}: also {}. {}",
            claim.rule.name,
            task(policy, claim.user),
            group.id,
            claim.named_list,
            list(&companions),
            why(group)
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::parse;

    /// The design example's groups, as the IOMMU server reports them.
    fn design_example() -> MachineGroups {
        let lines = [
            "GROUP 0 00:00.0 0x8086:0x29c0",
            "GROUP 1 00:03.0 0x1234:0x11e8",
            "GROUP 2 00:04.0 0x1b36:0x000e",
            "GROUP 2 01:01.0 0x1234:0x11e8",
            "GROUP 2 01:02.0 0x1234:0x11e8",
            "REASON 2 01:01.0 and 01:02.0 issue DMA as 01:00.0 (alias through PCIe-to-PCI bridge 00:04.0)",
            "GROUP 3 00:1f.0 0x8086:0x2918",
            "GROUP 3 00:1f.2 0x8086:0x2922",
            "GROUP 3 00:1f.3 0x8086:0x2930",
            "REASON 3 00:1f.0, 00:1f.2 and 00:1f.3 are functions of one multifunction device without ACS",
            "GROUPS END 4 8",
        ];
        MachineGroups::parse(lines).expect("complete report")
    }

    const TASKS: &str = r#"version = 1
description = "device rules over the design example"

[tasks.edu-driver]
binary = "hello"
kind = "driver"
priority = 5
memory-pages = 32
stack-pages = 2

[tasks.stub]
binary = "hello"
kind = "driver"
dma = false
priority = 5
memory-pages = 32
stack-pages = 2

[tasks.owner]
binary = "hello"
kind = "user"
priority = 4
memory-pages = 32
stack-pages = 2

[tasks.rival]
binary = "hello"
kind = "user"
priority = 4
memory-pages = 32
stack-pages = 2
"#;

    fn policy(devices: &str) -> Policy {
        parse(Path::new("test.toml"), &format!("{TASKS}{devices}"), &["hello".to_string()]).expect("valid policy")
    }

    fn rendered(problems: &[Problem]) -> Vec<String> {
        problems.iter().map(|problem| format!("{}: {}", problem.line, problem.message)).collect()
    }

    #[test]
    fn a_user_device_beside_a_dma_driver_in_one_group_is_refused_naming_both() {
        let policy = policy(
            "\n[devices.kernel-edu]\naddress = \"01:02.0\"\ndriver = \"edu-driver\"\n\
             \n[devices.user-edu]\naddress = \"01:01.0\"\nuser = \"owner\"\n",
        );
        let result = check(&policy, "bridge", 256, &design_example());
        assert_eq!(
            rendered(&result.problems),
            [
                "37: device `user-edu`: user task `owner` is assigned 01:01.0, but its IOMMU group 2 (00:04.0, 01:01.0 and 01:02.0) also holds 01:02.0, bound to DMA-capable driver `edu-driver` (device `kernel-edu`, line 33): a group is driven by trusted drivers or owned by one user task, never both. 01:01.0 and 01:02.0 issue DMA as 01:00.0 (alias through PCIe-to-PCI bridge 00:04.0)"
            ]
        );
        assert_eq!(
            rendered(&result.notes),
            [
                "37: device `user-edu`: user task `owner` owns all of IOMMU group 2 with 01:01.0: also 00:04.0 and 01:02.0. 01:01.0 and 01:02.0 issue DMA as 01:00.0 (alias through PCIe-to-PCI bridge 00:04.0)"
            ]
        );
    }

    #[test]
    fn no_dma_drivers_may_stay_and_separate_groups_do_not_mix() {
        let policy = policy(
            "\n[devices.bridge]\naddress = \"00:04.0\"\ndriver = \"stub\"\n\
             \n[devices.lone-edu]\naddress = \"00:03.0\"\ndriver = \"edu-driver\"\n\
             \n[devices.user-edus]\nids = \"1234:11e8\"\nuser = \"owner\"\n",
        );
        // The ids rule also names 00:03.0, which a DMA driver holds: that
        // one mixes; group 2 holds only a no-DMA driver and the user.
        let result = check(&policy, "bridge", 256, &design_example());
        let problems = rendered(&result.problems);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].starts_with(
                "41: device `user-edus`: user task `owner` is assigned 00:03.0, but its IOMMU group 1 (00:03.0) also holds 00:03.0 itself, bound to DMA-capable driver `edu-driver` (device `lone-edu`, line 37)"
            ),
            "{problems:#?}"
        );
        let notes = rendered(&result.notes);
        assert_eq!(notes.len(), 1, "{notes:#?}");
        assert!(
            notes[0].contains("with 01:01.0 and 01:02.0: also 00:04.0 (stays with no-DMA driver `stub`)"),
            "{notes:#?}"
        );
    }

    #[test]
    fn two_user_tasks_in_one_group_and_two_drivers_on_one_function_are_refused() {
        let policy = policy(
            "\n[devices.mine]\naddress = \"01:01.0\"\nuser = \"owner\"\n\
             \n[devices.theirs]\naddress = \"01:02.0\"\nuser = \"rival\"\n\
             \n[devices.by-address]\naddress = \"00:03.0\"\ndriver = \"stub\"\n\
             \n[devices.by-ids]\nids = \"1234:11e8\"\ndriver = \"edu-driver\"\n",
        );
        let result = check(&policy, "bridge", 256, &design_example());
        let problems = rendered(&result.problems);
        assert!(
            problems.contains(&"45: device `by-ids`: 00:03.0 is already bound to driver `stub` by device `by-address` (line 41); it cannot also be bound to `edu-driver`".to_string()),
            "{problems:#?}"
        );
        assert!(
            problems.iter().any(|p| p.starts_with("37: device `theirs`: user task `rival` is assigned 01:02.0, but its IOMMU group 2 (00:04.0, 01:01.0 and 01:02.0) is also assigned to user task `owner` (device `mine`, line 33, names 01:01.0): a group has one owner")),
            "{problems:#?}"
        );
        // The ids rule binds edu-driver (DMA) to both edus behind the bridge,
        // where the two user tasks are assigned.
        assert_eq!(problems.iter().filter(|p| p.contains("bound to DMA-capable driver `edu-driver`")).count(), 2);
        assert_eq!(problems.len(), 4, "{problems:#?}");
    }

    #[test]
    fn devices_the_machine_lacks_are_named() {
        let policy = policy(
            "\n[devices.ghost]\naddress = \"05:00.0\"\ndriver = \"stub\"\n\
             \n[devices.nvme]\nids = \"1b36:0010\"\nuser = \"owner\"\n",
        );
        let result = check(&policy, "bridge", 256, &design_example());
        assert_eq!(
            rendered(&result.problems),
            [
                "33: device `ghost`: machine `bridge` has no function at 05:00.0",
                "37: device `nvme`: machine `bridge` has no function with ids 1b36:0010"
            ]
        );
        assert!(result.notes.is_empty());
    }

    #[test]
    fn a_policy_that_fits_its_machine_has_no_problems() {
        let policy = policy(
            "\n[devices.lone-edu]\naddress = \"00:03.0\"\ndriver = \"edu-driver\"\n\
             \n[devices.bridge]\naddress = \"00:04.0\"\ndriver = \"stub\"\n\
             \n[devices.behind]\naddress = \"01:01.0\"\nuser = \"owner\"\n",
        );
        let result = check(&policy, "bridge", 256, &design_example());
        assert_eq!(result.problems, []);
        assert_eq!(result.notes.len(), 1);
    }

    #[test]
    fn memory_quotas_must_fit_the_machine() {
        let policy = policy("");
        let pages: u64 = policy.tasks.iter().map(|task| u64::from(task.memory_pages)).sum();
        let tight = u32::try_from((pages * 4).div_ceil(1024) + KERNEL_RESERVE_MIB).unwrap();
        assert_eq!(check(&policy, "bridge", tight, &design_example()).problems, []);
        let problems = check(&policy, "small", tight - 1, &design_example()).problems;
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains(&format!("({pages} pages), but machine `small` has {} MiB", tight - 1)));
    }
}
