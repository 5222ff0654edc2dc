//! Booting a machine to learn its IOMMU groups from the IOMMU server itself.
//!
//! The system booted is `qemu/policies/groups.toml`: the PCI server
//! enumerates, the IOMMU server forms the groups with the same code every
//! system runs, and `groups-report` logs them. Nothing here forms groups:
//! the host only reads what the servers decided.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use qemu::console::LogLine;
use qemu::machine::{Machine, QEMU};
use qemu::runner::{self, Ending, Run};

use super::report::MachineGroups;
use crate::bare_metal::Elves;
use crate::system;

/// The reporting system, relative to the workspace root.
pub const POLICY: &str = "qemu/policies/groups.toml";

/// The reporter's task name in that policy: its lines are the report.
pub const REPORTER: &str = "groups-report";

/// How long a boot may take before it counts as hung. Under TCG a boot
/// with a dozen functions takes well under a second of wall time.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What one boot produced.
pub struct Booted {
    /// The groups the IOMMU server formed.
    pub groups: MachineGroups,
    /// The whole run, for timing and the console.
    pub run: Run,
}

/// Boots `machine` with the reporting system and reads its groups.
/// `elves` must be freshly built (`bare_metal::build`).
pub fn boot(root: &Path, elves: &Elves, machine: &Machine, timeout: Duration) -> Result<Booted> {
    boot_policy(root, elves, machine, timeout, &root.join(POLICY))
}

/// Like [`boot`], with the isolation assertions of the policy at
/// `policy` in force, so that the groups are the ones that policy's
/// system would see.
pub fn boot_for_policy(
    root: &Path,
    elves: &Elves,
    machine: &Machine,
    timeout: Duration,
    policy: &Path,
) -> Result<Booted> {
    let text = std::fs::read_to_string(policy).with_context(|| format!("cannot read {}", policy.display()))?;
    let checked: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", policy.display()))?;
    let Some(assertions) = checked.get("assertions") else { return boot(root, elves, machine, timeout) };
    let base_path = root.join(POLICY);
    let base = std::fs::read_to_string(&base_path).with_context(|| format!("cannot read {}", base_path.display()))?;
    let mut merged: toml::Table =
        toml::from_str(&base).with_context(|| format!("{} is not valid", base_path.display()))?;
    let mut over = toml::Table::new();
    over.insert("assertions".into(), assertions.clone());
    qemu::scenario::overlay(&mut merged, &over);
    let scratch = root.join("target/scenarios");
    std::fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    let stem = policy.file_stem().map_or("policy".into(), |stem| stem.to_string_lossy().into_owned());
    let path = scratch.join(format!("groups-for-{stem}.toml"));
    let body = toml::to_string(&merged).context("the merged policy cannot be written")?;
    std::fs::write(&path, format!("# {POLICY} with the assertions of {}\n{body}", policy.display()))
        .with_context(|| format!("cannot write {}", path.display()))?;
    boot_policy(root, elves, machine, timeout, &path)
}

fn boot_policy(root: &Path, elves: &Elves, machine: &Machine, timeout: Duration, policy: &Path) -> Result<Booted> {
    let system = system::prepare(root, elves, policy)?;
    let command = machine.command(&system.kernel, &system.image)?;
    let run = runner::run(command, &system.tables, timeout, |_| {})?;
    let reported = run.lines.iter().filter(|line| line.source == REPORTER).map(|line| line.text.as_str());
    match MachineGroups::parse(reported) {
        Ok(groups) if run.ending == Ending::Status(0) => Ok(Booted { groups, run }),
        Ok(_) => bail!("the groups were reported, but the system then ended badly ({}){}", run.ending, excerpt(&run)),
        Err(error) => match &run.ending {
            // QEMU refused the command line before the system ran.
            Ending::Qemu { stderr, .. } if run.lines.is_empty() => {
                bail!("{QEMU} did not start the machine: {}", stderr.trim())
            }
            Ending::TimedOut(after) => {
                bail!("{error}: no complete report after {:.0} s{}", after.as_secs_f64(), excerpt(&run))
            }
            ending => bail!("{error} ({ending}){}", excerpt(&run)),
        },
    }
}

/// The console lines that explain a failed report: the servers' and the
/// kernel's warnings and errors, and the reporter's last words.
fn excerpt(run: &Run) -> String {
    let telling = |line: &&LogLine| {
        matches!(line.level, Some("warn" | "error")) || line.source == "console" || line.source == REPORTER
    };
    let lines: Vec<String> = run.lines.iter().filter(telling).map(ToString::to_string).collect();
    let shown = &lines[lines.len().saturating_sub(20)..];
    if shown.is_empty() {
        return String::new();
    }
    format!("\nthe console said:\n{}", shown.join("\n"))
}

/// The arguments `cargo xtask groups` refuses, because the tool sets them
/// itself: the machine type and its IOMMU, the kernel and boot image, and
/// the console and monitor the runner reads.
const OWN_OPTIONS: &[(&str, &str)] = &[
    ("-M", "the machine is always q35"),
    ("-machine", "the machine is always q35"),
    ("-kernel", "the kernel is this system's"),
    ("-initrd", "the boot image is the groups reporter's"),
    ("-append", "the kernel takes no command line"),
    ("-serial", "the serial port carries the system's log"),
    ("-monitor", "the monitor is off"),
    ("-display", "there is no display"),
    ("-nographic", "there is no display"),
];

/// Refuses QEMU arguments that would clash with what the tool adds.
pub fn check_arguments(args: &[String]) -> Result<()> {
    for (position, arg) in args.iter().enumerate() {
        if let Some((_, why)) = OWN_OPTIONS.iter().find(|(option, _)| arg == option) {
            bail!("`{arg}` cannot be given: the tool sets it ({why})");
        }
        let value = args.get(position + 1).map(String::as_str).unwrap_or("");
        if arg == "-device" && value.split(',').next() == Some("intel-iommu") {
            bail!("`-device intel-iommu` cannot be given: the tool adds the IOMMU itself");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn topology_arguments_pass_and_the_tools_own_are_refused() {
        let design = "-device edu -device pcie-pci-bridge,id=br1 -device edu,bus=br1,addr=1 -device edu,bus=br1,addr=2";
        assert!(check_arguments(&args(design)).is_ok());
        assert!(check_arguments(&args("-nodefaults -device edu,addr=5.0,multifunction=on")).is_ok());
        let error = check_arguments(&args("-device edu -M pc")).expect_err("own option");
        assert!(error.to_string().contains("`-M` cannot be given"), "{error}");
        let error = check_arguments(&args("-device intel-iommu,aw-bits=48")).expect_err("second IOMMU");
        assert!(error.to_string().contains("adds the IOMMU itself"), "{error}");
    }
}
