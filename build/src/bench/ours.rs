//! Our side of the benchmarks: boots `qemu/policies/bench.toml` on the
//! benchmark machine several times and reads the bench task's `BENCH` lines.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use qemu::machine::Machine;
use qemu::runner::{self, Ending};

use crate::{bare_metal, system};

/// Boots measured; each gives one boot-time sample and its IPC samples.
pub const RUNS: usize = 3;

const POLICY: &str = "qemu/policies/bench.toml";
const MACHINE: &str = "bench";
const TIMEOUT: Duration = Duration::from_secs(300);

/// What our runs measured.
#[derive(Debug, Default)]
pub struct Ours {
    /// Host seconds from starting QEMU to the first task log line, per run.
    pub boot_seconds: Vec<f64>,
    /// IPC round trip, nanoseconds: one sample per batch of 1,000.
    pub ipc_ns: Vec<f64>,
    /// The same samples in TSC cycles.
    pub ipc_cycles: Vec<f64>,
    /// Per run: median, 10th and 90th percentile cycles of single round
    /// trips, and how many were timed.
    pub ipc_single: Vec<(f64, f64, f64, usize)>,
}

/// Boots the benchmark system [`RUNS`] times.
pub fn run(root: &Path) -> Result<Ours> {
    let machine = Machine::load(root, MACHINE)?;
    let elves = bare_metal::build(root, true)?;
    let system = system::prepare(root, &elves, &root.join(POLICY))?;
    let mut ours = Ours::default();
    for run in 1..=RUNS {
        eprintln!("ours: boot {run} of {RUNS}...");
        let started = Instant::now();
        let mut first_task_line = None;
        let outcome = runner::run(machine.command(&system.kernel, &system.image), &system.tables, TIMEOUT, |line| {
            if first_task_line.is_none() && line.micros.is_some() && line.source != "kernel" {
                first_task_line = Some(started.elapsed());
            }
        })?;
        if outcome.ending != Ending::Status(0) {
            bail!("benchmark run {run} ended with {}", outcome.ending);
        }
        ours.boot_seconds.push(first_task_line.context("no task logged anything")?.as_secs_f64());
        let bench: Vec<&str> = outcome.lines.iter().filter(|l| l.source == "bench").map(|l| l.text.as_str()).collect();
        parse(&bench, &mut ours).with_context(|| format!("benchmark run {run}"))?;
    }
    Ok(ours)
}

/// Reads one run's `BENCH` lines into `ours`.
fn parse(lines: &[&str], ours: &mut Ours) -> Result<()> {
    let mut cycles_per_us = None;
    let mut batches = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let number = |index: usize| -> Result<f64> {
            fields.get(index).context("short BENCH line")?.parse::<f64>().with_context(|| format!("in `{line}`"))
        };
        match fields.as_slice() {
            ["BENCH", "ipc-round-trip", "cycles", ..] => {
                cycles_per_us = Some(number(8)?);
                ours.ipc_single.push((number(3)?, number(4)?, number(5)?, number(6)? as usize));
            }
            ["BENCH", "ipc-round-trip-batch", "cycles", ..] => batches.push(number(3)?),
            _ => {}
        }
    }
    let Some(rate) = cycles_per_us.filter(|rate| *rate > 0.0) else { bail!("no IPC figure reported") };
    if batches.is_empty() {
        bail!("no IPC batch samples reported");
    }
    ours.ipc_ns.extend(batches.iter().map(|cycles| cycles * 1000.0 / rate));
    ours.ipc_cycles.extend(batches);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_lines_become_samples_in_nanoseconds() {
        let lines = [
            "BENCH ipc-round-trip cycles 5000 4800 5600 100000 cycles-per-us 2500",
            "BENCH ipc-round-trip-batch cycles 5000",
            "BENCH ipc-round-trip-batch cycles 7500",
            "something else",
        ];
        let mut ours = Ours::default();
        parse(&lines, &mut ours).expect("valid lines");
        assert_eq!(ours.ipc_ns, [2000.0, 3000.0]);
        assert_eq!(ours.ipc_cycles, [5000.0, 7500.0]);
        assert_eq!(ours.ipc_single, [(5000.0, 4800.0, 5600.0, 100_000)]);
    }

    #[test]
    fn missing_or_broken_lines_are_errors() {
        assert!(parse(&[], &mut Ours::default()).is_err());
        assert!(parse(&["BENCH ipc-round-trip cycles x 1 2 3 cycles-per-us 2500"], &mut Ours::default()).is_err());
        let no_batches = ["BENCH ipc-round-trip cycles 1 1 1 1 cycles-per-us 2500"];
        assert!(parse(&no_batches, &mut Ours::default()).is_err());
    }
}
