//! One boot of the guest: the machine, its kernel command line, its console and how it ended.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::Result;
use qemu::machine::{Machine, QEMU};
use qemu::runner;

use super::report::{Report, parse};

/// Samples per figure (odd, so the median is one of them).
pub const RUNS: usize = 21;
/// IPC round trips averaged into one sample.
pub const IPC_ITERATIONS: usize = 2000;
/// Pages mapped and unmapped in one sample, in requests of 1 and of 64 pages.
pub const PAGES: u64 = 2048;

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
    /// One of our machine files as the guest boots it: the same chipset options, memory, IOMMU and
    /// devices, under TCG.
    pub fn of(machine: &Machine) -> Self {
        let chipset = machine.machine_options.as_ref().map_or("q35".into(), |options| format!("q35,{options}"));
        let mut args = vec!["-accel".into(), "tcg".into(), "-M".into(), chipset];
        args.extend(["-m".into(), format!("{}M", machine.memory_mib)]);
        if let Some(iommu) = &machine.iommu {
            args.extend(["-device".into(), iommu.clone()]);
        }
        args.extend(machine.args.iter().cloned());
        Self { args }
    }

    pub(super) fn command(&self, kernel: &Path, initrd: &Path, append: &str) -> Command {
        let mut command = Command::new(QEMU);
        command.args(&self.args);
        command.args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"]);
        command.arg("-kernel").arg(kernel).arg("-initrd").arg(initrd).arg("-append").arg(append);
        command
    }
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

/// One planned boot: its mode, which cases the program runs, and how long it may take.
#[derive(Clone, Copy, Debug)]
pub(super) struct BootPlan {
    pub(super) mode: Mode,
    pub(super) cases: &'static str,
    pub(super) timeout: Duration,
}

/// One boot: start QEMU, collect its console line by line with arrival times, stop at exit or timeout.
pub(super) fn boot(
    machine: &PeerMachine,
    kernel: &Path,
    initrd: &Path,
    plan: BootPlan,
    console: PathBuf,
) -> Result<Boot> {
    let BootPlan { mode, cases, timeout } = plan;
    let append = format!(
        "console=ttyS0 intel_iommu=on {} quiet linux_peer.cases={cases} linux_peer.runs={RUNS} \
         linux_peer.iterations={IPC_ITERATIONS} linux_peer.pages={PAGES}",
        mode.parameter()
    );
    let mut command = machine.command(kernel, initrd, &append);
    let load = load_average();
    let mut lines = ConsoleLines::default();
    let exit = runner::watch(&mut command, timeout, |at, bytes| lines.feed(at, bytes))?;
    lines.finish(exit.wall);
    let ConsoleLines { lines, to_ready, .. } = lines;
    let stderr = exit.stderr;
    let _ = std::fs::write(&console, format!("# {append}\n{}\n{stderr}", lines.join("\n")));
    let report = judge(parse(&lines), exit.timed_out, timeout, exit.status, &stderr);
    Ok(Boot { mode, cases, append, to_ready, wall: exit.wall, report, console, load })
}

/// The guest console as text lines, and when the ready line arrived.
#[derive(Default)]
pub(super) struct ConsoleLines {
    /// The lines ended so far, without their line ends.
    pub(super) lines: Vec<String>,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// When the first line holding `PEER ready` ended.
    pub(super) to_ready: Option<Duration>,
}

impl ConsoleLines {
    /// Adds console output that arrived `at` after the start.
    pub(super) fn feed(&mut self, at: Duration, bytes: &[u8]) {
        for piece in bytes.split_inclusive(|&byte| byte == b'\n') {
            self.partial.extend_from_slice(piece);
            if piece.ends_with(b"\n") {
                self.end_line(at);
            }
        }
    }

    /// Keeps a last line the console did not end.
    pub(super) fn finish(&mut self, at: Duration) {
        if !self.partial.is_empty() {
            self.end_line(at);
        }
    }

    fn end_line(&mut self, at: Duration) {
        let line = String::from_utf8_lossy(&self.partial).trim_end_matches(['\r', '\n']).to_owned();
        self.partial.clear();
        if self.to_ready.is_none() && line.contains("PEER ready") {
            self.to_ready = Some(at);
        }
        self.lines.push(line);
    }
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
