//! The Linux peer run: Debian's kernel booted in the benchmark machine, running `linux-peer` from an
//! initramfs, its result lines parsed into figures.
//!
//! Boots, all under TCG on the same machine shape as our own benchmarks:
//! 1. strict (`iommu.strict=1`): IPC and VFIO: "the" Linux figures (synchronous invalidation, like ours);
//! 2. lazy (`iommu.strict=0`, Linux's default on Intel): VFIO only, kept as an extra;
//! 3. [`BOOT_ONLY_RUNS`] more boots that only print the ready line, so boot time has a spread too.
//!
//! Boot time is host wall time from starting QEMU to receiving the guest program's `PEER ready` line
//! (firmware, kernel, initramfs and `/init` included), the same start point our own boot figure uses.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use object::Endianness;
use object::elf::PT_INTERP;
use object::read::elf::{ElfFile64, ProgramHeader};
use qemu::machine::QEMU;

use super::cpio::Archive;
use super::debian::{self, Guest};
use crate::{setup, workspace};

/// Samples per figure (odd, so the median is one of them).
pub const RUNS: usize = 21;
/// IPC round trips averaged into one sample.
pub const IPC_ITERATIONS: usize = 2000;
/// Pages mapped and unmapped in one sample, in requests of 1 and of 64 pages.
pub const PAGES: u64 = 2048;
/// Boots that only measure boot time, besides the two measuring boots.
pub const BOOT_ONLY_RUNS: usize = 3;
/// Timeout of the measuring boot (it takes about 15 s when the host is idle).
const MEASURING_TIMEOUT: Duration = Duration::from_secs(180);
/// Timeout of the other boots (about 3 to 6 s each).
const SHORT_TIMEOUT: Duration = Duration::from_secs(90);

/// Invalidation mode of the guest's IOMMU DMA domains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `iommu.strict=1`: every unmap flushes the IOTLB before it returns.
    Strict,
    /// `iommu.strict=0`: DMA-API unmaps are batched in a flush queue (Linux's default on Intel).
    Lazy,
}

impl Mode {
    fn parameter(self) -> &'static str {
        match self {
            Mode::Strict => "iommu.strict=1",
            Mode::Lazy => "iommu.strict=0",
        }
    }

    /// Lower-case name, for labels.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Strict => "strict",
            Mode::Lazy => "lazy",
        }
    }
}

/// The QEMU machine the peer boots on: the benchmark shape, minus what the guest adds (kernel, initrd).
#[derive(Clone, Debug)]
pub struct PeerMachine {
    /// Arguments after `qemu-system-x86_64` and before `-kernel`.
    pub args: Vec<String>,
}

impl Default for PeerMachine {
    /// The benchmark machine: q35, 512 MiB, one vCPU, `intel-iommu`, one `edu`, TCG.
    fn default() -> Self {
        let args = ["-accel", "tcg", "-M", "q35", "-m", "512M", "-device", "intel-iommu", "-device", "edu"];
        Self { args: args.iter().map(|arg| arg.to_string()).collect() }
    }
}

impl PeerMachine {
    fn command(&self, kernel: &Path, initrd: &Path, append: &str) -> Command {
        let mut command = Command::new(QEMU);
        command.args(&self.args);
        command.args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"]);
        command.arg("-kernel").arg(kernel).arg("-initrd").arg(initrd).arg("-append").arg(append);
        command
    }
}

/// What the peer run produced: Linux's figures, or why there are none on this machine.
#[derive(Debug)]
pub enum Outcome {
    /// The guest booted at least once; individual figures may still have failed (see [`Linux::figure`]).
    Ran(Box<Linux>),
    /// Nothing could be measured, and why (no Debian packages reachable, no QEMU, build failure...).
    Unavailable(String),
}

/// Everything measured on Linux in this run.
#[derive(Debug)]
pub struct Linux {
    /// `package version` of the kernel and of busybox.
    pub packages: Vec<String>,
    /// `uname -r` as the guest reported it.
    pub release: String,
    /// QEMU's `--version` line.
    pub qemu_version: String,
    /// The machine's QEMU arguments.
    pub machine: Vec<String>,
    /// Modules loaded in the guest, in order.
    pub modules: Vec<String>,
    /// Every boot, in the order run.
    pub boots: Vec<Boot>,
    /// How long the whole peer run took (fetching, building, all boots).
    pub wall: Duration,
    /// Bytes of the files QEMU boots: the compressed kernel and the initramfs.
    pub boot_files: u64,
}

/// One boot of the guest.
#[derive(Debug)]
pub struct Boot {
    /// Its invalidation mode.
    pub mode: Mode,
    /// Which cases it ran (`ipc,vfio`, `vfio` or `none`).
    pub cases: &'static str,
    /// The kernel command line.
    pub append: String,
    /// Wall time from starting QEMU to the `PEER ready` line, if it came.
    pub to_ready: Option<Duration>,
    /// Wall time of the whole boot.
    pub wall: Duration,
    /// What the guest reported, or why the boot failed.
    pub report: Result<Report, String>,
    /// Where its full console is kept.
    pub console: PathBuf,
    /// The host's 1-minute load average just before the boot (TCG speed depends on it).
    pub load: f64,
}

/// One figure's samples: per operation, in nanoseconds and in TSC cycles.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measurement {
    /// Nanoseconds per round trip or per page, one value per run.
    pub nanos: Vec<f64>,
    /// TSC cycles per round trip or per page, one value per run.
    pub cycles: Vec<f64>,
}

/// The parsed `PEER` lines of one boot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// `CLOCK_BOOTTIME` when the program started, in nanoseconds.
    pub ready_boottime_ns: Option<u64>,
    /// `PEER info` lines, without the prefix.
    pub info: Vec<String>,
    /// Samples by figure name.
    pub figures: BTreeMap<String, Measurement>,
    /// `PEER error` lines: (figure or stage, message).
    pub errors: Vec<(String, String)>,
    /// Whether `PEER done` was seen (the program got to its end).
    pub done: bool,
}

/// Parses a guest console. Only lines holding `PEER ` count; anything before it on the line (a kernel
/// message that interleaved) is skipped, and malformed lines are reported as errors, not dropped.
pub fn parse(lines: &[String]) -> Report {
    let mut report = Report::default();
    for line in lines {
        let Some(at) = line.find("PEER ") else { continue };
        let mut words = line[at + 5..].split_whitespace();
        match words.next() {
            Some("ready") => report.ready_boottime_ns = words.next().and_then(|ns| ns.parse().ok()),
            Some("info") => report.info.push(words.collect::<Vec<_>>().join(" ")),
            Some("done") => report.done = true,
            Some("error") => {
                let what = words.next().unwrap_or("?").to_owned();
                report.errors.push((what, words.collect::<Vec<_>>().join(" ")));
            }
            Some("sample") => {
                let (Some(figure), Some(unit)) = (words.next(), words.next()) else {
                    report.errors.push(("parse".into(), format!("short sample line `{line}`")));
                    continue;
                };
                let values: Result<Vec<f64>, _> = words.map(str::parse::<f64>).collect();
                let Ok(values) = values else {
                    report.errors.push((figure.to_owned(), format!("unreadable samples in `{line}`")));
                    continue;
                };
                let measurement = report.figures.entry(figure.to_owned()).or_default();
                if unit.starts_with("ns") {
                    measurement.nanos = values;
                } else if unit.starts_with("cycles") {
                    measurement.cycles = values;
                }
            }
            _ => report.errors.push(("parse".into(), format!("unknown line `{line}`"))),
        }
    }
    report
}

impl Linux {
    /// The samples of `figure` from the boot in `mode` that ran it, or why there are none.
    pub fn figure(&self, mode: Mode, figure: &str) -> Result<&Measurement, String> {
        let case = if figure.starts_with("vfio") { "vfio" } else { "ipc" };
        let boot = self
            .boots
            .iter()
            .find(|boot| boot.mode == mode && boot.cases.split(',').any(|c| c == case))
            .ok_or_else(|| format!("no {} boot ran the {case} case", mode.name()))?;
        let report = boot.report.as_ref().map_err(Clone::clone)?;
        if let Some(measurement) = report.figures.get(figure).filter(|m| !m.nanos.is_empty()) {
            return Ok(measurement);
        }
        let error = report.errors.iter().find(|(what, _)| what == figure || what == case || what == "run");
        Err(match error {
            Some((_, message)) => message.clone(),
            None if !report.done => format!("the guest program stopped early (see {})", boot.console.display()),
            None => format!("the guest printed no {figure} samples"),
        })
    }

    /// Memory in use at the ready line (MemTotal - MemFree), per boot that reported it, in KiB.
    pub fn used_kib(&self) -> Vec<f64> {
        self.boots
            .iter()
            .filter_map(|boot| boot.report.as_ref().ok())
            .flat_map(|report| report.info.iter())
            .filter_map(|line| line.strip_prefix("meminfo "))
            .filter_map(|rest| rest.split_whitespace().find_map(|field| field.strip_prefix("used-kib=")))
            .filter_map(|value| value.parse::<f64>().ok())
            .collect()
    }

    /// Boot-to-ready wall times of every boot that got there, in seconds.
    pub fn boot_seconds(&self) -> Vec<f64> {
        self.boots.iter().filter_map(|boot| boot.to_ready).map(|time| time.as_secs_f64()).collect()
    }

    /// The guest's own `CLOCK_BOOTTIME` at the ready line, per boot, in seconds.
    pub fn boot_clock_seconds(&self) -> Vec<f64> {
        self.boots
            .iter()
            .filter_map(|boot| boot.report.as_ref().ok()?.ready_boottime_ns)
            .map(|ns| ns as f64 / 1e9)
            .collect()
    }
}

/// Runs the whole peer: packages, guest program, initramfs, and every boot. Never fails: whatever stops
/// it becomes [`Outcome::Unavailable`] with the reason.
pub fn run(root: &Path, machine: &PeerMachine) -> Outcome {
    let started = Instant::now();
    match run_inner(root, machine, started) {
        Ok(linux) => Outcome::Ran(Box::new(linux)),
        Err(error) => Outcome::Unavailable(format!("{error:#}")),
    }
}

fn run_inner(root: &Path, machine: &PeerMachine, started: Instant) -> Result<Linux> {
    let dir = root.join("target").join("linux-peer");
    std::fs::create_dir_all(&dir)?;
    setup::ensure_qemu()?;
    let guest = debian::prepare(&dir.join("packages")).context("fetching Debian's kernel and busybox")?;
    let program = build_program(root, &dir.join("cargo")).context("building the linux-peer program")?;
    let initrd = dir.join("initramfs.cpio");
    std::fs::write(&initrd, initramfs(&guest, &std::fs::read(&program)?)?)?;

    let mut plan = vec![
        BootPlan { mode: Mode::Strict, cases: "ipc,vfio", timeout: MEASURING_TIMEOUT },
        BootPlan { mode: Mode::Lazy, cases: "vfio", timeout: SHORT_TIMEOUT },
    ];
    plan.extend(std::iter::repeat_n(
        BootPlan { mode: Mode::Strict, cases: "none", timeout: SHORT_TIMEOUT },
        BOOT_ONLY_RUNS,
    ));
    let mut boots = Vec::new();
    for (index, plan) in plan.into_iter().enumerate() {
        let console = dir.join(format!("console-{index}-{}-{}.log", plan.mode.name(), plan.cases.replace(',', "-")));
        eprintln!("linux peer: boot {} ({} mode, cases: {})...", index + 1, plan.mode.name(), plan.cases);
        let boot = boot(machine, &guest.vmlinuz, &initrd, plan, console)?;
        match (&boot.report, boot.to_ready) {
            (Ok(report), Some(ready)) => {
                eprintln!("  ready after {:.2} s, ended after {:.1} s", ready.as_secs_f64(), boot.wall.as_secs_f64());
                if plan.cases == "ipc,vfio"
                    && let Err(error) = check_complete(report)
                {
                    eprintln!("  {error} (see {})", boot.console.display());
                }
            }
            (Err(why), _) => eprintln!("  failed: {why}"),
            (Ok(_), None) => eprintln!("  never printed its ready line (see {})", boot.console.display()),
        }
        boots.push(boot);
    }
    let info = |prefix: &str| {
        boots
            .iter()
            .filter_map(|boot| boot.report.as_ref().ok())
            .flat_map(|report| report.info.iter())
            .find_map(|line| line.strip_prefix(prefix).map(|rest| rest.trim().to_owned()))
    };
    let release = info("kernel ").unwrap_or_else(|| "unknown".into());
    let size = |path: &Path| std::fs::metadata(path).map_or(0, |meta| meta.len());
    let boot_files = size(&guest.vmlinuz) + size(&initrd);
    Ok(Linux {
        packages: vec![guest.kernel_package.clone(), guest.busybox_package.clone()],
        release,
        qemu_version: qemu_version(),
        machine: machine.args.clone(),
        modules: guest.modules.iter().map(|module| module.name.clone()).collect(),
        boots,
        wall: started.elapsed(),
        boot_files,
    })
}

fn qemu_version() -> String {
    Command::new(QEMU)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// Builds `linux-peer` as a static executable for the guest and checks it has no ELF interpreter.
fn build_program(root: &Path, target_dir: &Path) -> Result<PathBuf> {
    let flags = ["-Ctarget-feature=+crt-static", "-Cstrip=debuginfo"];
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["build", "--quiet", "--release", "-p", "linux-peer", "--target", workspace::TARGET])
        .arg("--target-dir")
        .arg(target_dir)
        .env_remove("RUSTFLAGS")
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\u{1f}"))
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build -p linux-peer failed");
    }
    let program = target_dir.join(workspace::TARGET).join("release").join("linux-peer");
    let bytes = std::fs::read(&program).with_context(|| format!("reading {}", program.display()))?;
    let elf = ElfFile64::<Endianness>::parse(bytes.as_slice()).context("linux-peer is not a 64-bit ELF")?;
    if elf.elf_program_headers().iter().any(|header| header.p_type(elf.endian()) == PT_INTERP) {
        bail!("{} is dynamically linked; the initramfs has no libc", program.display());
    }
    Ok(program)
}

/// The guest's `/init`: mount what the program reads, run it, power off (QEMU exits, `-no-reboot`).
const INIT: &str = "#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/peer
/bin/busybox poweroff -f
";

/// The initramfs: busybox, `/init`, the program, and the modules with their load order.
fn initramfs(guest: &Guest, program: &[u8]) -> Result<Vec<u8>> {
    let mut archive = Archive::new();
    for dir in ["/bin", "/dev", "/proc", "/sys", "/modules"] {
        archive.directory(dir);
    }
    // The console node, so /init has stdin/stdout before devtmpfs is mounted.
    archive.char_device("/dev/console", 0o600, 5, 1);
    archive.file("/bin/busybox", 0o755, &std::fs::read(&guest.busybox)?);
    archive.file("/init", 0o755, INIT.as_bytes());
    archive.file("/peer", 0o755, program);
    let mut order = String::new();
    for module in &guest.modules {
        archive.file(&format!("/modules/{}", module.file_name), 0o644, &module.bytes);
        order.push_str(&module.file_name);
        order.push('\n');
    }
    archive.file("/modules/order", 0o644, order.as_bytes());
    Ok(archive.finish())
}

/// One planned boot: its mode, which cases the program runs, and how long it may take.
#[derive(Clone, Copy, Debug)]
struct BootPlan {
    mode: Mode,
    cases: &'static str,
    timeout: Duration,
}

/// One boot: start QEMU, collect its console line by line with arrival times, stop at exit or timeout.
fn boot(machine: &PeerMachine, kernel: &Path, initrd: &Path, plan: BootPlan, console: PathBuf) -> Result<Boot> {
    let BootPlan { mode, cases, timeout } = plan;
    let append = format!(
        "console=ttyS0 intel_iommu=on {} quiet linux_peer.cases={cases} linux_peer.runs={RUNS} \
         linux_peer.iterations={IPC_ITERATIONS} linux_peer.pages={PAGES}",
        mode.parameter()
    );
    let mut command = machine.command(kernel, initrd, &append);
    let load = load_average();
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {QEMU}"))?;
    let stdout = child.stdout.take().context("QEMU stdout")?;
    let mut stderr = child.stderr.take().context("QEMU stderr")?;
    let (sender, receiver) = mpsc::channel::<(Duration, String)>();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = Vec::new();
        while stdout.read_until(b'\n', &mut line).is_ok_and(|read| read > 0) {
            let text = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned();
            if sender.send((started.elapsed(), text)).is_err() {
                break;
            }
            line.clear();
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });

    let mut lines = Vec::new();
    let mut to_ready = None;
    let mut timed_out = false;
    loop {
        let Some(left) = timeout.checked_sub(started.elapsed()) else {
            timed_out = true;
            break;
        };
        match receiver.recv_timeout(left) {
            Ok((at, line)) => {
                if to_ready.is_none() && line.contains("PEER ready") {
                    to_ready = Some(at);
                }
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if timed_out {
        let _ = child.kill();
    }
    let status = child.wait().context("waiting for QEMU")?;
    let wall = started.elapsed();
    let _ = reader.join();
    lines.extend(receiver.try_iter().map(|(_, line)| line));
    let stderr = errors.join().unwrap_or_default();
    let _ = std::fs::write(&console, format!("# {append}\n{}\n{stderr}", lines.join("\n")));
    let report = judge(parse(&lines), timed_out, timeout, status, &stderr);
    Ok(Boot { mode, cases, append, to_ready, wall, report, console, load })
}

/// The host's 1-minute load average (0 if unreadable).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A boot's report, unless QEMU itself failed (or hung) before the program could say anything.
fn judge(
    mut report: Report,
    timed_out: bool,
    timeout: Duration,
    status: ExitStatus,
    stderr: &str,
) -> Result<Report, String> {
    if report.ready_boottime_ns.is_some() {
        if timed_out && !report.done {
            report.errors.push(("run".into(), format!("the guest was stopped after {} s", timeout.as_secs())));
        }
        return Ok(report);
    }
    if timed_out {
        return Err(format!("the guest did not reach its program within {} s", timeout.as_secs()));
    }
    let stderr = stderr.trim();
    Err(format!(
        "QEMU exited ({status}) before the program started{}{stderr}",
        if stderr.is_empty() { "" } else { ": " }
    ))
}

/// Figures the measuring boot must report.
const EXPECTED: &[&str] = &["pipe_rtt", "futex_rtt", "vfio_map_1", "vfio_unmap_1", "vfio_map_64", "vfio_unmap_64"];

/// An error naming any expected figure a measuring boot's report lacks.
pub fn check_complete(report: &Report) -> Result<()> {
    let missing: Vec<&str> =
        EXPECTED.iter().copied().filter(|name| report.figures.get(*name).is_none_or(|m| m.nanos.is_empty())).collect();
    if missing.is_empty() { Ok(()) } else { Err(anyhow!("missing figures: {}", missing.join(", "))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    const CONSOLE: &str = "\
[    0.000000] Linux version 6.1.0-56-amd64
PEER ready 1859761075
PEER info kernel 6.1.0-56-amd64
PEER info meminfo total-kib=480000 free-kib=439000 used-kib=41000
PEER sample pipe_rtt ns 71551.7 77135.2 74565.6
PEER sample pipe_rtt cycles 185897.3 200259.9 193589.9
[    2.01] some kernel noise PEER sample futex_rtt ns 55715.8 58669.0
PEER sample futex_rtt cycles 144773.6 152320.0
PEER info edu 0000:00:03.0 group 3 default-domain DMA
PEER sample vfio_map_1 ns_per_page 7332.5 6467.6
PEER sample vfio_map_1 cycles_per_page 19034.0 16787.8
PEER error vfio VFIO_IOMMU_UNMAP_DMA: Invalid argument (os error 22)
PEER done
[    2.188673] reboot: Power down";

    #[test]
    fn peer_lines_are_parsed_and_noise_ignored() {
        let report = parse(&lines(CONSOLE));
        assert_eq!(report.ready_boottime_ns, Some(1_859_761_075));
        assert!(report.done);
        assert_eq!(
            report.info,
            [
                "kernel 6.1.0-56-amd64",
                "meminfo total-kib=480000 free-kib=439000 used-kib=41000",
                "edu 0000:00:03.0 group 3 default-domain DMA"
            ]
        );
        assert_eq!(report.figures["pipe_rtt"].nanos, [71551.7, 77135.2, 74565.6]);
        assert_eq!(report.figures["pipe_rtt"].cycles.len(), 3);
        assert_eq!(report.figures["futex_rtt"].nanos, [55715.8, 58669.0], "prefixed by kernel noise");
        assert_eq!(report.figures["vfio_map_1"].cycles, [19034.0, 16787.8]);
        assert_eq!(report.errors, [("vfio".to_owned(), "VFIO_IOMMU_UNMAP_DMA: Invalid argument (os error 22)".into())]);
        let missing = check_complete(&report).expect_err("unmap and batched figures are missing");
        assert!(missing.to_string().contains("vfio_unmap_1, vfio_map_64"), "{missing}");
    }

    #[test]
    fn malformed_lines_become_errors() {
        let report = parse(&lines("PEER sample x ns 1.0 oops\nPEER sample\nPEER bogus\nPEER ready notanumber"));
        assert_eq!(report.errors.len(), 3);
        assert!(report.figures.is_empty());
        assert_eq!(report.ready_boottime_ns, None);
    }

    fn linux(report: Result<Report, String>) -> Linux {
        Linux {
            packages: vec![],
            release: "6.1".into(),
            qemu_version: "7.2".into(),
            machine: vec![],
            modules: vec![],
            boots: vec![Boot {
                mode: Mode::Strict,
                cases: "ipc,vfio",
                append: String::new(),
                to_ready: Some(Duration::from_millis(2500)),
                wall: Duration::from_secs(10),
                report,
                console: PathBuf::from("console.log"),
                load: 0.5,
            }],
            wall: Duration::from_secs(12),
            boot_files: 30 << 20,
        }
    }

    #[test]
    fn figures_are_found_by_mode_or_explained() {
        let linux = linux(Ok(parse(&lines(CONSOLE))));
        assert_eq!(linux.figure(Mode::Strict, "futex_rtt").expect("measured").nanos.len(), 2);
        let error = linux.figure(Mode::Strict, "vfio_unmap_64").expect_err("vfio failed");
        assert!(error.contains("Invalid argument"), "{error}");
        let error = linux.figure(Mode::Lazy, "vfio_map_1").expect_err("no lazy boot");
        assert!(error.contains("no lazy boot"), "{error}");
        assert_eq!(linux.boot_seconds(), [2.5]);
        assert_eq!(linux.boot_clock_seconds(), [1.859761075]);
        assert_eq!(linux.used_kib(), [41_000.0]);
        let failed = self::linux(Err("QEMU exited".into()));
        assert_eq!(failed.figure(Mode::Strict, "pipe_rtt").expect_err("boot failed"), "QEMU exited");
        let early = self::linux(Ok(parse(&lines("PEER ready 5"))));
        assert!(early.figure(Mode::Strict, "pipe_rtt").expect_err("stopped").contains("stopped early"));
    }

    #[test]
    fn the_initramfs_holds_init_program_busybox_and_modules_in_order() {
        let busybox = std::env::temp_dir().join(format!("xtask-busybox-{}", std::process::id()));
        std::fs::write(&busybox, b"BUSYBOX").expect("temp file");
        let module = |name: &str, file_name: &str| debian::Module {
            name: name.into(),
            file_name: file_name.into(),
            bytes: format!("ELF {name}").into_bytes(),
        };
        let guest = Guest {
            kernel_package: "linux-image-6.1.0-56-amd64 6.1.192-2".into(),
            busybox_package: "busybox-static 1:1.35.0".into(),
            vmlinuz: PathBuf::from("/nonexistent"),
            busybox: busybox.clone(),
            modules: vec![module("vfio", "vfio.ko"), module("vfio_pci", "vfio-pci.ko")],
        };
        let archive = initramfs(&guest, b"PROGRAM").expect("archive");
        let _ = std::fs::remove_file(&busybox);
        let text = String::from_utf8_lossy(&archive);
        for needle in ["bin/busybox\0", "BUSYBOX", "init\0", "/peer\n", "peer\0", "PROGRAM", "dev/console\0"] {
            assert!(text.contains(needle), "{needle:?} missing");
        }
        assert!(text.contains("modules/vfio-pci.ko\0"));
        assert!(text.contains("vfio.ko\nvfio-pci.ko\n"), "load order file");
        assert!(text.contains("TRAILER!!!\0"));
    }

    #[test]
    fn the_default_machine_is_the_benchmark_shape_under_tcg() {
        let command = PeerMachine::default().command(Path::new("/k"), Path::new("/i"), "console=ttyS0");
        let args: Vec<String> = command.get_args().map(|arg| arg.to_string_lossy().into_owned()).collect();
        let joined = args.join(" ");
        assert!(joined.starts_with("-accel tcg -M q35 -m 512M -device intel-iommu -device edu"), "{joined}");
        assert!(joined.contains("-serial stdio -no-reboot"));
        assert!(joined.ends_with("-kernel /k -initrd /i -append console=ttyS0"));
        assert!(!joined.contains("kvm"));
    }
}
