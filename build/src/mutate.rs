//! `cargo xtask mutate`: deliberately broken servers, each of which the test suite must catch.
//!
//! A mutant is a cargo feature `mutant-NAME` of the server crate it breaks,
//! a one-line switch in its source that no normal build turns on (the
//! tests below check both). The command builds the normal system once,
//! then for each mutant only the server it breaks (in a target directory
//! of its own, `target/mutants`), and boots the scenarios most likely to
//! catch it, one after the other, until a case of one fails: that case
//! caught it. A mutant no case catches survives and fails the command: the
//! suite has a hole, and the fix is a test, never a weaker mutant. The list,
//! what each breaks and what catches it are in `docs/threats.md`
//! ("Mutation runs").

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use qemu::scenario::{self, Scenario};

use crate::groups::oracle::{self, Recording};
use crate::test::{ORACLE, boot_scenario, oracle_case};
use crate::{bare_metal, setup};

/// Where the console of each scenario run against a mutant is kept, as
/// `MUTANT.SCENARIO.txt`, to see how the mutant showed.
const CONSOLE_DIR: &str = "target/mutants/consoles";

/// One deliberately broken variant of a server.
#[derive(Clone, Copy, Debug)]
pub struct Mutant {
    /// Its name; the switch is the server crate's feature `mutant-NAME`.
    pub name: &'static str,
    /// The server crate it breaks.
    pub server: &'static str,
    /// What it breaks, in a line.
    pub breaks: &'static str,
    /// Scenarios (or `groups-oracle/TOPOLOGY`) to run against it, the most
    /// likely to catch it first.
    pub checks: &'static [&'static str],
}

impl Mutant {
    /// The cargo feature that turns it on.
    pub fn feature(&self) -> String {
        format!("mutant-{}", self.name)
    }
}

/// Every mutant, in the order they run.
pub const MUTANTS: &[Mutant] = &[
    Mutant {
        name: "translation-off",
        server: "iommu-server",
        breaks: "translation is never enabled, so DMA reaches memory untranslated",
        checks: &["early-dma", "iommu"],
    },
    Mutant {
        name: "unmap-no-iotlb-flush",
        server: "iommu-server",
        breaks: "an unmap clears the entries but never invalidates the IOTLB",
        checks: &["iommu"],
    },
    Mutant {
        name: "move-no-context-flush",
        server: "iommu-server",
        breaks: "a group move clears context entries without invalidating the context cache and IOTLB",
        checks: &["iommu"],
    },
    Mutant {
        name: "per-device-ownership",
        server: "iommu-server",
        breaks: "every function is a group of its own: ownership ignores aliases and the other members",
        checks: &["iommu", "groups"],
    },
    Mutant {
        name: "claim-no-blocking",
        server: "iommu-server",
        breaks: "a user's claim leaves the group on its default domain instead of blocking it",
        checks: &["iommu"],
    },
    Mutant {
        name: "reclaim-no-quiesce",
        server: "iommu-server",
        breaks: "a released or orphaned group returns to its default domain without waiting for the quiesce",
        checks: &["reclaim-whole-group", "iommu"],
    },
    Mutant {
        name: "fault-drops-uncounted",
        server: "iommu-server",
        breaks: "a full fault log drops its oldest record without counting it",
        checks: &["hostile"],
    },
    Mutant {
        name: "irte-no-source-id",
        server: "iommu-server",
        breaks: "interrupt-remapping entries are written without the source-id check (SVT 0)",
        checks: &["intremap"],
    },
    Mutant {
        name: "pfo-never-cleared",
        server: "iommu-server",
        breaks: "an overflow of the fault records is counted but FSTS.PFO is never cleared, so the unit records nothing more",
        checks: &["storms"],
    },
    Mutant {
        name: "overflow-uncounted",
        server: "iommu-server",
        breaks: "an overflow of the fault records is cleared but never counted, so the faults it lost leave no trace",
        checks: &["storms"],
    },
    Mutant {
        name: "acs-off",
        server: "pci-server",
        breaks: "the PCI server leaves ACS as firmware left it, so groups are formed over ports that do not isolate",
        checks: &["groups-oracle/root-ports", "groups-oracle/switch"],
    },
];

/// What one mutant came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A case failed: `<scenario>/<case>`, and why.
    Caught {
        /// The first case that failed.
        case: String,
        /// The harness's detail.
        detail: String,
        /// The other cases of its run that failed.
        others: Vec<String>,
    },
    /// Every check passed.
    Survived,
}

/// Runs `only` (every mutant when empty) and prints what caught each;
/// fails unless every one was caught.
pub fn run(root: &Path, only: &[String]) -> Result<ExitCode> {
    let started = Instant::now();
    if let Some(unknown) = only.iter().find(|name| !MUTANTS.iter().any(|m| m.name == name.as_str())) {
        let names: Vec<&str> = MUTANTS.iter().map(|m| m.name).collect();
        bail!("no mutant named `{unknown}`; there are: {}", names.join(", "));
    }
    setup::ensure_qemu()?;
    let scenarios = scenario::load(root)?;
    let recordings = oracle::load_all(root)?;
    let selected: Vec<&Mutant> =
        MUTANTS.iter().filter(|m| only.is_empty() || only.iter().any(|name| name == m.name)).collect();
    for mutant in &selected {
        for check in mutant.checks {
            find_check(check, &scenarios, &recordings)?;
        }
    }
    let elves = bare_metal::build(root, false)?;
    let mut caught = 0;
    for mutant in &selected {
        let began = Instant::now();
        eprintln!("mutant {}: building {} with {}...", mutant.name, mutant.server, mutant.feature());
        let elf = bare_metal::build_variant(root, mutant.server, &mutant.feature())?;
        let elves = elves.replacing(mutant.server, elf);
        let verdict = judge(root, &elves, mutant, &scenarios, &recordings)?;
        let took = began.elapsed().as_secs_f64();
        match verdict {
            Verdict::Caught { case, detail, others } => {
                caught += 1;
                println!("caught    {:<22} by {case} ({}) [{took:.1} s]", mutant.name, first_line(&detail));
                if !others.is_empty() {
                    eprintln!("mutant {}: also failed: {}", mutant.name, others.join(", "));
                }
            }
            Verdict::Survived => {
                println!(
                    "SURVIVED  {:<22} {}: no case of {} noticed [{took:.1} s]",
                    mutant.name,
                    mutant.breaks,
                    mutant.checks.join(", ")
                );
            }
        }
    }
    println!("mutation run took {:.1} s", started.elapsed().as_secs_f64());
    println!("{caught} of {} mutants caught", selected.len());
    Ok(if caught == selected.len() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// A check by name: a scenario, or one recorded topology of the oracle.
enum Check<'a> {
    Scenario(&'a Scenario),
    Oracle(&'a Recording),
}

fn find_check<'a>(name: &str, scenarios: &'a [Scenario], recordings: &'a [Recording]) -> Result<Check<'a>> {
    if let Some(topology) = name.strip_prefix(ORACLE).and_then(|rest| rest.strip_prefix('/')) {
        let recording = recordings.iter().find(|r| r.name == topology);
        return recording.map(Check::Oracle).with_context(|| format!("no recorded topology `{topology}`"));
    }
    let scenario = scenarios.iter().find(|s| s.name == name);
    scenario.map(Check::Scenario).with_context(|| format!("no scenario `{name}` in {}", scenario::SCENARIO_FILE))
}

/// Runs `mutant`'s checks in order until a case fails.
fn judge(
    root: &Path,
    elves: &bare_metal::Elves,
    mutant: &Mutant,
    scenarios: &[Scenario],
    recordings: &[Recording],
) -> Result<Verdict> {
    for name in mutant.checks {
        let results = match find_check(name, scenarios, recordings)? {
            Check::Scenario(scenario) => {
                let (run, results) = boot_scenario(root, elves, scenario, false)?;
                let console: String = run.lines.iter().map(|line| format!("{line}\n")).collect();
                let path = root.join(CONSOLE_DIR).join(format!("{}.{name}.txt", mutant.name));
                std::fs::create_dir_all(root.join(CONSOLE_DIR))?;
                std::fs::write(&path, console).with_context(|| format!("writing {}", path.display()))?;
                results
            }
            Check::Oracle(recording) => vec![oracle_case(root, elves, recording)],
        };
        let mut failed = results.into_iter().filter(|result| !result.passed);
        if let Some(first) = failed.next() {
            let others = failed.map(|result| result.name).collect();
            return Ok(Verdict::Caught { case: first.name, detail: first.detail, others });
        }
    }
    Ok(Verdict::Survived)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests;
