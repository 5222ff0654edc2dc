//! `cargo xtask fuzz`: coverage-guided fuzzing with libFuzzer on stable Rust.
//!
//! The targets' bodies live in `fuzz/targets` (a workspace member whose
//! tests replay the corpora); `fuzz/runner` wraps each in a libFuzzer entry
//! point. This module builds the runner with LLVM's sanitizer-coverage
//! instrumentation through stable `-C` flags only (no nightly, no
//! `-Z` flag, no `cargo fuzz`), runs each target for the time asked with
//! its committed seeds, and copies any crashing input to
//! `fuzz/regressions/<target>/`, which the replay tests then run forever.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::progress::{self, Progress};
use crate::workspace::TARGET;

/// Seconds each target runs unless told otherwise.
pub const DEFAULT_SECONDS: u64 = 60;

/// Code generation flags for libFuzzer's coverage feedback, all stable:
/// the sanitizer-coverage pass with inline 8-bit edge counters, the PC
/// table libFuzzer needs to count features, and comparison tracing so it
/// learns magic values; `fuzzing` is the cfg libfuzzer-sys code expects.
pub const RUSTFLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg",
    "fuzzing",
    "-Cdebug-assertions",
    "-Coverflow-checks",
];

/// libFuzzer's artifact kinds that are findings (a slow unit is not).
const FINDINGS: [&str; 4] = ["crash-", "timeout-", "oom-", "leak-"];

/// Seconds one input may run before libFuzzer calls it a hang.
const INPUT_TIMEOUT_SECONDS: u64 = 10;

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Seconds per target.
    pub seconds: u64,
    /// Targets to run (all when empty).
    pub targets: Vec<String>,
    /// Afterwards, add the inputs that found new coverage to the committed
    /// corpus (`libFuzzer -merge=1`, which keeps only coverage-increasing ones).
    pub merge: bool,
}

/// How one target's run went.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Target name.
    pub target: String,
    /// Inputs executed.
    pub runs: Option<u64>,
    /// Executions per second.
    pub per_second: Option<u64>,
    /// Coverage: edges (libFuzzer's `cov`).
    pub edges: Option<u64>,
    /// Features (libFuzzer's `ft`: edges with hit-count buckets and compares).
    pub features: Option<u64>,
    /// Inputs in the working corpus at the end.
    pub corpus: Option<u64>,
    /// Finding inputs copied to `fuzz/regressions/<target>/`.
    pub findings: Vec<PathBuf>,
    /// libFuzzer's exit status was not success.
    pub failed: bool,
}

impl Outcome {
    /// The figures and the verdict, without the target's name.
    pub fn figures(&self) -> String {
        let show = |value: Option<u64>| value.map_or_else(|| "?".to_owned(), |value| value.to_string());
        let verdict = match (self.findings.len(), self.failed) {
            (0, false) => "no crash".to_owned(),
            (0, true) => "FAILED (libFuzzer stopped with an error, no input saved)".to_owned(),
            (n, _) => format!("{n} CRASH input(s): {}", self.findings[0].display()),
        };
        format!(
            "{:>10} runs {:>7} exec/s  cov {:>5}  ft {:>6}  corpus {:>5}  {verdict}",
            show(self.runs),
            show(self.per_second),
            show(self.edges),
            show(self.features),
            show(self.corpus)
        )
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<18} {}", self.target, self.figures())
    }
}

/// The targets: one runner binary each, named like their corpus folders.
pub fn targets(root: &Path) -> Result<Vec<String>> {
    let bins = root.join("fuzz/runner/src/bin");
    let mut names: Vec<String> = std::fs::read_dir(&bins)
        .with_context(|| format!("cannot list {}", bins.display()))?
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().strip_suffix(".rs").map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// Makes sure a C++ compiler is there: libfuzzer-sys compiles libFuzzer.
pub fn ensure_cxx() -> Result<()> {
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".to_owned());
    let works = |name: &str| Command::new(name).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if works(&compiler).is_ok_and(|status| status.success()) {
        return Ok(());
    }
    const INSTALL: &str = "apt-get update && apt-get install -y g++";
    let root =
        Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    if !root {
        bail!("libFuzzer needs a C++ compiler ({compiler} not found); install one with:\n    sudo sh -c '{INSTALL}'");
    }
    eprintln!("libFuzzer needs a C++ compiler and {compiler} is missing: installing Debian's g++ ({INSTALL})");
    let status = Command::new("sh").args(["-c", INSTALL]).env("DEBIAN_FRONTEND", "noninteractive").status()?;
    if !status.success() || !works("c++").is_ok_and(|status| status.success()) {
        bail!("installing g++ failed; run `{INSTALL}` by hand and try again");
    }
    Ok(())
}

/// Where the instrumented build and the working corpora go.
fn work_dir(root: &Path) -> PathBuf {
    root.join("target").join("fuzz")
}

/// Builds the runner binaries of `targets` with coverage instrumentation;
/// returns the directory holding them.
pub fn build(root: &Path, targets: &[String]) -> Result<PathBuf> {
    ensure_cxx()?;
    let target_dir = work_dir(root).join("build");
    let mut command = Command::new(env!("CARGO"));
    command
        .current_dir(root.join("fuzz/runner"))
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(root.join("fuzz/runner/Cargo.toml"))
        // `--target` keeps the instrumentation off build scripts and proc
        // macros, which would not link with it.
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", RUSTFLAGS.join("\x1f"))
        .env_remove("RUSTFLAGS");
    for target in targets {
        command.args(["--bin", target]);
    }
    eprintln!("building {} fuzz target(s) with coverage instrumentation (stable rustc, {TARGET})", targets.len());
    let status = command.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("building the fuzz runner failed");
    }
    Ok(target_dir.join(TARGET).join("release"))
}

/// The `stat::NAME: VALUE` line libFuzzer prints at the end.
fn final_stat(line: &str, name: &str) -> Option<u64> {
    line.strip_prefix("stat::")?.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok()
}

/// The value after `key` in a libFuzzer status line (`cov: 123 ft: ...`).
fn field(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let value = rest.split_whitespace().next()?;
    value.split('/').next()?.parse().ok()
}

/// Whether a libFuzzer output line is worth showing: status pulses and
/// everything about a crash, not every new corpus entry.
fn worth_showing(line: &str) -> bool {
    if line.starts_with('#') {
        return ["INITED", "pulse", "DONE", "RELOAD"].iter().any(|word| line.contains(word));
    }
    // libFuzzer looks for sanitizer hooks that a build without a sanitizer
    // lacks; it works without them, so the warnings are noise.
    let noise = [
        "INFO:",
        "MS:",
        "\tNEW_FUNC",
        "NEW_FUNC",
        "stat::",
        "base unit:",
        "WARNING: Failed to find function",
        "\"",
        "###### ",
    ];
    !noise.iter().any(|prefix| line.starts_with(prefix))
}

/// Runs one target for `seconds`; copies findings to `fuzz/regressions/`.
pub fn run_target(root: &Path, bin_dir: &Path, target: &str, seconds: u64) -> Result<Outcome> {
    let seeds = root.join("fuzz/corpus").join(target);
    let corpus = work_dir(root).join("corpus").join(target);
    let artifacts = work_dir(root).join("artifacts").join(target);
    for dir in [&seeds, &corpus] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Old findings were copied already; a stale one must not count twice.
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts)?;
    let mut command = Command::new(bin_dir.join(target));
    command
        .arg(&corpus)
        .arg(&seeds)
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let dictionary = root.join("fuzz/dict").join(format!("{target}.dict"));
    if dictionary.is_file() {
        command.arg(format!("-dict={}", dictionary.display()));
    }
    let started = Instant::now();
    let chatty = !progress::under_ci();
    let mut child = command.spawn().with_context(|| format!("cannot start the {target} fuzzer"))?;
    let mut outcome = Outcome { target: target.to_owned(), ..Outcome::default() };
    let stderr = child.stderr.take().context("libFuzzer's stderr")?;
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        if chatty && worth_showing(&line) {
            eprintln!("[{target} {:>4.0} s] {line}", started.elapsed().as_secs_f64());
        }
        if line.starts_with('#') {
            outcome.edges = field(&line, "cov: ").or(outcome.edges);
            outcome.features = field(&line, "ft: ").or(outcome.features);
            outcome.corpus = field(&line, "corp: ").or(outcome.corpus);
            outcome.per_second = field(&line, "exec/s: ").or(outcome.per_second);
        }
        outcome.runs = final_stat(&line, "number_of_executed_units").or(outcome.runs);
        outcome.per_second = final_stat(&line, "average_exec_per_sec").or(outcome.per_second);
    }
    let status = child.wait()?;
    outcome.failed = !status.success();
    let regressions = root.join("fuzz/regressions").join(target);
    for entry in std::fs::read_dir(&artifacts)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if FINDINGS.iter().any(|prefix| name.starts_with(prefix)) {
            std::fs::create_dir_all(&regressions)?;
            let kept = regressions.join(&name);
            std::fs::copy(entry.path(), &kept)?;
            eprintln!("{target}: finding saved as {}", kept.display());
            outcome.findings.push(kept);
        }
    }
    Ok(outcome)
}

/// Adds the working corpus's coverage-increasing inputs to the committed one.
fn merge(root: &Path, bin_dir: &Path, target: &str) -> Result<()> {
    let seeds = root.join("fuzz/corpus").join(target);
    let corpus = work_dir(root).join("corpus").join(target);
    let before = std::fs::read_dir(&seeds)?.count();
    let output = Command::new(bin_dir.join(target))
        .arg("-merge=1")
        .arg(&seeds)
        .arg(&corpus)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !output.success() {
        bail!("merging the {target} corpus failed");
    }
    let after = std::fs::read_dir(&seeds)?.count();
    eprintln!("{target}: committed corpus {before} -> {after} inputs");
    Ok(())
}

/// `cargo xtask fuzz`: builds and runs every chosen target; fails if any
/// found something.
pub fn run(root: &Path, options: &Options) -> Result<ExitCode> {
    let all = targets(root)?;
    let chosen: Vec<String> = if options.targets.is_empty() { all.clone() } else { options.targets.clone() };
    if let Some(unknown) = chosen.iter().find(|name| !all.contains(name)) {
        bail!("no fuzz target named `{unknown}`; the targets are: {}", all.join(", "));
    }
    let bin_dir = build(root, &chosen)?;
    let mut outcomes = Vec::new();
    let mut progress = Progress::new(chosen.len());
    for target in &chosen {
        progress.start(&format!("fuzzing {target} for {} s", options.seconds));
        let outcome = run_target(root, &bin_dir, target, options.seconds)?;
        if options.merge && !outcome.failed {
            merge(root, &bin_dir, target)?;
        }
        progress.finish(&format!("fuzz target {target}"), outcome.figures().trim_start());
        outcomes.push(outcome);
    }
    println!("fuzzing summary ({} s per target):", options.seconds);
    for outcome in &outcomes {
        println!("  {outcome}");
    }
    let bad = outcomes.iter().filter(|outcome| outcome.failed || !outcome.findings.is_empty()).count();
    println!("{} targets fuzzed, {bad} with findings", outcomes.len());
    if bad > 0 {
        println!("findings are in fuzz/regressions/; `cargo test -p fuzz-targets` replays them");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_status_and_final_stats() {
        let line = "#524288\tpulse  cov: 1234 ft: 5678 corp: 90/12Kb lim: 4096 exec/s: 43690 rss: 56Mb";
        assert_eq!(field(line, "cov: "), Some(1234));
        assert_eq!(field(line, "ft: "), Some(5678));
        assert_eq!(field(line, "corp: "), Some(90));
        assert_eq!(field(line, "exec/s: "), Some(43690));
        assert_eq!(final_stat("stat::number_of_executed_units: 2621440", "number_of_executed_units"), Some(2621440));
        assert_eq!(final_stat("stat::peak_rss_mb: 56", "number_of_executed_units"), None);
        assert!(worth_showing(line));
        assert!(!worth_showing("#1234\tNEW    cov: 1 ft: 1 corp: 1/1b"));
        assert!(worth_showing("thread '<unnamed>' panicked at src/lib.rs:1:1:"));
    }

    #[test]
    fn every_target_has_a_committed_corpus_folder() {
        let root = crate::workspace::root();
        let names = targets(&root).expect("runner binaries");
        assert!(!names.is_empty());
        for name in names {
            assert!(root.join("fuzz/corpus").join(&name).is_dir(), "fuzz/corpus/{name} is missing");
        }
    }
}
