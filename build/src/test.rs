//! `cargo xtask test`: host unit tests, then every QEMU scenario, the Linux
//! group oracle and the policy checks against machines, then one summary
//! line.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use qemu::harness::{self, CaseResult, Summary};
use qemu::machine::Machine;
use qemu::{runner, scenario};

use crate::groups::oracle::{self, Recording};
use crate::policy::{self, Problems};
use crate::progress::{self, Progress};
use crate::{bare_metal, groups, setup, system};

/// The name the Linux group oracle's cases are reported and selected under:
/// `groups-oracle` selects every recorded topology, `groups-oracle/NAME` one.
pub(crate) const ORACLE: &str = "groups-oracle";

/// Runs the tests; `only` limits the scenarios, policy checks and oracle
/// topologies by name (all when empty).
pub fn run(root: &Path, only: &[String], host: bool, soak: bool) -> Result<ExitCode> {
    let started = Instant::now();
    setup::ensure_qemu()?;
    let mut summary = Summary::default();
    let selected = |name: &str| only.is_empty() || only.iter().any(|wanted| wanted == name);
    let all_scenarios = scenario::load(root)?;
    let all_checks = scenario::load_policy_checks(root)?;
    let recordings = oracle::load_all(root)?;
    let oracle_name = |recording: &Recording| format!("{ORACLE}/{}", recording.name);
    let known = |name: &String| {
        name == ORACLE
            || all_scenarios.iter().any(|s| &s.name == name)
            || all_checks.iter().any(|c| &c.name == name)
            || recordings.iter().any(|r| oracle_name(r) == *name)
    };
    if let Some(unknown) = only.iter().find(|name| !known(name)) {
        bail!(
            "no scenario or policy check named `{unknown}` in {}, and no `{ORACLE}/{unknown}` topology in {}",
            scenario::SCENARIO_FILE,
            oracle::FIXTURE_DIR
        );
    }
    let scenarios: Vec<_> = all_scenarios.iter().filter(|s| selected(&s.name)).collect();
    let recordings: Vec<_> = recordings.iter().filter(|r| selected(ORACLE) || selected(&oracle_name(r))).collect();
    let checks: Vec<_> = all_checks.iter().filter(|c| selected(&c.name)).collect();
    let mut progress = Progress::new(usize::from(host) + scenarios.len() + recordings.len() + checks.len());
    if host {
        progress.start("host unit tests (cargo test --workspace)");
        let (passed, failed, took) = host_tests(root)?;
        summary.add_counts(passed, failed);
        progress.finish("host unit tests", &format!("{passed} passed, {failed} failed in {:.1} s", took.as_secs_f64()));
    }
    let elves = bare_metal::build(root, progress.quiet())?;
    let quiet = progress.quiet();
    let mut report = |progress: &mut Progress, step: &str, results: Vec<CaseResult>, how: &str| {
        for result in results.iter().filter(|result| !quiet || !result.passed) {
            println!("{result}");
        }
        let failed = results.iter().filter(|result| !result.passed).count();
        progress.finish(step, &format!("{} passed, {failed} failed{how}", results.len() - failed));
        summary.add(&results);
    };
    for scenario in scenarios {
        let step = format!("scenario {}", scenario.name);
        progress.start(&format!("{step} (machine {})", scenario.machine));
        let (results, how) = match run_scenario(root, &elves, scenario, soak) {
            Ok((run, results)) => (results, format!(" ({} after {:.1} s)", run.ending, run.wall.as_secs_f64())),
            Err(error) => (
                vec![CaseResult {
                    name: format!("{}/setup", scenario.name),
                    passed: false,
                    detail: format!("{error:#}"),
                }],
                String::new(),
            ),
        };
        report(&mut progress, &step, results, &how);
    }
    for recording in recordings {
        let step = oracle_name(recording);
        progress.start(&step);
        report(&mut progress, &step, vec![oracle_case(root, &elves, recording)], "");
    }
    for check in checks {
        let step = format!("policy check {}", check.name);
        progress.start(&step);
        report(&mut progress, &step, vec![policy_check_case(root, &elves, check)], "");
    }
    println!("test run took {:.1} s", started.elapsed().as_secs_f64());
    println!("{summary}");
    Ok(ExitCode::from(summary.exit_code() as u8))
}

/// `cargo xtask test --scenario NAME --gdb`: boots scenario `name` halted
/// for gdb, shows its console as it comes, and judges the run when the
/// system ends.
pub fn debug(root: &Path, name: &str) -> Result<ExitCode> {
    setup::ensure_qemu()?;
    let scenarios = scenario::load(root)?;
    let Some(scenario) = scenarios.iter().find(|scenario| scenario.name == name) else {
        bail!("no scenario named `{name}` in {} (--gdb debugs a scenario)", scenario::SCENARIO_FILE);
    };
    let elves = bare_metal::build(root, false)?;
    let machine = Machine::load(root, &scenario.machine)?;
    let policy = scenario.policy_file(root, &root.join("target/scenarios"), false)?;
    let system = system::prepare(root, &elves, &policy)?;
    let mut command = machine.command(&system.kernel, &system.image)?;
    crate::debugger::announce(&crate::debugger::prepare(root, name, &system, &elves, &mut command)?);
    let run = runner::run(command, &system.tables, crate::debugger::SESSION, |line| println!("{line}"))?;
    let results = harness::evaluate(&scenario.name, &scenario.test_task, &run, &scenario.expectations());
    let mut summary = Summary::default();
    for result in &results {
        println!("{result}");
    }
    summary.add(&results);
    println!("{summary}");
    Ok(ExitCode::from(summary.exit_code() as u8))
}

fn run_scenario(
    root: &Path,
    elves: &bare_metal::Elves,
    scenario: &scenario::Scenario,
    soak: bool,
) -> Result<(runner::Run, Vec<CaseResult>)> {
    let (run, results) = boot_scenario(root, elves, scenario, soak)?;
    if results.iter().any(|result| !result.passed) {
        eprintln!("--- console of scenario {} ---", scenario.name);
        for line in &run.lines {
            eprintln!("{line}");
        }
        eprintln!("--- end of console ---");
    }
    Ok((run, results))
}

/// Boots `scenario`'s system on its machine and judges the run.
pub(crate) fn boot_scenario(
    root: &Path,
    elves: &bare_metal::Elves,
    scenario: &scenario::Scenario,
    soak: bool,
) -> Result<(runner::Run, Vec<CaseResult>)> {
    let machine = Machine::load(root, &scenario.machine)?;
    let policy = scenario.policy_file(root, &root.join("target/scenarios"), soak)?;
    let system = system::prepare(root, elves, &policy)?;
    if !progress::under_ci() {
        system::print_warnings(&system);
    }
    let command = machine.command(&system.kernel, &system.image)?;
    let timeout = scenario.timeout(soak);
    let run = runner::run(command, &system.tables, timeout, |_| {})?;
    let results = harness::evaluate(&scenario.name, &scenario.test_task, &run, &scenario.expectations());
    Ok((run, results))
}

/// Boots a topology Linux's groups were recorded on and requires the same
/// partition from the IOMMU server (ids may differ).
pub(crate) fn oracle_case(root: &Path, elves: &bare_metal::Elves, recording: &Recording) -> CaseResult {
    let name = format!("{ORACLE}/{}", recording.name);
    let machine = Machine::ad_hoc(recording.args.clone());
    match groups::boot(root, elves, &machine, groups::boot::DEFAULT_TIMEOUT) {
        Ok(booted) => {
            if !progress::under_ci() {
                eprintln!(
                    "{name}: {} functions in {} groups ({}), boot {:.2} s",
                    booted.groups.function_count(),
                    booted.groups.groups.len(),
                    if recording.same_ids(&booted.groups) { "ids as Linux's" } else { "ids differ from Linux's" },
                    booted.run.wall.as_secs_f64()
                );
            }
            match recording.differences(&booted.groups) {
                None => CaseResult { name, passed: true, detail: String::new() },
                Some(differences) => CaseResult {
                    name,
                    passed: false,
                    detail: format!("differs from Linux: {differences}\nours:\n{}", booted.groups.listing(true)),
                },
            }
        }
        Err(error) => CaseResult { name, passed: false, detail: format!("{error:#}") },
    }
}

/// Checks a policy against its machine's groups and requires exactly the
/// expected problems.
fn policy_check_case(root: &Path, elves: &bare_metal::Elves, check: &scenario::PolicyCheck) -> CaseResult {
    let name = match check.expected_problems.is_empty() {
        true => format!("{}/accepted on its machine", check.name),
        false => format!("{}/rejected with the expected problems", check.name),
    };
    let outcome = || -> Result<Vec<String>> {
        let path = root.join(&check.policy);
        let policy = policy::load(&path, &system::task_binaries(root)?)
            .context("the policy must be valid on its own, so that only the machine shows its problems")?;
        let machine = Machine::load(root, &check.machine)?;
        let booted = groups::boot::boot_for_policy(root, elves, &machine, groups::boot::DEFAULT_TIMEOUT, &path)?;
        if !progress::under_ci() {
            eprintln!(
                "policy check {}: machine `{}` booted in {:.2} s",
                check.name,
                machine.name,
                booted.run.wall.as_secs_f64()
            );
        }
        let problems = policy::machine::check(&policy, &machine.name, machine.memory_mib, &booted.groups).problems;
        Ok(Problems { path, problems }.to_string().lines().map(str::to_owned).collect())
    };
    let reported = match outcome() {
        Ok(reported) => reported,
        Err(error) => return CaseResult { name, passed: false, detail: format!("{error:#}") },
    };
    let missing: Vec<&String> = check
        .expected_problems
        .iter()
        .filter(|expected| !reported.iter().any(|line| line.contains(expected.as_str())))
        .collect();
    let passed = missing.is_empty() && reported.len() == check.expected_problems.len();
    let detail = if passed {
        String::new()
    } else {
        let missing: Vec<String> = missing.iter().map(|text| format!("  missing: {text}")).collect();
        format!(
            "the checker reported {} problems:\n  {}\n{}",
            reported.len(),
            reported.join("\n  "),
            missing.join("\n")
        )
    };
    CaseResult { name, passed, detail }
}

/// Runs `cargo test --workspace` and returns its passed and failed counts
/// and how long it took.
fn host_tests(root: &Path) -> Result<(usize, usize, Duration)> {
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
    Ok((passed, failed, started.elapsed()))
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
