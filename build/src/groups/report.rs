//! The groups a booted system reported, read back from the reporter's log.
//!
//! `groups-report` (qemu/tasks/groups-report) logs one line per fact; this
//! module turns those lines into [`MachineGroups`] and refuses anything
//! incomplete or malformed, so a report cut short by a crash can never
//! pass for a machine with fewer functions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write};

use capabilities::pci::Bdf;

use crate::policy::devices::parse_address;

/// One PCI function as the PCI server found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Function {
    /// Its address.
    pub bdf: Bdf,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
}

impl fmt::Display for Function {
    /// `BB:DD.F 0xvvvv:0xdddd`, the ids as Linux's sysfs prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:#06x}:{:#06x}", self.bdf, self.vendor, self.device)
    }
}

/// One IOMMU group as the IOMMU server formed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The server's id for it.
    pub id: u16,
    /// Its functions, by address.
    pub functions: Vec<Function>,
    /// Why it has its shape, one sentence each, in the server's words.
    pub reasons: Vec<String>,
}

impl Group {
    /// Its members' addresses as "a", "a and b" or "a, b and c".
    pub fn member_list(&self) -> String {
        let bdfs: Vec<String> = self.functions.iter().map(|function| function.bdf.to_string()).collect();
        match bdfs.split_last() {
            None => String::new(),
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        }
    }
}

/// Every group of a machine, by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineGroups {
    /// The groups, by id; each group's functions by address.
    pub groups: Vec<Group>,
}

/// Why a report cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportError {
    /// The reporter said something went wrong.
    Reporter(Vec<String>),
    /// A line does not follow the format.
    Malformed(String),
    /// The report never ended (the system stopped or hung first).
    Incomplete {
        /// Functions reported before it stopped.
        functions: usize,
    },
    /// The closing line's counts disagree with the lines before it.
    Counts {
        /// Groups and functions the closing line gives.
        claimed: (usize, usize),
        /// Groups and functions actually listed.
        listed: (usize, usize),
    },
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportError::Reporter(messages) => write!(f, "the groups reporter failed: {}", messages.join("; ")),
            ReportError::Malformed(line) => write!(f, "the groups reporter wrote an unreadable line: `{line}`"),
            ReportError::Incomplete { functions } => {
                write!(f, "the groups report never finished ({functions} functions reported before it stopped)")
            }
            ReportError::Counts { claimed, listed } => write!(
                f,
                "the groups report claims {} groups of {} functions but lists {} groups of {}",
                claimed.0, claimed.1, listed.0, listed.1
            ),
        }
    }
}

impl std::error::Error for ReportError {}

/// Parses `0xvvvv:0xdddd`.
fn parse_ids(text: &str) -> Option<(u16, u16)> {
    let (vendor, device) = text.split_once(':')?;
    let hex = |field: &str| field.strip_prefix("0x").and_then(|digits| u16::from_str_radix(digits, 16).ok());
    Some((hex(vendor)?, hex(device)?))
}

impl MachineGroups {
    /// Reads the reporter's lines (other text is ignored by the caller:
    /// pass only the reporter's own lines).
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Self, ReportError> {
        let mut groups: BTreeMap<u16, Group> = BTreeMap::new();
        let mut errors = Vec::new();
        let mut end = None;
        let mut seen = BTreeSet::new();
        for line in lines {
            let malformed = || ReportError::Malformed(line.to_owned());
            let mut words = line.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("GROUPS"), Some("ERROR"), Some(message)) => errors.push(message.to_owned()),
                (Some("GROUPS"), Some("FUNCTIONS"), Some(_)) => {}
                (Some("GROUPS"), Some("END"), Some(counts)) => {
                    let (groups, functions) = counts.split_once(' ').ok_or_else(malformed)?;
                    let number = |text: &str| text.parse::<usize>().map_err(|_| malformed());
                    end = Some((number(groups)?, number(functions)?));
                }
                (Some("GROUP"), Some(id), Some(rest)) => {
                    let id: u16 = id.parse().map_err(|_| malformed())?;
                    let (bdf, ids) = rest.split_once(' ').ok_or_else(malformed)?;
                    let bdf = parse_address(bdf).ok_or_else(malformed)?;
                    let (vendor, device) = parse_ids(ids).ok_or_else(malformed)?;
                    if !seen.insert(bdf) {
                        return Err(malformed());
                    }
                    let group =
                        groups.entry(id).or_insert_with(|| Group { id, functions: Vec::new(), reasons: Vec::new() });
                    group.functions.push(Function { bdf, vendor, device });
                }
                (Some("REASON"), Some(id), Some(sentence)) => {
                    let id: u16 = id.parse().map_err(|_| malformed())?;
                    let group =
                        groups.entry(id).or_insert_with(|| Group { id, functions: Vec::new(), reasons: Vec::new() });
                    group.reasons.push(sentence.to_owned());
                }
                _ => {}
            }
        }
        if !errors.is_empty() {
            return Err(ReportError::Reporter(errors));
        }
        let Some(claimed) = end else { return Err(ReportError::Incomplete { functions: seen.len() }) };
        let mut groups: Vec<Group> = groups.into_values().collect();
        for group in &mut groups {
            group.functions.sort();
        }
        let listed = (groups.len(), seen.len());
        // A group with reasons but no functions is a broken report too.
        if claimed != listed || groups.iter().any(|group| group.functions.is_empty()) {
            return Err(ReportError::Counts { claimed, listed });
        }
        Ok(Self { groups })
    }

    /// Every function with its group, by group then address.
    pub fn functions(&self) -> impl Iterator<Item = (&Group, &Function)> {
        self.groups.iter().flat_map(|group| group.functions.iter().map(move |function| (group, function)))
    }

    /// How many functions there are.
    pub fn function_count(&self) -> usize {
        self.groups.iter().map(|group| group.functions.len()).sum()
    }

    /// The group holding `bdf`.
    pub fn group_of(&self, bdf: Bdf) -> Option<&Group> {
        self.groups.iter().find(|group| group.functions.iter().any(|function| function.bdf == bdf))
    }

    /// The partition into groups, ids left out: what must equal Linux's.
    pub fn partition(&self) -> BTreeSet<BTreeSet<Bdf>> {
        self.groups.iter().map(|group| group.functions.iter().map(|function| function.bdf).collect()).collect()
    }

    /// One line per function, `group <id> <BB:DD.F> <0xvvvv>:<0xdddd>`,
    /// sorted by group and address; with `explain`, each group's reasons
    /// follow it, indented.
    pub fn listing(&self, explain: bool) -> String {
        let mut text = String::new();
        for group in &self.groups {
            for function in &group.functions {
                let _ = writeln!(text, "group {} {function}", group.id);
            }
            if explain {
                for reason in &group.reasons {
                    let _ = writeln!(text, "    {reason}");
                }
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESIGN_EXAMPLE: &[&str] = &[
        "GROUPS FUNCTIONS 5",
        "GROUP 0 00:00.0 0x8086:0x29c0",
        "REASON 0 00:00.0 is isolated: no other function shares its requester id or reaches it peer-to-peer",
        "GROUP 2 00:04.0 0x1b36:0x000e",
        "GROUP 2 01:02.0 0x1234:0x11e8",
        "GROUP 2 01:01.0 0x1234:0x11e8",
        "REASON 2 01:01.0 and 01:02.0 issue DMA as 01:00.0 (alias through PCIe-to-PCI bridge 00:04.0)",
        "GROUP 1 00:03.0 0x1234:0x11e8",
        "GROUPS END 3 5",
    ];

    fn bdf(text: &str) -> Bdf {
        parse_address(text).expect("valid address")
    }

    #[test]
    fn a_report_lists_functions_sorted_by_group_then_address() {
        let groups = MachineGroups::parse(DESIGN_EXAMPLE.iter().copied()).expect("complete report");
        assert_eq!(
            groups.listing(false),
            "group 0 00:00.0 0x8086:0x29c0\n\
             group 1 00:03.0 0x1234:0x11e8\n\
             group 2 00:04.0 0x1b36:0x000e\n\
             group 2 01:01.0 0x1234:0x11e8\n\
             group 2 01:02.0 0x1234:0x11e8\n"
        );
        assert_eq!(groups.function_count(), 5);
        assert_eq!(groups.group_of(bdf("01:02.0")).map(|group| group.id), Some(2));
        assert_eq!(groups.group_of(bdf("01:03.0")), None);
        assert_eq!(groups.groups[2].member_list(), "00:04.0, 01:01.0 and 01:02.0");
    }

    #[test]
    fn explain_puts_each_groups_reasons_under_it() {
        let groups = MachineGroups::parse(DESIGN_EXAMPLE.iter().copied()).expect("complete report");
        let listing = groups.listing(true);
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(
            lines[1],
            "    00:00.0 is isolated: no other function shares its requester id or reaches it peer-to-peer"
        );
        assert_eq!(lines[2], "group 1 00:03.0 0x1234:0x11e8");
        assert_eq!(
            lines.last(),
            Some(&"    01:01.0 and 01:02.0 issue DMA as 01:00.0 (alias through PCIe-to-PCI bridge 00:04.0)")
        );
    }

    #[test]
    fn the_partition_ignores_group_ids() {
        let ours = MachineGroups::parse(DESIGN_EXAMPLE.iter().copied()).expect("complete report");
        let renumbered: Vec<String> = DESIGN_EXAMPLE
            .iter()
            .map(|line| line.replace("GROUP 2 ", "GROUP 7 ").replace("REASON 2 ", "REASON 7 "))
            .collect();
        let theirs = MachineGroups::parse(renumbered.iter().map(String::as_str)).expect("complete report");
        assert_eq!(ours.partition(), theirs.partition());
        assert_ne!(ours, theirs);
    }

    #[test]
    fn broken_reports_are_refused_with_the_reason() {
        let cut = MachineGroups::parse(DESIGN_EXAMPLE[..4].iter().copied());
        assert_eq!(cut, Err(ReportError::Incomplete { functions: 2 }));

        let mut failed = DESIGN_EXAMPLE.to_vec();
        failed.insert(3, "GROUPS ERROR 01:03.0 was found by the PCI server but is in no group");
        let error = MachineGroups::parse(failed.iter().copied()).expect_err("the reporter failed");
        assert!(error.to_string().contains("01:03.0 was found by the PCI server but is in no group"), "{error}");

        let mut miscounted = DESIGN_EXAMPLE.to_vec();
        miscounted.remove(7);
        let error = MachineGroups::parse(miscounted.iter().copied()).expect_err("a function is missing");
        assert_eq!(error, ReportError::Counts { claimed: (3, 5), listed: (2, 4) });

        for bad in ["GROUP x 00:00.0 0x8086:0x29c0", "GROUP 0 00:00.9 0x8086:0x29c0", "GROUP 0 00:00.0 8086:29c0"] {
            let mut lines = DESIGN_EXAMPLE.to_vec();
            lines.insert(1, bad);
            let error = MachineGroups::parse(lines.iter().copied()).expect_err("malformed");
            assert_eq!(error, ReportError::Malformed(bad.into()));
        }

        let mut twice = DESIGN_EXAMPLE.to_vec();
        twice.insert(2, "GROUP 3 00:00.0 0x8086:0x29c0");
        assert!(matches!(MachineGroups::parse(twice.iter().copied()), Err(ReportError::Malformed(_))));
    }
}
