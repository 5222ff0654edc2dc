//! The whole peer run: fetch, build, boot the guest in every mode, and what it measured.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use qemu::machine::QEMU;

use super::boot::{Boot, BootPlan, Mode, PeerMachine, boot};
use super::guest::{build_program, initramfs};
use super::report::{Measurement, check_complete};
use crate::bench::debian;
use crate::progress::Progress;
use crate::setup;

/// Boots that only measure boot time, besides the two measuring boots.
pub const BOOT_ONLY_RUNS: usize = 3;
/// Timeout of the measuring boot (it takes about 15 s when the host is idle).
const MEASURING_TIMEOUT: Duration = Duration::from_secs(180);
/// Timeout of the other boots (about 3 to 6 s each).
const SHORT_TIMEOUT: Duration = Duration::from_secs(90);
/// Boots per scale machine (ready line only).
pub const SCALE_RUNS: usize = 3;
/// Timeout of a scale boot (Linux probes every function; about 20 s at 250).
const SCALE_TIMEOUT: Duration = Duration::from_secs(300);

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
    /// The boots on each scale machine, in the order asked.
    pub scale: Vec<ScaleBoots>,
}

/// The guest booted to its ready line on one scale machine.
#[derive(Debug)]
pub struct ScaleBoots {
    /// The machine's name.
    pub machine: String,
    /// Its boots.
    pub boots: Vec<Boot>,
}

impl ScaleBoots {
    /// Boot-to-ready wall times, in seconds.
    pub fn boot_seconds(&self) -> Vec<f64> {
        boot_seconds(&self.boots)
    }

    /// Memory in use at the ready line, in KiB.
    pub fn used_kib(&self) -> Vec<f64> {
        used_kib(&self.boots)
    }

    /// The IOMMU groups and PCI functions Linux had at its ready line
    /// (the first boot that said).
    pub fn groups_and_functions(&self) -> Option<(usize, usize)> {
        infos(&self.boots, "iommu ").find_map(|rest| {
            let field =
                |name: &str| rest.split_whitespace().find_map(|word| word.strip_prefix(name)?.parse::<usize>().ok());
            Some((field("groups=")?, field("functions=")?))
        })
    }
}

/// The rest of every `PEER info <prefix>...` line of `boots`.
fn infos<'a>(boots: &'a [Boot], prefix: &'a str) -> impl Iterator<Item = &'a str> {
    boots
        .iter()
        .filter_map(|boot| boot.report.as_ref().ok())
        .flat_map(|report| report.info.iter())
        .filter_map(move |line| line.strip_prefix(prefix))
}

/// Boot-to-ready wall times of every boot that got there, in seconds.
fn boot_seconds(boots: &[Boot]) -> Vec<f64> {
    boots.iter().filter_map(|boot| boot.to_ready).map(|time| time.as_secs_f64()).collect()
}

/// Memory in use at the ready line (MemTotal - MemFree), per boot that reported it, in KiB.
fn used_kib(boots: &[Boot]) -> Vec<f64> {
    infos(boots, "meminfo ")
        .filter_map(|rest| rest.split_whitespace().find_map(|field| field.strip_prefix("used-kib=")))
        .filter_map(|value| value.parse::<f64>().ok())
        .collect()
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
        used_kib(&self.boots)
    }

    /// Boot-to-ready wall times of every boot that got there, in seconds.
    pub fn boot_seconds(&self) -> Vec<f64> {
        boot_seconds(&self.boots)
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

/// Runs the whole peer: packages, guest program, initramfs, every boot on `machine`, and
/// [`SCALE_RUNS`] boots on each of the named `scale` machines. Never fails: whatever stops it becomes
/// [`Outcome::Unavailable`] with the reason.
pub fn run(root: &Path, machine: &PeerMachine, scale: &[(String, PeerMachine)], progress: &mut Progress) -> Outcome {
    let started = Instant::now();
    match run_inner(root, machine, scale, started, progress) {
        Ok(linux) => Outcome::Ran(Box::new(linux)),
        Err(error) => Outcome::Unavailable(format!("{error:#}")),
    }
}

/// The boots [`run`] makes with `scale_machines` scale machines: two
/// measuring ones, [`BOOT_ONLY_RUNS`], and [`SCALE_RUNS`] on each.
pub fn boots(scale_machines: usize) -> usize {
    2 + BOOT_ONLY_RUNS + scale_machines * SCALE_RUNS
}

fn run_inner(
    root: &Path,
    machine: &PeerMachine,
    scale: &[(String, PeerMachine)],
    started: Instant,
    progress: &mut Progress,
) -> Result<Linux> {
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
        let step = format!("linux peer: boot {} ({} mode, cases: {})", index + 1, plan.mode.name(), plan.cases);
        progress.start(&step);
        let boot = boot(machine, &guest.vmlinuz, &initrd, plan, console)?;
        let outcome = match (&boot.report, boot.to_ready) {
            (Ok(report), Some(ready)) => {
                let mut said =
                    format!("ready after {:.2} s, ended after {:.1} s", ready.as_secs_f64(), boot.wall.as_secs_f64());
                if plan.cases == "ipc,vfio"
                    && let Err(error) = check_complete(report)
                {
                    said += &format!("; {error} (see {})", boot.console.display());
                }
                said
            }
            (Err(why), _) => format!("failed: {why}"),
            (Ok(_), None) => format!("never printed its ready line (see {})", boot.console.display()),
        };
        progress.finish(&step, &outcome);
        boots.push(boot);
    }
    let mut scale_boots = Vec::new();
    for (name, machine) in scale {
        let plan = BootPlan { mode: Mode::Strict, cases: "none", timeout: SCALE_TIMEOUT };
        let mut boots = Vec::new();
        for run in 1..=SCALE_RUNS {
            let step = format!("linux peer: machine {name}, boot {run} of {SCALE_RUNS}");
            progress.start(&step);
            let boot = boot(machine, &guest.vmlinuz, &initrd, plan, dir.join(format!("console-{name}-{run}.log")))?;
            match boot.to_ready {
                Some(ready) => progress.finish(&step, &format!("ready after {:.2} s", ready.as_secs_f64())),
                None => {
                    progress.finish(&step, &format!("never printed its ready line (see {})", boot.console.display()))
                }
            }
            boots.push(boot);
        }
        scale_boots.push(ScaleBoots { machine: name.clone(), boots });
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
        scale: scale_boots,
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
