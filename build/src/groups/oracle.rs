//! Linux's groups, as recorded in `qemu/oracle/fixtures`, against ours.
//!
//! Each fixture holds the QEMU arguments it was recorded with and the
//! groups Linux 6.1 formed (`group N BB:DD.F 0xvvvv:0xdddd class=...`, as
//! `linux-groups` prints them). Booting the same arguments with the groups
//! reporter must give the same partition; group ids may differ.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use capabilities::pci::Bdf;

use super::report::{Function, MachineGroups};
use crate::policy::devices::parse_address;

/// Where the recordings live, relative to the workspace root.
pub const FIXTURE_DIR: &str = "qemu/oracle/fixtures";

/// One recorded topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recording {
    /// The fixture's name (its file stem).
    pub name: String,
    /// The QEMU arguments it was recorded with.
    pub args: Vec<String>,
    /// Linux's groups: number and function, in Linux's order.
    pub linux: Vec<(u16, Function)>,
}

impl Recording {
    /// Reads the `qemu` and `group` lines of fixture `text` (the
    /// configuration-space rows are the PCI server's host tests' business).
    pub fn parse(name: &str, text: &str) -> Result<Self> {
        let mut args = None;
        let mut linux = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let at = || format!("{name}.txt:{}", number + 1);
            if let Some(rest) = line.strip_prefix("qemu ") {
                args = Some(rest.split_whitespace().map(str::to_owned).collect());
            } else if let Some(rest) = line.strip_prefix("group ") {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let [id, bdf, ids, ..] = words[..] else { bail!("{}: a group line needs N BB:DD.F ids", at()) };
                let id = id.parse().with_context(|| format!("{}: group number `{id}`", at()))?;
                let bdf = parse_address(bdf).with_context(|| format!("{}: address `{bdf}`", at()))?;
                let (vendor, device) = ids
                    .split_once(':')
                    .and_then(|(vendor, device)| Some((hex(vendor)?, hex(device)?)))
                    .with_context(|| format!("{}: ids `{ids}` are not 0xvvvv:0xdddd", at()))?;
                linux.push((id, Function { bdf, vendor, device }));
            }
        }
        let args = args.with_context(|| format!("{name}.txt has no `qemu` line"))?;
        if linux.is_empty() {
            bail!("{name}.txt has no `group` lines");
        }
        Ok(Self { name: name.to_owned(), args, linux })
    }

    /// Linux's partition, ids left out.
    pub fn partition(&self) -> BTreeSet<BTreeSet<Bdf>> {
        let mut groups: BTreeMap<u16, BTreeSet<Bdf>> = BTreeMap::new();
        for (id, function) in &self.linux {
            groups.entry(*id).or_default().insert(function.bdf);
        }
        groups.into_values().collect()
    }

    /// Where `ours` differs from Linux, in words; `None` when the
    /// partitions and every function's ids agree.
    pub fn differences(&self, ours: &MachineGroups) -> Option<String> {
        let mut found = Vec::new();
        let linux = self.partition();
        let mine = ours.partition();
        let show = |group: &BTreeSet<Bdf>| {
            format!("{{{}}}", group.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
        };
        for group in linux.difference(&mine) {
            found.push(format!("Linux has group {} and we do not", show(group)));
        }
        for group in mine.difference(&linux) {
            found.push(format!("we have group {} and Linux does not", show(group)));
        }
        for (_, theirs) in &self.linux {
            if let Some((_, function)) = ours.functions().find(|(_, function)| function.bdf == theirs.bdf)
                && function != theirs
            {
                found.push(format!("we report {function}, Linux {theirs}"));
            }
        }
        (!found.is_empty()).then(|| found.join("; "))
    }

    /// Whether `ours` numbers the groups as Linux does too. Not required
    /// (only the partition is), but both allocate ids in probe order, so a
    /// difference is worth a look.
    pub fn same_ids(&self, ours: &MachineGroups) -> bool {
        let listed = ours.function_count() == self.linux.len();
        listed && self.linux.iter().all(|(id, theirs)| ours.group_of(theirs.bdf).is_some_and(|group| group.id == *id))
    }
}

fn hex(text: &str) -> Option<u16> {
    u16::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

/// Every recording under `root`, by name.
pub fn load_all(root: &Path) -> Result<Vec<Recording>> {
    let dir = root.join(FIXTURE_DIR);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let name = path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            Recording::parse(&name, &text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "qemu -nodefaults -device edu -device pcie-pci-bridge,id=br1 -device edu,bus=br1,addr=1
kernel 6.1.0-56-amd64
group 0 00:00.0 0x8086:0x29c0 class=0x060000
group 1 00:01.0 0x1234:0x11e8 class=0x00ff00
group 2 00:02.0 0x1b36:0x000e class=0x060400
group 2 01:01.0 0x1234:0x11e8 class=0x00ff00
config 00:00.0 256
000000 8680c029
";

    fn ours(lines: &[&str]) -> MachineGroups {
        MachineGroups::parse(lines.iter().copied()).expect("complete report")
    }

    #[test]
    fn a_fixture_gives_its_arguments_and_linuxs_partition() {
        let recording = Recording::parse("design", FIXTURE).expect("valid fixture");
        assert_eq!(recording.args[0], "-nodefaults");
        assert_eq!(recording.args.len(), 7);
        assert_eq!(recording.linux.len(), 4);
        assert_eq!(recording.partition().len(), 3);
    }

    #[test]
    fn equal_partitions_with_other_ids_agree_and_any_split_or_id_change_is_named() {
        let recording = Recording::parse("design", FIXTURE).expect("valid fixture");
        let same = ours(&[
            "GROUP 5 00:02.0 0x1b36:0x000e",
            "GROUP 5 01:01.0 0x1234:0x11e8",
            "GROUP 0 00:00.0 0x8086:0x29c0",
            "GROUP 1 00:01.0 0x1234:0x11e8",
            "GROUPS END 3 4",
        ]);
        assert_eq!(recording.differences(&same), None);
        assert!(!recording.same_ids(&same));
        let renumbered = ours(&[
            "GROUP 2 00:02.0 0x1b36:0x000e",
            "GROUP 2 01:01.0 0x1234:0x11e8",
            "GROUP 0 00:00.0 0x8086:0x29c0",
            "GROUP 1 00:01.0 0x1234:0x11e8",
            "GROUPS END 3 4",
        ]);
        assert!(recording.same_ids(&renumbered));

        let split = ours(&[
            "GROUP 0 00:00.0 0x8086:0x29c0",
            "GROUP 1 00:01.0 0x1234:0x11e8",
            "GROUP 2 00:02.0 0x1b36:0x000e",
            "GROUP 3 01:01.0 0x1234:0x11e9",
            "GROUPS END 4 4",
        ]);
        let differences = recording.differences(&split).expect("they differ");
        assert!(differences.contains("Linux has group {00:02.0, 01:01.0} and we do not"), "{differences}");
        assert!(differences.contains("we have group {01:01.0} and Linux does not"), "{differences}");
        assert!(differences.contains("we report 01:01.0 0x1234:0x11e9, Linux 01:01.0 0x1234:0x11e8"), "{differences}");
    }

    #[test]
    fn broken_fixtures_are_refused() {
        assert!(Recording::parse("x", "group 0 00:00.0 0x8086:0x29c0\n").is_err());
        assert!(Recording::parse("x", "qemu -nodefaults\n").is_err());
        let error = Recording::parse("x", "qemu -nodefaults\ngroup 0 00:00.0 8086:29c0\n").expect_err("bad ids");
        assert!(format!("{error:#}").contains("x.txt:2"), "{error:#}");
    }

    #[test]
    fn every_recorded_fixture_parses() {
        let root = crate::workspace::root();
        let recordings = load_all(&root).expect("fixtures parse");
        assert!(recordings.iter().any(|recording| recording.name == "design-example"));
        for recording in recordings {
            assert!(recording.args.iter().any(|arg| arg == "-device"), "{}", recording.name);
        }
    }
}
