//! The scale rows: boot, group formation and the servers' memory on machines of 25, 100 and 250 functions.
//!
//! Each machine is booted with the groups reporter's system (`qemu/policies/groups.toml`, the one
//! `cargo xtask groups` boots: the PCI and IOMMU servers, no driver), and the phases are read from the
//! servers' own lines, whose timestamps the kernel takes: enumeration (`ECAM mapped` to `N PCI
//! functions found`), the PCI server's setup (BAR sizing, bus mastering off, the report, to the
//! IOMMU server's `topology received`), group formation (to `groups formed`) and translation (default
//! domains and context entries, to `translation enabled`). Linux boots the same machines to its
//! ready line (`crate::bench::peer`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use qemu::console::LogLine;
use qemu::machine::Machine;
use qemu::runner::{self, Ending};

use super::ours::number_before;
use super::peer::{Outcome, PeerMachine, ScaleBoots};
use super::stats::Stats;
use super::table::{Cell, Row, Table, Unit};
use crate::progress::Progress;
use crate::{bare_metal, groups, system};

/// The machines, smallest first: about 25, 100 and 250 functions.
pub const MACHINES: [&str; 3] = ["scale-25", "scale-100", "iommu-250"];
/// Boots per machine.
pub const RUNS: usize = 3;
const TIMEOUT: Duration = Duration::from_secs(300);
/// The tasks whose memory is "the servers'".
const SERVERS: [&str; 2] = ["iommu", "pci"];

/// One boot's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Functions the PCI server found.
    pub functions: usize,
    /// Groups the IOMMU server formed.
    pub groups: usize,
    /// Host seconds from starting QEMU to the PCI server's ready line.
    pub ready_seconds: f64,
    /// Guest microseconds of each phase: enumeration, setup, formation, translation.
    pub enumeration_us: f64,
    /// The PCI server's work between enumeration and the IOMMU server holding the topology.
    pub setup_us: f64,
    /// Forming the groups.
    pub formation_us: f64,
    /// Default domains and context entries, to translation on.
    pub translation_us: f64,
    /// KiB charged to the IOMMU and PCI servers' memory quotas once the groups exist.
    pub servers_kib: f64,
    /// KiB of RAM in use then (every task, and the kernel's own frames).
    pub ram_kib: f64,
}

/// Our boots of one machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Ours {
    /// The machine's name.
    pub machine: String,
    /// One sample per boot.
    pub samples: Vec<Sample>,
}

/// The QEMU machines, for the Linux peer to boot as well.
pub fn peer_machines(root: &Path) -> Result<Vec<(String, PeerMachine)>> {
    MACHINES.iter().map(|&name| Ok((name.to_owned(), PeerMachine::of(&Machine::load(root, name)?)))).collect()
}

/// Boots every machine [`RUNS`] times, a step of `progress` each.
pub fn run(root: &Path, progress: &mut Progress) -> Result<Vec<Ours>> {
    let elves = bare_metal::build(root, true)?;
    let system = system::prepare(root, &elves, &root.join(groups::boot::POLICY))?;
    let mut all = Vec::new();
    for name in MACHINES {
        let machine = Machine::load(root, name)?;
        let mut samples = Vec::new();
        for run in 1..=RUNS {
            let step = format!("ours: machine {name}, boot {run} of {RUNS}");
            progress.start(&step);
            let started = Instant::now();
            let mut ready = None;
            let command = machine.command(&system.kernel, &system.image)?;
            let outcome = runner::run(command, &system.tables, TIMEOUT, |line| {
                if ready.is_none() && line.source == "pci" && line.text == "PCI server ready" {
                    ready = Some(started.elapsed());
                }
            })?;
            if outcome.ending != Ending::Status(0) {
                bail!("machine {name}, boot {run}: the groups report ended with {}", outcome.ending);
            }
            let ready = ready.with_context(|| format!("machine {name}, boot {run}: the PCI server never got ready"))?;
            let sample = sample(&outcome.lines, ready).with_context(|| format!("machine {name}, boot {run}"))?;
            progress.finish(
                &step,
                &format!(
                    "{} functions, {} groups: ready after {:.2} s, groups formed and translating in {:.1} ms",
                    sample.functions,
                    sample.groups,
                    sample.ready_seconds,
                    (sample.formation_us + sample.translation_us) / 1000.0
                ),
            );
            samples.push(sample);
        }
        all.push(Ours { machine: name.to_owned(), samples });
    }
    Ok(all)
}

/// One boot's figures from its log and the wall time of the PCI server's ready line.
fn sample(lines: &[LogLine], ready: Duration) -> Result<Sample> {
    // The first line of `source` that says `words`, with its timestamp.
    let at = |source: &str, words: &str| -> Result<(f64, &str)> {
        lines
            .iter()
            .find(|line| line.source == source && line.text.contains(words))
            .and_then(|line| Some((line.micros? as f64, line.text.as_str())))
            .with_context(|| format!("no `{words}` line from {source}"))
    };
    let count = |text: &str, what: &str| -> Result<usize> {
        text.split_whitespace()
            .find_map(|word| word.parse::<usize>().ok())
            .with_context(|| format!("no count of {what} in `{text}`"))
    };
    let (mapped, _) = at("pci", "ECAM mapped")?;
    let (found, text) = at("pci", " PCI functions found")?;
    let functions = count(text, "functions")?;
    let (received, _) = at("iommu", "topology received:")?;
    let (formed, text) = at("iommu", "groups formed:")?;
    let groups = count(text, "groups")?;
    let (enabled, _) = at("iommu", "translation enabled:")?;

    let kernel: Vec<&str> = lines.iter().filter(|line| line.source == "kernel").map(|l| l.text.as_str()).collect();
    let ram_mib = number_before(&kernel, " MiB of RAM").context("the kernel did not report its RAM")?;
    let names: Vec<&str> = kernel
        .iter()
        .filter_map(|line| line.strip_prefix("task ")?.split_once(" loaded:").map(|(name, _)| name))
        .collect();
    let mut servers_pages = 0;
    let mut free_frames = None;
    let mut counted = 0;
    for line in lines.iter().filter(|line| line.source == groups::boot::REPORTER) {
        let words: Vec<&str> = line.text.split_whitespace().collect();
        match words.as_slice() {
            ["MEMORY", "TASK", index, pages] => {
                let index: usize = index.parse().with_context(|| format!("in `{}`", line.text))?;
                let pages: u64 = pages.parse().with_context(|| format!("in `{}`", line.text))?;
                if names.get(index).is_some_and(|name| SERVERS.contains(name)) {
                    servers_pages += pages;
                    counted += 1;
                }
            }
            ["MEMORY", "FREE", frames] => free_frames = Some(frames.parse::<u64>()?),
            _ => {}
        }
    }
    if counted != SERVERS.len() {
        bail!("the reporter gave the memory of {counted} of the {} servers", SERVERS.len());
    }
    let free_frames = free_frames.context("the reporter gave no free-frame count")?;
    Ok(Sample {
        functions,
        groups,
        ready_seconds: ready.as_secs_f64(),
        enumeration_us: found - mapped,
        setup_us: received - found,
        formation_us: formed - received,
        translation_us: enabled - formed,
        servers_kib: servers_pages as f64 * 4.0,
        ram_kib: ram_mib * 1024.0 - free_frames as f64 * 4.0,
    })
}

/// Appends a row per machine and figure, and notes on the phases and on how each figure grows.
pub fn add_rows(table: &mut Table, ours: &Result<Vec<Ours>>, outcome: &Outcome) {
    let mut medians: Vec<(String, [Option<f64>; 3])> = Vec::new();
    for name in MACHINES {
        let mine = ours.as_ref().ok().and_then(|all| all.iter().find(|o| o.machine == name));
        let ours_cell = |pick: fn(&Sample) -> f64| match (ours, mine) {
            (Err(error), _) => Cell::Unavailable(format!("{error:#}")),
            (Ok(_), Some(mine)) => Cell::from_samples(mine.samples.iter().map(pick).collect(), None),
            (Ok(_), None) => Cell::Unavailable("not booted".into()),
        };
        let linux = match outcome {
            Outcome::Ran(linux) => linux.scale.iter().find(|boots| boots.machine == name),
            Outcome::Unavailable(_) => None,
        };
        let linux_cell = |pick: fn(&ScaleBoots) -> Vec<f64>| match (outcome, linux) {
            (Outcome::Unavailable(_), _) => Cell::Unavailable("the Linux peer did not run (see the notes)".into()),
            (_, Some(boots)) if !pick(boots).is_empty() => Cell::from_samples(pick(boots), None),
            _ => Cell::Unavailable("no boot reached the program".into()),
        };
        let linux_groups = linux.and_then(ScaleBoots::groups_and_functions).map_or_else(
            || "Linux's own count was not reported".to_owned(),
            |(groups, functions)| format!("Linux had {groups} groups of {functions} functions at its ready line"),
        );
        let shape = mine.and_then(|mine| mine.samples.first()).map_or_else(
            || name.to_owned(),
            |sample| format!("{name}, {} functions in {} groups", sample.functions, sample.groups),
        );
        let row = |figure: &str, unit, label: String, ours: Cell, linux: Cell| Row {
            key: format!("scale/{name}/{figure}"),
            label: format!("Scale ({shape}): {label}"),
            unit,
            ours_figure: None,
            ours,
            linux,
        };
        let rows = [
            row(
                "ready",
                Unit::Seconds,
                "boot to ready (ours: the PCI server serving, groups formed; Linux: its init running)".into(),
                ours_cell(|s| s.ready_seconds),
                linux_cell(ScaleBoots::boot_seconds),
            ),
            row(
                "groups",
                Unit::Nanoseconds,
                "group formation, default domains and context entries, to translation on".into(),
                ours_cell(|s| (s.formation_us + s.translation_us) * 1000.0),
                Cell::Unavailable(format!(
                    "no separate figure: Linux forms each group as it adds the device ({linux_groups})"
                )),
            ),
            row(
                "servers",
                Unit::Kibibytes,
                "the IOMMU and PCI servers' memory (pages charged to their quotas, at ready)".into(),
                ours_cell(|s| s.servers_kib),
                Cell::Unavailable("no equivalent: Linux keeps that state in kernel memory".into()),
            ),
            row(
                "ram",
                Unit::Kibibytes,
                "RAM in use at ready (ours: RAM less the kernel's free frames; Linux: MemTotal - MemFree)".into(),
                ours_cell(|s| s.ram_kib),
                linux_cell(ScaleBoots::used_kib),
            ),
        ];
        let median = |row: &Row, cell: fn(&Row) -> &Cell| match cell(row) {
            Cell::Measured { stats, .. } => Some(stats.median),
            _ => None,
        };
        medians.push((
            shape.clone(),
            [median(&rows[0], |r| &r.ours), median(&rows[0], |r| &r.linux), median(&rows[1], |r| &r.ours)],
        ));
        if let Some(mine) = mine {
            let phase = |pick: fn(&Sample) -> f64| {
                Stats::of(&mine.samples.iter().map(pick).collect::<Vec<_>>()).map_or(0.0, |s| s.median / 1000.0)
            };
            table.notes.push(format!(
                "Scale ({shape}), guest clock, medians of {} boots: enumeration {:.1} ms, the PCI server's setup \
                 (BAR sizing, bus mastering off, the topology report) {:.1} ms, group formation {:.2} ms, \
                 default domains and context entries {:.1} ms.",
                mine.samples.len(),
                phase(|s| s.enumeration_us),
                phase(|s| s.setup_us),
                phase(|s| s.formation_us),
                phase(|s| s.translation_us),
            ));
        }
        table.rows.extend(rows);
    }
    table.notes.push(growth(&medians));
}

/// How boot and group formation grow from the smallest machine to the largest, in words.
fn growth(medians: &[(String, [Option<f64>; 3])]) -> String {
    let series = |index: usize, scale: f64, unit: &str| {
        medians
            .iter()
            .map(|(_, figures)| figures[index].map_or("?".to_owned(), |value| format!("{:.2} {unit}", value * scale)))
            .collect::<Vec<_>>()
            .join(" → ")
    };
    format!(
        "Scale growth over {}: our boot to ready {}, Linux's {}; our group formation and context entries {}.",
        medians.iter().map(|(shape, _)| shape.as_str()).collect::<Vec<_>>().join("; "),
        series(0, 1.0, "s"),
        series(1, 1.0, "s"),
        series(2, 1e-6, "ms")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(micros: u64, source: &str, text: &str) -> LogLine {
        LogLine { micros: Some(micros), source: source.into(), level: Some("info"), text: text.into() }
    }

    fn log() -> Vec<LogLine> {
        vec![
            line(1_000, "kernel", "255 MiB of RAM, ACPI RSDP at 0xf5960"),
            line(2_000, "kernel", "task iommu loaded: priority 12, 2111 of 3072 pages"),
            line(3_000, "kernel", "task pci loaded: priority 10, 564 of 672 pages"),
            line(4_000, "kernel", "task groups-report loaded: priority 3, 27 of 48 pages"),
            line(10_000, "pci", "ECAM mapped for buses 0-102"),
            line(14_000, "pci", "250 PCI functions found"),
            line(60_000, "iommu", "topology received: 250 functions"),
            line(60_500, "iommu", "groups formed: 206 groups"),
            line(70_500, "iommu", "translation enabled: 206 groups through their default domains"),
            line(80_000, "groups-report", "MEMORY TASK 0 2200"),
            line(80_001, "groups-report", "MEMORY TASK 1 600"),
            line(80_002, "groups-report", "MEMORY TASK 2 30"),
            line(80_003, "groups-report", "MEMORY FREE 60000"),
        ]
    }

    #[test]
    fn a_boot_gives_its_phases_and_the_servers_memory() {
        let sample = sample(&log(), Duration::from_millis(15_500)).expect("complete log");
        assert_eq!(
            sample,
            Sample {
                functions: 250,
                groups: 206,
                ready_seconds: 15.5,
                enumeration_us: 4_000.0,
                setup_us: 46_000.0,
                formation_us: 500.0,
                translation_us: 10_000.0,
                servers_kib: 2_800.0 * 4.0,
                ram_kib: 255.0 * 1024.0 - 60_000.0 * 4.0,
            }
        );
    }

    #[test]
    fn a_missing_phase_or_memory_line_is_an_error_that_names_it() {
        let mut lines = log();
        lines.retain(|line| !line.text.starts_with("groups formed"));
        let error = sample(&lines, Duration::ZERO).expect_err("no formation line");
        assert!(format!("{error:#}").contains("groups formed"), "{error:#}");
        let mut lines = log();
        lines.retain(|line| line.text != "MEMORY TASK 1 600");
        let error = sample(&lines, Duration::ZERO).expect_err("a server's memory missing");
        assert!(format!("{error:#}").contains("1 of the 2 servers"), "{error:#}");
    }

    #[test]
    fn every_machine_gets_four_rows_and_the_growth_note() {
        let sample = sample(&log(), Duration::from_secs(1)).expect("complete log");
        let ours = Ok(MACHINES
            .iter()
            .map(|name| Ours { machine: (*name).to_owned(), samples: vec![sample.clone()] })
            .collect());
        let mut table = Table::default();
        add_rows(&mut table, &ours, &Outcome::Unavailable("offline".into()));
        assert_eq!(table.rows.len(), 4 * MACHINES.len());
        assert_eq!(table.rows[1].key, "scale/scale-25/groups");
        assert_eq!(table.rows[1].ours, Cell::from_samples(vec![10_500_000.0], None));
        let growth = table.notes.last().expect("growth note");
        assert!(growth.contains("1.00 s → 1.00 s → 1.00 s, Linux's ? → ? → ?"), "{growth}");
        assert!(growth.contains("10.50 ms → 10.50 ms → 10.50 ms"), "{growth}");
    }
}
