//! The integration scenarios, listed in `qemu/scenarios.toml`.
//!
//! A scenario names a machine (`qemu/machines/`), a policy (the system to
//! boot, with its test task) and what the harness should expect. A policy
//! check names a policy the checker must reject on a machine (whose groups
//! it learns by booting it), and the problems it must report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::harness::Expectations;

/// Where the scenario list lives, relative to the workspace root.
pub const SCENARIO_FILE: &str = "qemu/scenarios.toml";

/// One scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Scenario {
    /// Name results are reported under.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// Machine file name.
    pub machine: String,
    /// Policy file, relative to the workspace root.
    pub policy: PathBuf,
    /// The task whose `TEST` lines are the results.
    pub test_task: String,
    /// Longest the run may take, in seconds.
    pub timeout_seconds: u64,
    /// The cases the test task reports, by name: a case deleted, added or
    /// renamed in the task without this list fails the scenario.
    pub cases: Vec<String>,
    /// Cases that must be reported failed.
    #[serde(default)]
    pub expected_failures: Vec<String>,
    /// Tasks other than the test task that may be killed or exit with an
    /// error code.
    #[serde(default)]
    pub expected_deaths: Vec<String>,
    /// Text of error lines other tasks may log.
    #[serde(default)]
    pub expected_errors: Vec<String>,
    /// Text some console line must contain.
    #[serde(default)]
    pub log_contains: Vec<String>,
    /// Settings laid over the policy's own, so one policy serves variants
    /// of a scenario (e.g. `{ endpoints.iommu.invalidation = "registers" }`).
    #[serde(default)]
    pub policy_overrides: toml::Table,
    /// Further overrides for `cargo xtask test --soak`, which also gives
    /// the scenario ten times its timeout (e.g. ten times the rounds).
    #[serde(default)]
    pub soak_policy_overrides: toml::Table,
}

impl Scenario {
    /// The policy file to boot: the named one, or, with overrides (and
    /// the soak overrides when `soak`), a copy with them laid over it,
    /// written under `scratch`.
    pub fn policy_file(&self, root: &Path, scratch: &Path, soak: bool) -> Result<PathBuf> {
        let path = root.join(&self.policy);
        if self.policy_overrides.is_empty() && (!soak || self.soak_policy_overrides.is_empty()) {
            return Ok(path);
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut policy: toml::Table =
            toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
        overlay(&mut policy, &self.policy_overrides);
        if soak {
            overlay(&mut policy, &self.soak_policy_overrides);
        }
        std::fs::create_dir_all(scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
        let merged = scratch.join(format!("{}.policy.toml", self.name));
        let header = format!("# {} with the overrides of scenario `{}`\n", self.policy.display(), self.name);
        let body = toml::to_string(&policy).context("the merged policy cannot be written as TOML")?;
        std::fs::write(&merged, header + &body).with_context(|| format!("cannot write {}", merged.display()))?;
        Ok(merged)
    }

    /// How long a run may take.
    pub fn timeout(&self, soak: bool) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_seconds * if soak { 10 } else { 1 })
    }

    /// The harness expectations of this scenario.
    pub fn expectations(&self) -> Expectations {
        Expectations {
            cases: self.cases.clone(),
            failures: self.expected_failures.clone(),
            log_contains: self.log_contains.clone(),
            deaths: self.expected_deaths.clone(),
            errors: self.expected_errors.clone(),
        }
    }
}

/// A policy `cargo xtask policy check --machine` must reject.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicyCheck {
    /// Name results are reported under.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// Machine file name: the machine whose groups the policy is checked against.
    pub machine: String,
    /// Policy file, relative to the workspace root.
    pub policy: PathBuf,
    /// Text each reported problem must contain, one entry per problem: the
    /// checker must report exactly these (none: the policy is accepted).
    pub expected_problems: Vec<String>,
}

/// Lays `over` onto `base`: tables merge key by key, anything else replaces.
pub fn overlay(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(over)) => overlay(inner, over),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    scenario: Vec<Scenario>,
    #[serde(default)]
    policy_check: Vec<PolicyCheck>,
}

fn load_file(root: &Path) -> Result<File> {
    let path = root.join(SCENARIO_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: File = toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
    let names: Vec<&str> = file
        .scenario
        .iter()
        .map(|scenario| scenario.name.as_str())
        .chain(file.policy_check.iter().map(|check| check.name.as_str()))
        .collect();
    for (index, name) in names.iter().enumerate() {
        if names[..index].contains(name) {
            bail!("{}: `{name}` is listed twice", path.display());
        }
    }
    Ok(file)
}

/// Loads every scenario under `root`; names must be unique.
pub fn load(root: &Path) -> Result<Vec<Scenario>> {
    Ok(load_file(root)?.scenario)
}

/// Loads every policy check under `root`; names must be unique among
/// scenarios and checks.
pub fn load_policy_checks(root: &Path) -> Result<Vec<PolicyCheck>> {
    Ok(load_file(root)?.policy_check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_merge_into_tables_and_replace_values() {
        let mut base: toml::Table = toml::from_str("[a]\nx = 1\ny = 2\n[b]\nz = 3").unwrap();
        let over: toml::Table = toml::from_str("a.y = 5\na.w = 6\nb = 7").unwrap();
        overlay(&mut base, &over);
        assert_eq!(
            base.to_string(),
            toml::from_str::<toml::Table>("b = 7\n[a]\nx = 1\ny = 5\nw = 6").unwrap().to_string()
        );
    }

    /// A source line a scenario's log check names (` at path.rs:N`), if
    /// the text names one.
    fn named_line(text: &str) -> Option<(&str, usize)> {
        let (_, after) = text.split_once(" at ")?;
        let place = after.split_whitespace().next()?;
        let (path, line) = place.rsplit_once(':')?;
        Some((path.strip_suffix(".rs").map(|_| path)?, line.parse().ok()?))
    }

    #[test]
    fn every_source_line_a_log_check_names_is_marked_as_named() {
        // A backtrace check names a line; if the code moves, this test
        // says which check to update before any machine boots.
        assert_eq!(
            named_line(" main at qemu/tasks/faulter/src/main.rs:15 (inlined)"),
            Some(("qemu/tasks/faulter/src/main.rs", 15))
        );
        assert_eq!(named_line("task faulter killed: page fault (read) at address 0x0"), None);
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
        let mut named = 0;
        for scenario in load(root).expect("valid scenario list") {
            for (path, number) in scenario.log_contains.iter().filter_map(|text| named_line(text)) {
                let text = std::fs::read_to_string(root.join(path))
                    .unwrap_or_else(|_| panic!("{}: no file {path}", scenario.name));
                let line = text.lines().nth(number - 1).unwrap_or_default();
                let marker = format!("the {} scenario names this line", scenario.name);
                assert!(
                    line.contains(&marker),
                    "{}: {path}:{number} is `{}`, without the comment \"{marker}\"",
                    scenario.name,
                    line.trim()
                );
                named += 1;
            }
        }
        assert!(named >= 3, "the foundation scenario names the faulting line and two panicking frames");
    }

    #[test]
    fn the_scenario_list_loads_and_names_existing_files() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
        let scenarios = load(root).expect("valid scenario list");
        assert!(!scenarios.is_empty());
        for scenario in scenarios {
            assert!(crate::machine::path(root, &scenario.machine).exists(), "{}: no machine", scenario.name);
            assert!(root.join(&scenario.policy).exists(), "{}: no policy", scenario.name);
        }
        let checks = load_policy_checks(root).expect("valid policy checks");
        for check in &checks {
            assert!(crate::machine::path(root, &check.machine).exists(), "{}: no machine", check.name);
            assert!(root.join(&check.policy).exists(), "{}: no policy", check.name);
        }
        // A check may expect a policy accepted (no problems), but the
        // checker's refusals must be shown too.
        assert!(checks.iter().any(|check| !check.expected_problems.is_empty()), "no check expects a refusal");
    }
}
