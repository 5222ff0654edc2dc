//! Our side of the benchmarks: boots `qemu/policies/bench.toml` on the
//! benchmark machine several times and reads the bench task's `BENCH`
//! lines and the kernel's memory lines.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use object::read::elf::{ElfFile64, ProgramHeader};
use object::{Endianness, elf::PT_LOAD};
use qemu::machine::Machine;
use qemu::runner::{self, Ending};

use crate::progress::Progress;
use crate::{bare_metal, system};

/// Boots measured; each gives one boot-time sample and its IPC samples.
pub const RUNS: usize = 3;
/// One-page frames the bench task maps per sample (`qemu/tasks/bench/src/dma.rs`).
pub const DMA_SINGLES: usize = 48;
/// Batched frames it maps per sample.
pub const DMA_BATCHES: usize = 32;
/// Pages per batched frame.
pub const DMA_BATCH_PAGES: usize = 64;

const POLICY: &str = "qemu/policies/bench.toml";
const MACHINE: &str = "bench";
const TIMEOUT: Duration = Duration::from_secs(300);

/// One DMA figure's samples.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Throughput {
    /// 4 KiB pages per second, one sample per timed phase.
    pub pages_per_second: Vec<f64>,
    /// TSC cycles per page, the same samples.
    pub cycles_per_page: Vec<f64>,
}

impl Throughput {
    fn push(&mut self, cycles: f64, pages: f64, cycles_per_us: f64) {
        self.pages_per_second.push(pages * cycles_per_us * 1e6 / cycles);
        self.cycles_per_page.push(cycles / pages);
    }
}

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
    /// Map, one page per request.
    pub map1: Throughput,
    /// Unmap, one page per request.
    pub unmap1: Throughput,
    /// Map, 64 pages per request.
    pub map64: Throughput,
    /// Unmap, 64 pages per request.
    pub unmap64: Throughput,
    /// Blocked DMA to the owner holding the fault record, nanoseconds.
    pub fault_ns: Vec<f64>,
    /// The same samples in cycles.
    pub fault_cycles: Vec<f64>,
    /// The fault samples' resolution (one poll of the device), nanoseconds.
    pub fault_poll_ns: Vec<f64>,
    /// How long the poll that sees an unblocked transfer end takes
    /// (QEMU's edu model doing the transfer), nanoseconds.
    pub fault_model_ns: Vec<f64>,
    /// KiB of RAM in use once every task is loaded (the kernel's count),
    /// per run.
    pub resident_kib: Vec<f64>,
    /// Bytes of the files booted: the kernel's loaded segments and the
    /// boot image.
    pub boot_files: u64,
    /// The host's 1-minute load average before each boot.
    pub loads: Vec<f64>,
}

/// Boots the benchmark system [`RUNS`] times, a step of `progress` each.
pub fn run(root: &Path, progress: &mut Progress) -> Result<Ours> {
    let machine = Machine::load(root, MACHINE)?;
    let elves = bare_metal::build(root, true)?;
    let system = system::prepare(root, &elves, &root.join(POLICY))?;
    let mut ours = Ours { boot_files: boot_files(&system.kernel, &system.image)?, ..Ours::default() };
    for run in 1..=RUNS {
        let step = format!("ours: boot {run} of {RUNS}");
        progress.start(&step);
        ours.loads.push(super::peer::load_average());
        let started = Instant::now();
        let mut first_task_line = None;
        let outcome = runner::run(machine.command(&system.kernel, &system.image)?, &system.tables, TIMEOUT, |line| {
            if first_task_line.is_none() && line.micros.is_some() && line.source != "kernel" {
                first_task_line = Some(started.elapsed());
            }
        })?;
        let lines = |source: &str| -> Vec<&str> {
            outcome.lines.iter().filter(|l| l.source == source).map(|l| l.text.as_str()).collect()
        };
        if outcome.ending != Ending::Status(0) {
            // The bench task's complaints say why (figures carry "cycles").
            let said: Vec<&str> =
                lines("bench").into_iter().filter(|l| l.starts_with("BENCH") && !l.contains(" cycles ")).collect();
            bail!("benchmark run {run} ended with {}: {}", outcome.ending, said.join("; "));
        }
        ours.boot_seconds.push(first_task_line.context("no task logged anything")?.as_secs_f64());
        parse(&lines("bench"), &mut ours).with_context(|| format!("benchmark run {run}"))?;
        ours.resident_kib.push(resident_kib(&lines("kernel")).with_context(|| format!("benchmark run {run}"))?);
        progress.finish(&step, &format!("{} after {:.1} s", outcome.ending, outcome.wall.as_secs_f64()));
    }
    Ok(ours)
}

/// The kernel's loaded bytes (its `PT_LOAD` file contents) plus the boot
/// image's size: what QEMU is handed, without the kernel's debug data.
fn boot_files(kernel: &Path, image: &Path) -> Result<u64> {
    let bytes = std::fs::read(kernel).with_context(|| format!("reading {}", kernel.display()))?;
    let elf = ElfFile64::<Endianness>::parse(&*bytes).context("the kernel is not an ELF64 file")?;
    let endian = elf.endian();
    let loaded: u64 = elf
        .elf_program_headers()
        .iter()
        .filter(|header| header.p_type(endian) == PT_LOAD)
        .map(|header| header.p_filesz(endian))
        .sum();
    let image = std::fs::metadata(image).with_context(|| format!("reading {}", image.display()))?.len();
    Ok(loaded + image)
}

/// RAM in use when the kernel has loaded every task, from its
/// `... MiB of RAM` and `... tasks loaded, ... KiB free` lines.
fn resident_kib(kernel: &[&str]) -> Result<f64> {
    let ram_mib = number_before(kernel, " MiB of RAM").context("the kernel did not report its RAM")?;
    let free_kib = number_before(kernel, " KiB free").context("the kernel did not report free memory")?;
    Ok(ram_mib * 1024.0 - free_kib)
}

/// The number just before `suffix` in the first of `lines` that has it.
pub(super) fn number_before(lines: &[&str], suffix: &str) -> Option<f64> {
    lines.iter().find_map(|line| {
        let at = line.find(suffix)?;
        line[..at].split_whitespace().last()?.parse::<f64>().ok()
    })
}

/// Reads one run's `BENCH` lines into `ours`.
fn parse(lines: &[&str], ours: &mut Ours) -> Result<()> {
    let mut cycles_per_us = None;
    let mut batches = Vec::new();
    let mut dma = Vec::new();
    let mut faults = Vec::new();
    let mut models = Vec::new();
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
            ["BENCH", "dma", figure, "cycles", _, "pages", _] => dma.push((figure.to_string(), number(4)?, number(6)?)),
            ["BENCH", "fault-record", "cycles", _, "poll", _] => faults.push((number(3)?, number(5)?)),
            ["BENCH", "fault-model", "cycles", _] => models.push(number(3)?),
            _ => {}
        }
    }
    let Some(rate) = cycles_per_us.filter(|rate| *rate > 0.0) else { bail!("no IPC figure reported") };
    if batches.is_empty() {
        bail!("no IPC batch samples reported");
    }
    ours.ipc_ns.extend(batches.iter().map(|cycles| cycles * 1000.0 / rate));
    ours.ipc_cycles.extend(batches);
    if dma.is_empty() {
        bail!("no DMA map or unmap figures reported");
    }
    for (figure, cycles, pages) in dma {
        if cycles <= 0.0 || pages <= 0.0 {
            bail!("DMA figure {figure}: {cycles} cycles for {pages} pages");
        }
        let throughput = match figure.as_str() {
            "map-1" => &mut ours.map1,
            "unmap-1" => &mut ours.unmap1,
            "map-64" => &mut ours.map64,
            "unmap-64" => &mut ours.unmap64,
            other => bail!("unknown DMA figure `{other}`"),
        };
        throughput.push(cycles, pages, rate);
    }
    for (cycles, poll) in faults {
        ours.fault_ns.push(cycles * 1000.0 / rate);
        ours.fault_cycles.push(cycles);
        ours.fault_poll_ns.push(poll * 1000.0 / rate);
    }
    ours.fault_model_ns.extend(models.iter().map(|cycles| cycles * 1000.0 / rate));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINES: [&str; 10] = [
        "BENCH ipc-round-trip cycles 5000 4800 5600 100000 cycles-per-us 2500",
        "BENCH ipc-round-trip-batch cycles 5000",
        "BENCH ipc-round-trip-batch cycles 7500",
        "something else",
        "BENCH dma map-1 cycles 2500000 pages 50",
        "BENCH dma unmap-1 cycles 1250000 pages 50",
        "BENCH dma map-64 cycles 2500000 pages 2048",
        "BENCH dma unmap-64 cycles 5000000 pages 2048",
        "BENCH fault-record cycles 250000 poll 250",
        "BENCH fault-model cycles 125000",
    ];

    #[test]
    fn bench_lines_become_samples_in_nanoseconds_and_pages_per_second() {
        let mut ours = Ours::default();
        parse(&LINES, &mut ours).expect("valid lines");
        assert_eq!(ours.ipc_ns, [2000.0, 3000.0]);
        assert_eq!(ours.ipc_cycles, [5000.0, 7500.0]);
        assert_eq!(ours.ipc_single, [(5000.0, 4800.0, 5600.0, 100_000)]);
        // 50 pages in 1 ms.
        assert_eq!(ours.map1.pages_per_second, [50_000.0]);
        assert_eq!(ours.map1.cycles_per_page, [50_000.0]);
        assert_eq!(ours.unmap1.pages_per_second, [100_000.0]);
        assert_eq!(ours.map64.pages_per_second, [2_048_000.0]);
        assert_eq!(ours.unmap64.pages_per_second, [1_024_000.0]);
        assert_eq!(ours.fault_ns, [100_000.0]);
        assert_eq!(ours.fault_poll_ns, [100.0]);
        assert_eq!(ours.fault_model_ns, [50_000.0]);
    }

    #[test]
    fn missing_or_broken_lines_are_errors() {
        assert!(parse(&[], &mut Ours::default()).is_err());
        assert!(parse(&["BENCH ipc-round-trip cycles x 1 2 3 cycles-per-us 2500"], &mut Ours::default()).is_err());
        let no_batches = ["BENCH ipc-round-trip cycles 1 1 1 1 cycles-per-us 2500"];
        assert!(parse(&no_batches, &mut Ours::default()).is_err());
        let no_dma = &LINES[..3];
        assert!(parse(no_dma, &mut Ours::default()).is_err());
        let mut broken = LINES.to_vec();
        broken.push("BENCH dma map-1 cycles 0 pages 50");
        assert!(parse(&broken, &mut Ours::default()).is_err());
    }

    #[test]
    fn resident_memory_is_ram_less_free() {
        let kernel = ["kernel started", "511 MiB of RAM, ACPI RSDP at 0xf59d0", "6 tasks loaded, 500000 KiB free"];
        assert_eq!(resident_kib(&kernel).expect("both lines"), 511.0 * 1024.0 - 500_000.0);
        assert!(resident_kib(&kernel[..2]).is_err());
    }
}
