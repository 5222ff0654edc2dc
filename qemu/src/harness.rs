//! Reading test results out of a run, and adding them up.
//!
//! A scenario's test task reports through `userlib::testkit`: `TEST PLAN
//! <n>`, one `TEST PASS <name>` or `TEST FAIL <name> ...` per case, then
//! `TEST DONE`. The harness turns those lines, the scenario's expectations
//! and the way the run ended into one result per case, and adds checks of
//! its own so that a run which crashes, hangs or stops early can never
//! look like a pass.

use std::fmt;

use crate::console::LogLine;
use crate::runner::{Ending, Run};

/// What a scenario expects besides every case passing.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    /// The cases the test task must report, exactly, in any order.
    pub cases: Vec<String>,
    /// Cases that must be reported failed (they prove failures are seen).
    pub failures: Vec<String>,
    /// Text some console line must contain, e.g. a kernel report.
    pub log_contains: Vec<String>,
    /// Tasks other than the test task that may be killed or exit with an
    /// error code (the scenario kills them on purpose).
    pub deaths: Vec<String>,
    /// Text of error lines other tasks may log (the scenario provokes them).
    pub errors: Vec<String>,
}

/// The verdict on one case or check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseResult {
    /// `<scenario>/<case>`.
    pub name: String,
    /// Whether it met its expectation.
    pub passed: bool,
    /// Why not, when it did not.
    pub detail: String,
}

impl fmt::Display for CaseResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed {
            write!(f, "ok      {}", self.name)
        } else {
            write!(f, "FAILED  {}: {}", self.name, self.detail)
        }
    }
}

enum Report<'a> {
    Plan(usize),
    Pass(&'a str),
    Fail(&'a str, &'a str),
    Done,
}

fn parse(line: &LogLine) -> Option<Report<'_>> {
    let rest = line.text.strip_prefix("TEST ")?;
    if let Some(count) = rest.strip_prefix("PLAN ") {
        return count.trim().parse().ok().map(Report::Plan);
    }
    if let Some(name) = rest.strip_prefix("PASS ") {
        return Some(Report::Pass(name.trim()));
    }
    if let Some(rest) = rest.strip_prefix("FAIL ") {
        let (name, place) = rest.split_once(' ').unwrap_or((rest, ""));
        return Some(Report::Fail(name, place.trim()));
    }
    (rest.trim() == "DONE").then_some(Report::Done)
}

/// Judges `run` of `scenario`, whose test task is `test_task`.
pub fn evaluate(scenario: &str, test_task: &str, run: &Run, expect: &Expectations) -> Vec<CaseResult> {
    let mut results = Vec::new();
    let mut check = |name: String, passed: bool, detail: String| {
        results.push(CaseResult { name: format!("{scenario}/{name}"), passed, detail });
    };
    let (mut plan, mut done, mut reported, mut failed) = (None, false, Vec::<String>::new(), 0u8);
    for line in run.lines.iter().filter(|line| line.source == test_task) {
        match parse(line) {
            Some(Report::Plan(count)) => plan = Some(count),
            Some(Report::Done) => done = true,
            Some(Report::Pass(name)) => {
                let expected_failure = expect.failures.iter().any(|f| f == name);
                check(name.into(), !expected_failure, "expected to fail, but passed".into());
                reported.push(name.into());
            }
            Some(Report::Fail(name, place)) => {
                let expected_failure = expect.failures.iter().any(|f| f == name);
                check(name.into(), expected_failure, format!("reported failed {place}"));
                reported.push(name.into());
                failed = failed.saturating_add(1);
            }
            None => {}
        }
    }
    for missing in expect.failures.iter().filter(|name| !reported.contains(name)) {
        check(missing.clone(), false, "expected to fail, but never reported".into());
    }
    let finished = match plan {
        None => Err(format!("test task `{test_task}` never reported a plan ({})", run.ending)),
        Some(count) if reported.len() < count || !done => {
            Err(format!("test task stopped after {} of {count} cases ({})", reported.len(), run.ending))
        }
        Some(_) => Ok(()),
    };
    check("all cases ran".into(), finished.is_ok(), finished.err().unwrap_or_default());
    let clean = run.ending == Ending::Status(failed);
    check(
        "system ended cleanly".into(),
        clean,
        format!("{} (the test task reported {failed} failed cases)", run.ending),
    );
    let listed = |name: &String| expect.cases.contains(name);
    let unlisted: Vec<&str> = reported.iter().filter(|name| !listed(name)).map(String::as_str).collect();
    let unreported: Vec<&str> =
        expect.cases.iter().filter(|name| !reported.contains(name)).map(String::as_str).collect();
    check(
        "the cases are the scenario's".into(),
        unlisted.is_empty() && unreported.is_empty(),
        format!("reported but not in the scenario: {unlisted:?}; in the scenario but not reported: {unreported:?}"),
    );
    let deaths: Vec<&str> = run
        .lines
        .iter()
        .filter_map(|line| died(line, test_task))
        .filter(|task| !expect.deaths.iter().any(|expected| expected == task))
        .collect();
    check("no task died unexpectedly".into(), deaths.is_empty(), format!("{deaths:?}"));
    let errors: Vec<String> = run
        .lines
        .iter()
        .filter(|line| line.level == Some("error") && line.source != test_task)
        .filter(|line| !expect.errors.iter().any(|text| line.text.contains(text.as_str())))
        .map(|line| format!("{}: {}", line.source, line.text))
        .collect();
    check("no unexpected error lines".into(), errors.is_empty(), errors.join("; "));
    for text in &expect.log_contains {
        let seen = run.lines.iter().any(|line| line.text.contains(text.as_str()));
        check(format!("log shows \"{text}\""), seen, "no console line contains it".into());
    }
    results
}

/// The task a kernel line says was killed, ended by another task or exited
/// with an error code,
/// unless it is `test_task` (whose exit is the run's status).
fn died<'a>(line: &'a LogLine, test_task: &str) -> Option<&'a str> {
    if line.source != "kernel" {
        return None;
    }
    let rest = line.text.strip_prefix("task ")?;
    let (task, how) = rest.split_once(' ')?;
    let died = how.starts_with("killed")
        || how.starts_with("ended by")
        || how.strip_prefix("exited with code ").is_some_and(|code| code != "0");
    (died && task != test_task).then_some(task)
}

/// Running totals over every test run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Cases that met their expectation.
    pub passed: usize,
    /// Cases that did not.
    pub failed: usize,
}

impl Summary {
    /// Adds `results`.
    pub fn add(&mut self, results: &[CaseResult]) {
        for result in results {
            if result.passed {
                self.passed += 1;
            } else {
                self.failed += 1;
            }
        }
    }

    /// Adds counts from another source (host unit tests).
    pub fn add_counts(&mut self, passed: usize, failed: usize) {
        self.passed += passed;
        self.failed += failed;
    }

    /// Whether the whole run succeeded: no failures, and something ran.
    pub fn success(&self) -> bool {
        self.failed == 0 && self.passed > 0
    }

    /// The process exit code `cargo xtask test` ends with.
    pub fn exit_code(&self) -> i32 {
        if self.success() { 0 } else { 1 }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn line(source: &str, text: &str) -> LogLine {
        LogLine { micros: Some(0), source: source.into(), level: Some("info"), text: text.into() }
    }

    fn run(texts: &[&str], ending: Ending) -> Run {
        let lines = texts.iter().map(|text| line("tester", text)).collect();
        Run { ending, lines, wall: Duration::ZERO }
    }

    fn cases(names: &[&str]) -> Expectations {
        Expectations { cases: names.iter().map(|name| (*name).into()).collect(), ..Expectations::default() }
    }

    fn failed(results: &[CaseResult]) -> Vec<&str> {
        results.iter().filter(|r| !r.passed).map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn a_passing_run_passes_every_case_and_check() {
        let run = run(&["TEST PLAN 2", "TEST PASS a", "TEST PASS b", "TEST DONE"], Ending::Status(0));
        let results = evaluate("s", "tester", &run, &cases(&["a", "b"]));
        assert_eq!(failed(&results), Vec::<&str>::new());
        assert_eq!(results.len(), 7, "two cases, all-ran, ended-cleanly, the list, deaths and errors");
    }

    #[test]
    fn a_broken_case_fails_the_summary_and_the_exit_code() {
        let run = run(&["TEST PLAN 2", "TEST PASS a", "TEST FAIL b at main.rs:9", "TEST DONE"], Ending::Status(1));
        let results = evaluate("s", "tester", &run, &cases(&["a", "b"]));
        assert_eq!(failed(&results), ["s/b"]);
        assert!(results.iter().any(|r| r.detail == "reported failed at main.rs:9"));
        let mut summary = Summary::default();
        summary.add(&results);
        assert_eq!(summary.to_string(), "6 passed, 1 failed");
        assert_eq!(summary.exit_code(), 1);
    }

    #[test]
    fn expected_failures_must_fail() {
        let expect = Expectations {
            cases: vec!["wrong".into(), "right".into()],
            failures: vec!["wrong".into(), "absent".into()],
            ..Expectations::default()
        };
        let run = run(&["TEST PLAN 2", "TEST FAIL wrong at x:1", "TEST PASS right", "TEST DONE"], Ending::Status(1));
        let results = evaluate("s", "tester", &run, &expect);
        assert_eq!(failed(&results), ["s/absent"]);
        let run2 = self::run(&["TEST PLAN 1", "TEST PASS wrong", "TEST DONE"], Ending::Status(0));
        let cases = vec!["wrong".into()];
        let results = evaluate("s", "tester", &run2, &Expectations { cases, failures: vec!["wrong".into()], ..expect });
        assert_eq!(failed(&results), ["s/wrong"]);
    }

    #[test]
    fn a_run_that_stops_early_hangs_or_panics_never_passes() {
        let stopped = run(&["TEST PLAN 3", "TEST PASS a"], Ending::Status(126));
        let results = evaluate("s", "tester", &stopped, &cases(&["a"]));
        assert_eq!(failed(&results), ["s/all cases ran", "s/system ended cleanly"]);
        let silent = run(&[], Ending::TimedOut(Duration::from_secs(9)));
        let results = evaluate("s", "tester", &silent, &Expectations::default());
        assert!(results.iter().any(|r| !r.passed && r.detail.contains("never reported a plan")));
        let panicked = run(&["TEST PLAN 1", "TEST PASS a", "TEST DONE"], Ending::Status(127));
        assert_eq!(failed(&evaluate("s", "tester", &panicked, &cases(&["a"]))), ["s/system ended cleanly"]);
    }

    #[test]
    fn lines_of_other_writers_do_not_count_and_log_checks_look_everywhere() {
        let mut run = run(&["TEST PLAN 0", "TEST DONE"], Ending::Status(0));
        run.lines.push(line("impostor", "TEST FAIL x at y:1"));
        run.lines.push(line("kernel", "task faulter killed: page fault"));
        let expect = Expectations {
            log_contains: vec!["faulter killed".into(), "absent".into()],
            deaths: vec!["faulter".into()],
            ..Expectations::default()
        };
        let results = evaluate("s", "tester", &run, &expect);
        assert_eq!(failed(&results), ["s/log shows \"absent\""]);
    }

    #[test]
    fn a_deleted_or_renamed_case_fails() {
        let run = run(&["TEST PLAN 2", "TEST PASS a", "TEST PASS c", "TEST DONE"], Ending::Status(0));
        let results = evaluate("s", "tester", &run, &cases(&["a", "b"]));
        assert_eq!(failed(&results), ["s/the cases are the scenario's"]);
        assert!(results.iter().any(|r| r.detail.contains("[\"c\"]") && r.detail.contains("[\"b\"]")));
    }

    #[test]
    fn an_unexpected_death_or_error_line_fails() {
        let mut run = run(&["TEST PLAN 0", "TEST DONE"], Ending::Status(0));
        run.lines.push(LogLine { level: Some("error"), ..line("iommu", "the fault status could not be read") });
        run.lines.push(line("kernel", "task pci killed: page fault (write, page not mapped)"));
        run.lines.push(line("kernel", "task hello exited with code 0"));
        run.lines.push(line("kernel", "task tester exited with code 3"));
        let results = evaluate("s", "tester", &run, &Expectations::default());
        assert_eq!(failed(&results), ["s/no task died unexpectedly", "s/no unexpected error lines"]);
        let expect =
            Expectations { deaths: vec!["pci".into()], errors: vec!["fault status".into()], ..Expectations::default() };
        assert_eq!(failed(&evaluate("s", "tester", &run, &expect)), Vec::<&str>::new());
    }

    #[test]
    fn nothing_run_is_not_success() {
        assert!(!Summary::default().success());
    }
}
