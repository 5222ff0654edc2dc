//! `cargo xtask test`: host unit tests, then every QEMU scenario, then one
//! summary line.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use qemu::harness::{self, CaseResult, Summary};
use qemu::machine::Machine;
use qemu::{runner, scenario};

use crate::{bare_metal, setup, system};

/// Runs the tests; `only` limits the scenarios by name (all when empty).
pub fn run(root: &Path, only: &[String], host: bool) -> Result<ExitCode> {
    let started = Instant::now();
    setup::ensure_qemu()?;
    let mut summary = Summary::default();
    if host {
        let (passed, failed) = host_tests(root)?;
        summary.add_counts(passed, failed);
    }
    let scenarios: Vec<_> =
        scenario::load(root)?.into_iter().filter(|s| only.is_empty() || only.contains(&s.name)).collect();
    if let Some(unknown) = only.iter().find(|name| !scenarios.iter().any(|s| &s.name == *name)) {
        bail!("no scenario named `{unknown}` in {}", scenario::SCENARIO_FILE);
    }
    let elves = bare_metal::build(root, false)?;
    for scenario in &scenarios {
        let results = run_scenario(root, &elves, scenario).unwrap_or_else(|error| {
            vec![CaseResult { name: format!("{}/setup", scenario.name), passed: false, detail: format!("{error:#}") }]
        });
        for result in &results {
            println!("{result}");
        }
        summary.add(&results);
    }
    println!("test run took {:.1} s", started.elapsed().as_secs_f64());
    println!("{summary}");
    Ok(ExitCode::from(summary.exit_code() as u8))
}

fn run_scenario(root: &Path, elves: &bare_metal::Elves, scenario: &scenario::Scenario) -> Result<Vec<CaseResult>> {
    let machine = Machine::load(root, &scenario.machine)?;
    let system = system::prepare(root, elves, &root.join(&scenario.policy))?;
    let command = machine.command(&system.kernel, &system.image);
    let timeout = Duration::from_secs(scenario.timeout_seconds);
    let run = runner::run(command, &system.tables, timeout, |_| {})?;
    eprintln!("scenario {}: {} in {:.2} s", scenario.name, run.ending, run.wall.as_secs_f64());
    let results = harness::evaluate(&scenario.name, &scenario.test_task, &run, &scenario.expectations());
    if results.iter().any(|result| !result.passed) {
        eprintln!("--- console of scenario {} ---", scenario.name);
        for line in &run.lines {
            eprintln!("{line}");
        }
        eprintln!("--- end of console ---");
    }
    Ok(results)
}

/// Runs `cargo test --workspace` and returns its passed and failed counts.
fn host_tests(root: &Path) -> Result<(usize, usize)> {
    eprintln!("running host unit tests (cargo test --workspace)...");
    let started = Instant::now();
    let output = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["test", "--workspace", "--color", "never"])
        .env_remove("RUSTFLAGS")
        .output()
        .context("running cargo test")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (mut passed, mut failed) = (0, 0);
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count(rest, " passed");
            failed += count(rest, " failed");
        }
    }
    if !output.status.success() {
        eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
        failed = failed.max(1);
    }
    eprintln!("host unit tests: {passed} passed, {failed} failed ({:.1} s)", started.elapsed().as_secs_f64());
    Ok((passed, failed))
}

/// The number before `label` in a libtest summary such as
/// `ok. 12 passed; 0 failed; 0 ignored`.
fn count(summary: &str, label: &str) -> usize {
    summary
        .split(';')
        .find_map(|part| {
            part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ").strip_suffix(label.trim_start())
        })
        .and_then(|number| number.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn libtest_summaries_are_counted() {
        let line = "ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!((count(line, " passed"), count(line, " failed")), (12, 0));
        let bad = "FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!((count(bad, " passed"), count(bad, " failed")), (3, 2));
    }
}
