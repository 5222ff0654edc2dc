//! `cargo xtask`: the build tool of the workspace.
//!
//! * `build [--policy FILE]`: builds the kernel and every task, checks the
//!   policy and packs its boot image.
//! * `run [--policy FILE] [--machine NAME] [--timeout SECONDS]`: builds,
//!   boots the system in QEMU, prints its decoded log, and exits with the
//!   system's status.
//! * `test [--scenario NAME]... [--no-host]`: runs the host unit tests and
//!   every QEMU scenario; the last line is `N passed, N failed`.
//! * `lint`: `cargo fmt --check`, and clippy over the host crates and over
//!   the bare-metal crates as they are really built.
//! * `fuzz [--seconds N] [--target NAME]... [--merge]`: coverage-guided
//!   fuzzing of every decoder of outside input (`build/src/fuzz.rs`).
//! * `bench [--no-peer]`: benchmarks beside Linux's figures on the same
//!   machine; writes `target/bench/results.{md,json}`.
//! * `mutate [--mutant NAME]...`: builds deliberately broken servers and
//!   requires a case of the suite to fail against each (`build/src/mutate.rs`).
//! * `groups [--explain] -- <QEMU arguments>`: boots q35 + intel-iommu with
//!   those arguments and prints the IOMMU server's groups (`docs/groups.md`).
//! * `new driver NAME`: a driver crate, its policy and its scenario.
//! * `policy check POLICY [--machine NAME]`: checks a policy, and with a
//!   machine, its device rules against that machine's real groups.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use qemu::machine::Machine;
use qemu::runner::{self, Ending};
use xtask::policy::{self, Problems};
use xtask::{bare_metal, bench, debugger, fuzz, groups, mutate, new, setup, system, test, workspace};

/// The system `cargo xtask run` boots unless told otherwise.
const DEFAULT_POLICY: &str = "system.toml";
/// The machine it boots on.
const DEFAULT_MACHINE: &str = "iommu";

const USAGE: &str = "usage: cargo xtask <command>

commands:
  build [--policy FILE]                       build everything and pack the boot image
  run [--policy FILE] [--machine NAME] [--timeout SECONDS] [--unchecked] [--gdb]
                                              check the policy's device rules against the machine's
                                              IOMMU groups, then boot the system and show its log
                                              (--gdb: start halted for gdb; prints how to attach)
  test [--scenario NAME]... [--no-host] [--soak] [--gdb]
                                              run host unit tests and QEMU scenarios
                                              (--gdb: one scenario, halted for gdb, no host tests)
                                              (--soak: the stress scenarios ten times bigger)
  lint                                        rustfmt and clippy, host and bare-metal
  bench [--no-peer]                           benchmarks beside Linux (target/bench/results.md)
  mutate [--mutant NAME]...                   build deliberately broken servers; the suite must catch each
  fuzz [--seconds N] [--target NAME]... [--merge]
                                              run each fuzz target N s (default 60); crashes go to fuzz/regressions
  groups [--explain] [--timeout SECONDS] -- <QEMU arguments>
                                              boot q35 + intel-iommu with those arguments, print its IOMMU groups
  new driver NAME                             a driver crate, its policy and scenario, ready to boot
                                              (docs/writing-a-driver.md goes on from there)
  policy check POLICY [--machine NAME] [--timeout SECONDS]
                                              check a policy; with a machine, against its real IOMMU groups";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Pulls `--name VALUE` options out of `args`; anything else is an error.
struct Options {
    values: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Options {
    fn parse(args: &[String], valued: &[&str], flags: &[&str]) -> Result<Self> {
        let mut options = Options { values: Vec::new(), flags: Vec::new() };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            if valued.contains(&arg.as_str()) {
                let value = rest.next().with_context(|| format!("{arg} needs a value\n\n{USAGE}"))?;
                options.values.push((arg.clone(), value.clone()));
            } else if flags.contains(&arg.as_str()) {
                options.flags.push(arg.clone());
            } else {
                bail!("unexpected argument `{arg}`\n\n{USAGE}");
            }
        }
        Ok(options)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.values.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.values.iter().filter(|(key, _)| key == name).map(|(_, value)| value.clone()).collect()
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|flag| flag == name)
    }
}

fn dispatch(args: &[String]) -> Result<ExitCode> {
    let root = workspace::root();
    let Some((command, rest)) = args.split_first() else {
        println!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    };
    match command.as_str() {
        "build" => {
            let options = Options::parse(rest, &["--policy"], &[])?;
            let policy = root.join(options.value("--policy").unwrap_or(DEFAULT_POLICY));
            let elves = bare_metal::build(&root, false)?;
            let system = system::prepare(&root, &elves, &policy)?;
            system::print_warnings(&system);
            println!("{}", system::summary(&system.policy));
            println!("kernel: {}\nboot image: {}", system.kernel.display(), system.image.display());
            Ok(ExitCode::SUCCESS)
        }
        "run" => {
            let options = Options::parse(rest, &["--policy", "--machine", "--timeout"], &["--unchecked", "--gdb"])?;
            let policy = PathBuf::from(options.value("--policy").unwrap_or(DEFAULT_POLICY));
            let machine = options.value("--machine").unwrap_or(DEFAULT_MACHINE);
            let timeout = options.value("--timeout").map(str::parse::<u64>).transpose().context("--timeout")?;
            run(
                &root,
                &root.join(policy),
                machine,
                Duration::from_secs(timeout.unwrap_or(60)),
                !options.flag("--unchecked"),
                options.flag("--gdb"),
            )
        }
        "test" => {
            let options = Options::parse(rest, &["--scenario"], &["--no-host", "--soak", "--gdb"])?;
            let scenarios = options.all("--scenario");
            if options.flag("--gdb") {
                let [scenario] = &scenarios[..] else {
                    bail!("--gdb debugs one scenario: name it with --scenario NAME\n\n{USAGE}");
                };
                return test::debug(&root, scenario);
            }
            test::run(&root, &scenarios, !options.flag("--no-host"), options.flag("--soak"))
        }
        "bench" => {
            let options = Options::parse(rest, &[], &["--no-peer"])?;
            bench::run(&root, !options.flag("--no-peer"))
        }
        "mutate" => {
            let options = Options::parse(rest, &["--mutant"], &[])?;
            mutate::run(&root, &options.all("--mutant"))
        }
        "fuzz" => {
            let options = Options::parse(rest, &["--seconds", "--target"], &["--merge"])?;
            let seconds = options.value("--seconds").map(str::parse::<u64>).transpose().context("--seconds")?;
            let targets = options.all("--target");
            let merge = options.flag("--merge");
            fuzz::run(&root, &fuzz::Options { seconds: seconds.unwrap_or(fuzz::DEFAULT_SECONDS), targets, merge })
        }
        "lint" => {
            Options::parse(rest, &[], &[])?;
            lint(&root)
        }
        "groups" => {
            // Everything after `--` goes to QEMU untouched.
            let (ours, qemu_args) = match rest.iter().position(|arg| arg == "--") {
                Some(split) => (&rest[..split], &rest[split + 1..]),
                None => (rest, &[][..]),
            };
            let options = Options::parse(ours, &["--timeout"], &["--explain"])
                .context("QEMU arguments go after `--`: cargo xtask groups -- -device edu")?;
            let timeout = timeout(&options)?;
            show_groups(&root, qemu_args, options.flag("--explain"), timeout)
        }
        "policy" => {
            let Some((subcommand, rest)) = rest.split_first() else { bail!("policy needs a subcommand\n\n{USAGE}") };
            if subcommand != "check" {
                bail!("unknown policy subcommand `{subcommand}`\n\n{USAGE}");
            }
            let Some((path, rest)) = rest.split_first().filter(|(path, _)| !path.starts_with("--")) else {
                bail!("policy check needs a policy file\n\n{USAGE}");
            };
            let options = Options::parse(rest, &["--machine", "--timeout"], &[])?;
            let timeout = timeout(&options)?;
            check_policy(&root, path, options.value("--machine"), timeout)
        }
        "new" => match rest {
            [kind, name] if kind == "driver" => {
                new::new_driver(&root, name)?;
                Ok(ExitCode::SUCCESS)
            }
            _ => bail!("usage: cargo xtask new driver NAME\n\n{USAGE}"),
        },
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

fn run(
    root: &std::path::Path,
    policy: &std::path::Path,
    machine: &str,
    timeout: Duration,
    checked: bool,
    gdb: bool,
) -> Result<ExitCode> {
    setup::ensure_qemu()?;
    let machine = Machine::load(root, machine)?;
    let elves = bare_metal::build(root, false)?;
    let system = system::prepare(root, &elves, policy)?;
    system::print_warnings(&system);
    if checked && !system.policy.devices.is_empty() {
        // The device rules are checked against this machine's real groups
        // first: a mixed group is refused here, before anything boots.
        let booted = groups::boot::boot_for_policy(root, &elves, &machine, groups::boot::DEFAULT_TIMEOUT, policy)?;
        let result = policy::machine::check(&system.policy, &machine.name, machine.memory_mib, &booted.groups);
        if !result.problems.is_empty() {
            let found = count(result.problems.len(), "problem");
            eprintln!("{}", Problems { path: policy.to_path_buf(), problems: result.problems });
            eprintln!(
                "{}: {found} on machine `{}`; not booted (--unchecked boots it anyway, and the servers refuse the mix at run time)",
                policy.display(),
                machine.name
            );
            return Ok(ExitCode::FAILURE);
        }
        eprintln!("device rules checked against machine `{}`'s IOMMU groups", machine.name);
    }
    eprintln!("booting `{}` on machine `{}` ({})", system.policy.description, machine.name, machine.description);
    let mut command = machine.command(&system.kernel, &system.image)?;
    let timeout = if gdb {
        debugger::announce(&debugger::prepare(root, "run", &system, &elves, &mut command)?);
        debugger::SESSION
    } else {
        timeout
    };
    let run = runner::run(command, &system.tables, timeout, |line| println!("{line}"))?;
    let first_task_line =
        run.lines.iter().find(|line| line.source != "kernel" && line.source != "console").and_then(|line| line.micros);
    if let Some(micros) = first_task_line {
        eprintln!("first task log line at {:.3} s of QEMU time", micros as f64 / 1e6);
    }
    eprintln!("{} after {:.2} s", run.ending, run.wall.as_secs_f64());
    Ok(match run.ending {
        Ending::Status(status) => ExitCode::from(status),
        _ => ExitCode::FAILURE,
    })
}

/// The `--timeout` of a command that boots, or the default.
fn timeout(options: &Options) -> Result<Duration> {
    let seconds = options.value("--timeout").map(str::parse::<u64>).transpose().context("--timeout")?;
    Ok(seconds.map_or(groups::boot::DEFAULT_TIMEOUT, Duration::from_secs))
}

/// `cargo xtask groups`: boots the machine the arguments describe and
/// prints its groups on stdout; progress and timing go to stderr.
fn show_groups(root: &std::path::Path, args: &[String], explain: bool, timeout: Duration) -> Result<ExitCode> {
    groups::boot::check_arguments(args)?;
    setup::ensure_qemu()?;
    let elves = bare_metal::build(root, false)?;
    let machine = Machine::ad_hoc(args.to_vec());
    eprintln!(
        "booting q35 + intel-iommu with: {}",
        if args.is_empty() { "(QEMU's defaults)".into() } else { args.join(" ") }
    );
    let booted = groups::boot(root, &elves, &machine, timeout)?;
    print!("{}", booted.groups.listing(explain));
    eprintln!(
        "{} PCI functions in {} IOMMU groups; the boot took {:.2} s",
        booted.groups.function_count(),
        booted.groups.groups.len(),
        booted.run.wall.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask policy check`: the policy's own checks, then, with a
/// machine, its device rules against the groups that machine really forms.
fn check_policy(root: &std::path::Path, path: &str, machine: Option<&str>, timeout: Duration) -> Result<ExitCode> {
    // A path as typed (relative to where the command runs), else from the root.
    let path = if std::path::Path::new(path).exists() { PathBuf::from(path) } else { root.join(path) };
    let loaded = policy::load(&path, &system::task_binaries(root)?);
    let policy = match loaded {
        Ok(policy) => policy,
        Err(error) => {
            match error.downcast_ref::<Problems>() {
                Some(problems) => {
                    println!("{problems}");
                    eprintln!("{}: {}", path.display(), count(problems.problems.len(), "problem"));
                    if machine.is_some() {
                        eprintln!("(the machine check runs once the policy itself is valid)");
                    }
                }
                None => eprintln!("error: {error:#}"),
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    for warning in &policy.warnings {
        println!("{}:{}: {}", path.display(), warning.line, warning.message);
    }
    let Some(machine) = machine else {
        println!("{}: valid ({} tasks, {} device rules)", path.display(), policy.tasks.len(), policy.devices.len());
        return Ok(ExitCode::SUCCESS);
    };
    setup::ensure_qemu()?;
    let machine = Machine::load(root, machine)?;
    let elves = bare_metal::build(root, false)?;
    eprintln!("booting machine `{}` to learn its IOMMU groups...", machine.name);
    let booted = groups::boot::boot_for_policy(root, &elves, &machine, timeout, &path)?;
    eprintln!(
        "machine `{}`: {} PCI functions in {} IOMMU groups (boot took {:.2} s)",
        machine.name,
        booted.groups.function_count(),
        booted.groups.groups.len(),
        booted.run.wall.as_secs_f64()
    );
    let result = policy::machine::check(&policy, &machine.name, machine.memory_mib, &booted.groups);
    for note in &result.notes {
        println!("note: {}:{}: {}", path.display(), note.line, note.message);
    }
    if result.problems.is_empty() {
        println!("{}: valid on machine `{}`", path.display(), machine.name);
        return Ok(ExitCode::SUCCESS);
    }
    let found = count(result.problems.len(), "problem");
    println!("{}", Problems { path: path.clone(), problems: result.problems });
    eprintln!("{}: {found} on machine `{}`", path.display(), machine.name);
    Ok(ExitCode::FAILURE)
}

/// "1 problem", "2 problems".
fn count(number: usize, noun: &str) -> String {
    format!("{number} {noun}{}", if number == 1 { "" } else { "s" })
}

fn lint(root: &std::path::Path) -> Result<ExitCode> {
    let cargo = |args: &[&str]| -> Result<bool> {
        Ok(std::process::Command::new(env!("CARGO")).current_dir(root).args(args).status()?.success())
    };
    let formatted = cargo(&["fmt", "--all", "--check"])?;
    let host = cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    let bare = bare_metal::clippy(root)?;
    for (what, ok) in [("rustfmt", formatted), ("clippy (host)", host), ("clippy (bare-metal)", bare)] {
        eprintln!("{what}: {}", if ok { "clean" } else { "PROBLEMS" });
    }
    Ok(if formatted && host && bare { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
