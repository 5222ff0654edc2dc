//! `cargo xtask bench`: our figures beside Linux's, measured on the same emulated machine, as a table.
//!
//! The Linux side comes from [`peer`] (Debian's kernel running `qemu/linux-peer` in the guest). Our own
//! side is added with [`table::Table::set_ours`] on the table [`comparison`] returns; until a figure is
//! set its cell reads "—". The table is printed and written to `target/bench/results.{md,json}`.

mod cpio;
mod debian;
pub mod ours;
pub mod peer;
pub mod scale;
pub mod stats;
pub mod table;

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;

use crate::progress::Progress;
use peer::{Linux, Mode, Outcome, PeerMachine};
use table::{Cell, Figure, Row, Table, Unit};

/// Runs the benchmarks and writes the table; `with_peer` false skips the Linux boots.
pub fn run(root: &Path, with_peer: bool) -> Result<ExitCode> {
    let started = Instant::now();
    let machine = PeerMachine::default();
    let scale_machines = scale::peer_machines(root)?;
    // One step per boot: the Linux peer's, ours, and ours on each scale machine.
    let peer_boots = if with_peer { peer::boots(scale_machines.len()) } else { 0 };
    let mut progress = Progress::new(peer_boots + ours::RUNS + scale::MACHINES.len() * scale::RUNS);
    let outcome = if with_peer {
        peer::run(root, &machine, &scale_machines, &mut progress)
    } else {
        Outcome::Unavailable("not run (--no-peer)".into())
    };
    let mut table = comparison(&outcome, &machine);
    match ours::run(root, &mut progress) {
        Ok(ours) => fill_ours(&mut table, &ours),
        Err(error) => {
            let why = format!("{error:#}");
            for figure in OUR_FIGURES {
                table.set_ours(figure, Cell::Unavailable(why.clone()));
            }
        }
    }
    scale::add_rows(&mut table, &scale::run(root, &mut progress), &outcome);

    let dir = root.join("target").join("bench");
    std::fs::create_dir_all(&dir)?;
    let markdown = table.markdown();
    std::fs::write(dir.join("results.md"), &markdown).context("writing results.md")?;
    let json = serde_json::to_string_pretty(&table.json())?;
    std::fs::write(dir.join("results.json"), json + "\n").context("writing results.json")?;
    println!("{markdown}");
    eprintln!(
        "wrote {} and results.json after {:.1} s",
        dir.join("results.md").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Every figure of ours the table compares.
const OUR_FIGURES: [Figure; 9] = [
    Figure::BootToReady,
    Figure::IpcRoundTrip,
    Figure::Map1,
    Figure::Unmap1,
    Figure::Map64,
    Figure::Unmap64,
    Figure::FaultRecord,
    Figure::BootFiles,
    Figure::Resident,
];

/// Puts our measurements into `table`, with notes on how they were taken.
fn fill_ours(table: &mut Table, ours: &ours::Ours) {
    table.set_ours(Figure::BootToReady, Cell::from_samples(ours.boot_seconds.clone(), None));
    table.set_ours(Figure::IpcRoundTrip, Cell::from_samples(ours.ipc_ns.clone(), Some(&ours.ipc_cycles)));
    for (figure, throughput) in [
        (Figure::Map1, &ours.map1),
        (Figure::Unmap1, &ours.unmap1),
        (Figure::Map64, &ours.map64),
        (Figure::Unmap64, &ours.unmap64),
    ] {
        let cell = Cell::from_samples(throughput.pages_per_second.clone(), Some(&throughput.cycles_per_page));
        table.set_ours(figure, cell);
    }
    table.set_ours(Figure::FaultRecord, Cell::from_samples(ours.fault_ns.clone(), Some(&ours.fault_cycles)));
    table.set_ours(Figure::BootFiles, Cell::from_samples(vec![ours.boot_files as f64 / 1024.0], None));
    table.set_ours(Figure::Resident, Cell::from_samples(ours.resident_kib.clone(), None));
    table.notes.push(format!(
        "Ours: host load (1-minute average) before each boot: {}.",
        ours.loads.iter().map(|load| format!("{load:.2}")).collect::<Vec<_>>().join(", ")
    ));
    for (median, p10, p90, count) in &ours.ipc_single {
        table.notes.push(format!(
            "Ours: single IPC round trips, one run: median {median:.0} cycles (p10 {p10:.0}, p90 {p90:.0}) over {count} round trips timed one by one with rdtsc."
        ));
    }
    if let Some(poll) = stats::Stats::of(&ours.fault_poll_ns) {
        let model = stats::Stats::of(&ours.fault_model_ns).map_or(0.0, |model| model.median);
        table.notes.push(format!(
            "Ours: fault record: the bench task starts a read by the edu device from an unmapped I/O address \
             and polls the device's command register until the transfer ends; the clock runs from the last poll \
             that still saw it running (resolution: one poll, median {:.0} ns) to the reply of the `Faults` \
             request that returns the record, so the figure is an upper bound. It includes QEMU's edu model \
             doing the transfer while the poll that sees it end waits: {:.0} µs (median) for transfers from \
             a mapped page, timed the same way in the same boots. QEMU's edu model starts every transfer \
             100 ms after its command, which bounds how many are timed ({} per boot), not the latency.",
            poll.median,
            model / 1000.0,
            ours.fault_ns.len() / ours::RUNS.max(1)
        ));
    }
}

/// Where a row's Linux numbers come from.
#[derive(Clone, Copy)]
enum Source {
    /// Host wall time from QEMU start to the ready line, every boot.
    BootWall,
    /// The guest's `CLOCK_BOOTTIME` at the ready line, every boot.
    BootClock,
    /// Nanoseconds per round trip of a peer figure.
    Nanos(Mode, &'static str),
    /// Pages per second from nanoseconds per page of a peer figure.
    PagesPerSecond(Mode, &'static str),
    /// The sizes of the compressed kernel and the initramfs.
    BootFiles,
    /// MemTotal - MemFree at the ready line.
    MemoryInUse,
    /// Linux has no such figure; why.
    Absent(&'static str),
}

/// The rows, in order: key, unit, our figure compared (none for Linux-only extras), Linux's source, label.
#[rustfmt::skip]
const ROWS: &[(&str, Unit, Option<Figure>, Source, &str)] = {
    use Figure::*;
    use Mode::*;
    use Source::{Absent, BootClock, BootFiles as Files, BootWall, MemoryInUse, Nanos, PagesPerSecond as Pps};
    use Unit::{Kibibytes as KiB, Nanoseconds as Ns, PagesPerSecond, Seconds};
    &[
        ("boot/ready", Seconds, Some(BootToReady), BootWall,
            "Boot: QEMU start to first program"),
        ("ipc/futex", Ns, Some(IpcRoundTrip), Nanos(Strict, "futex_rtt"),
            "IPC round trip (Linux: futex ping-pong, 2 processes)"),
        ("ipc/pipe", Ns, Some(IpcRoundTrip), Nanos(Strict, "pipe_rtt"),
            "IPC round trip (Linux: pipe ping-pong, 1 byte each way)"),
        ("map/1", PagesPerSecond, Some(Map1), Pps(Strict, "vfio_map_1"),
            "Map, 1 page per request (Linux: VFIO type1 MAP_DMA)"),
        ("unmap/1", PagesPerSecond, Some(Unmap1), Pps(Strict, "vfio_unmap_1"),
            "Unmap + IOTLB flush, 1 page per request (Linux: VFIO UNMAP_DMA)"),
        ("map/64", PagesPerSecond, Some(Map64), Pps(Strict, "vfio_map_64"),
            "Map, 64 pages per request (Linux: VFIO type1 MAP_DMA)"),
        ("unmap/64", PagesPerSecond, Some(Unmap64), Pps(Strict, "vfio_unmap_64"),
            "Unmap + IOTLB flush, 64 pages per request (Linux: VFIO UNMAP_DMA)"),
        ("fault/record", Ns, Some(FaultRecord),
            Absent("no equivalent: Linux 6.1 logs DMA faults to the kernel log; VFIO does not hand them to the device's owner"),
            "Blocked DMA to the device's owner holding the fault record"),
        ("memory/boot-files", KiB, Some(BootFiles), Files,
            "Boot files (ours: kernel segments + boot image; Linux: vmlinuz + initramfs)"),
        ("memory/resident", KiB, Some(Resident), MemoryInUse,
            "RAM in use at start (ours: every task loaded; Linux: MemTotal - MemFree at the ready line)"),
        ("boot/linux-clock", Seconds, None, BootClock,
            "Linux only: boot by the guest's own clock (CLOCK_BOOTTIME, no firmware)"),
        ("map/64/scattered", PagesPerSecond, None, Pps(Strict, "vfio_map_64_scattered"),
            "Linux only: map, 64 pages per request, scattered frames (its worst case)"),
        ("unmap/64/scattered", PagesPerSecond, None, Pps(Strict, "vfio_unmap_64_scattered"),
            "Linux only: unmap, 64 pages per request, scattered frames (its worst case)"),
        ("map/1/lazy", PagesPerSecond, None, Pps(Lazy, "vfio_map_1"),
            "Linux only: map, 1 page per request, lazy boot (iommu.strict=0)"),
        ("unmap/1/lazy", PagesPerSecond, None, Pps(Lazy, "vfio_unmap_1"),
            "Linux only: unmap, 1 page per request, lazy boot (iommu.strict=0)"),
        ("map/64/lazy", PagesPerSecond, None, Pps(Lazy, "vfio_map_64"),
            "Linux only: map, 64 pages per request, lazy boot (iommu.strict=0)"),
        ("unmap/64/lazy", PagesPerSecond, None, Pps(Lazy, "vfio_unmap_64"),
            "Linux only: unmap, 64 pages per request, lazy boot (iommu.strict=0)"),
    ]
};

/// Linux's cell for one source.
fn linux_cell(linux: &Linux, source: Source) -> Cell {
    let cell = |samples: Vec<f64>, cycles: Option<&[f64]>| {
        if samples.is_empty() {
            Cell::Unavailable("no boot reached the program".into())
        } else {
            Cell::from_samples(samples, cycles)
        }
    };
    match source {
        Source::BootWall => cell(linux.boot_seconds(), None),
        Source::BootClock => cell(linux.boot_clock_seconds(), None),
        Source::Nanos(mode, figure) => match linux.figure(mode, figure) {
            Ok(measured) => cell(measured.nanos.clone(), Some(&measured.cycles)),
            Err(why) => Cell::Unavailable(why),
        },
        Source::PagesPerSecond(mode, figure) => match linux.figure(mode, figure) {
            // Each sample is converted, so the spread is the spread of throughputs.
            Ok(measured) => cell(measured.nanos.iter().map(|ns| 1e9 / ns).collect(), Some(&measured.cycles)),
            Err(why) => Cell::Unavailable(why),
        },
        Source::BootFiles => cell(vec![linux.boot_files as f64 / 1024.0], None),
        Source::MemoryInUse => cell(linux.used_kib(), None),
        Source::Absent(why) => Cell::Unavailable(why.into()),
    }
}

/// The comparison table with Linux's side filled from `outcome` and ours pending.
pub fn comparison(outcome: &Outcome, machine: &PeerMachine) -> Table {
    let rows = ROWS
        .iter()
        .map(|&(key, unit, ours_figure, source, label)| Row {
            key: key.into(),
            label: label.into(),
            unit,
            ours_figure,
            ours: Cell::Pending,
            linux: match (outcome, source) {
                (_, Source::Absent(why)) => Cell::Unavailable(why.into()),
                (Outcome::Ran(linux), _) => linux_cell(linux, source),
                // The reason is in the notes (and the JSON details) once, not in every cell.
                (Outcome::Unavailable(_), _) => Cell::Unavailable("the Linux peer did not run (see the notes)".into()),
            },
        })
        .collect();
    let host = host_description();
    let mut notes = vec![format!(
        "Machine: `qemu-system-x86_64 {}`, 1 vCPU, TCG (never KVM); host: {host}.",
        machine.args.join(" ")
    )];
    let details = match outcome {
        Outcome::Unavailable(why) => {
            notes.push(format!("Linux peer unavailable on this machine: {why}"));
            json!({ "linux": { "status": "unavailable", "reason": why } })
        }
        Outcome::Ran(linux) => {
            notes.extend(linux_notes(linux));
            json!({ "linux": linux_details(linux), "host": host })
        }
    };
    notes.push(format!(
        "Ours: `qemu/policies/bench.toml` on `qemu/machines/bench.toml` (the same machine), {} boots. Boot: \
             host wall time from starting QEMU to the first task's first log line. IPC: the bench task calls a \
             null server in another address space; one sample is the mean of 1,000 call+reply round trips (100 \
             per boot). Map/unmap: the bench task is the edu device's DMA-capable driver and calls the IOMMU \
             server on its DMA handle; one sample maps {} one-page frames (one request each), or {} frames of \
             {} pages (one request each), then unmaps them, each phase timed alone; an unmap replies after the \
             IOTLB invalidation completed and the pin was released.",
        ours::RUNS,
        ours::DMA_SINGLES,
        ours::DMA_BATCHES,
        ours::DMA_BATCH_PAGES
    ));
    Table { title: "Benchmarks: our system beside Linux on the same machine".into(), notes, rows, details }
}

fn linux_notes(linux: &Linux) -> Vec<String> {
    let strict = linux.boots.iter().find(|boot| boot.mode == Mode::Strict && boot.cases != "none");
    vec![
        format!(
            "Linux: {} (`uname -r` {}), {}; QEMU: {}.",
            linux.packages.first().map_or("?", String::as_str),
            linux.release,
            linux.packages.get(1).map_or("?", String::as_str),
            linux.qemu_version
        ),
        format!(
            "Linux command line of the compared boot: `{}`; modules loaded with busybox insmod: {}.",
            strict.map_or("?", |boot| boot.append.as_str()),
            linux.modules.join(", ")
        ),
        format!(
            "Linux samples: {} per figure. IPC: one sample is the mean of {} round trips. Map/unmap: one \
             sample maps {} pages of 4 KiB (pre-faulted) in requests of 1 or 64 pages, then unmaps them, each \
             phase timed alone. Boot: one sample per boot ({} boots).",
            peer::RUNS,
            peer::IPC_ITERATIONS,
            peer::PAGES,
            linux.boot_seconds().len()
        ),
        "Memory mapped: the compared rows use 2 MiB-aligned memory backed by transparent huge pages, so each \
         64-page request is physically contiguous and type1 maps it with one `iommu_map` call (Linux's best \
         case, still 4 KiB IOMMU pages); the scattered rows use 4 KiB frames faulted in even pages first, \
         then odd ones, so type1 makes one call per page (its worst case). Ordinary memory lies in between."
            .into(),
        "Compared mode: `iommu.strict=1` (synchronous IOTLB invalidation, as ours). VFIO's type1 domain is \
         unmanaged, so its unmap flushes the IOTLB before returning in either mode; the lazy rows show it."
            .into(),
        format!("Mapped buffers' physical contiguity (from `/proc/self/pagemap`): {}.", contiguity(linux)),
        format!(
            "Host load (1-minute average) before each boot: {}; TCG speed follows it, so compare figures taken \
             under similar load.",
            linux.boots.iter().map(|boot| format!("{:.2}", boot.load)).collect::<Vec<_>>().join(", ")
        ),
        format!(
            "The Linux peer run took {:.0} s (packages, build, {} boots).",
            linux.wall.as_secs_f64(),
            linux.boots.len()
        ),
    ]
}

/// The `vfio-buffer` info lines of every boot that mapped memory, with the boot's mode.
fn contiguity(linux: &Linux) -> String {
    let mut lines = Vec::new();
    for boot in &linux.boots {
        let Ok(report) = &boot.report else { continue };
        for line in report.info.iter().filter_map(|line| line.strip_prefix("vfio-buffer ")) {
            lines.push(format!("{} boot, {line}", boot.mode.name()));
        }
    }
    if lines.is_empty() { "not reported".into() } else { lines.join("; ") }
}

fn linux_details(linux: &Linux) -> serde_json::Value {
    let boots: Vec<_> = linux
        .boots
        .iter()
        .map(|boot| {
            let (info, errors, done) = match &boot.report {
                Ok(report) => (report.info.clone(), report.errors.clone(), report.done),
                Err(why) => (Vec::new(), vec![("boot".to_owned(), why.clone())], false),
            };
            json!({
                "mode": boot.mode.name(),
                "cases": boot.cases,
                "append": boot.append,
                "to_ready_seconds": boot.to_ready.map(|time| time.as_secs_f64()),
                "wall_seconds": boot.wall.as_secs_f64(),
                "host_load": boot.load,
                "done": done,
                "info": info,
                "errors": errors,
                "console": boot.console,
            })
        })
        .collect();
    json!({
        "status": "ran",
        "packages": linux.packages,
        "release": linux.release,
        "qemu": linux.qemu_version,
        "machine": linux.machine,
        "modules": linux.modules,
        "parameters": { "runs": peer::RUNS, "ipc_iterations": peer::IPC_ITERATIONS, "pages": peer::PAGES },
        "wall_seconds": linux.wall.as_secs_f64(),
        "boots": boots,
    })
}

/// The host's CPU model and count, so figures from different machines are not mixed up.
fn host_description() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                line.strip_prefix("model name").map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cpus} CPUs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_peer_is_said_in_every_linux_cell_and_the_notes() {
        let outcome = Outcome::Unavailable("apt-get update failed: no network".into());
        let table = comparison(&outcome, &PeerMachine::default());
        assert_eq!(table.rows.len(), ROWS.len());
        for (row, (.., source, _)) in table.rows.iter().zip(ROWS) {
            let expected = match source {
                Source::Absent(why) => *why,
                _ => "the Linux peer did not run (see the notes)",
            };
            assert_eq!(row.linux, Cell::Unavailable(expected.into()));
        }
        let text = table.markdown();
        assert!(text.contains("| unavailable: the Linux peer did not run (see the notes) |"), "{text}");
        assert!(text.contains("Linux peer unavailable on this machine: apt-get update failed: no network"), "{text}");
        let json = table.json();
        assert_eq!(json["details"]["linux"]["status"], "unavailable");
        assert_eq!(json["details"]["linux"]["reason"], "apt-get update failed: no network");
    }

    #[test]
    fn every_figure_of_ours_has_a_row_and_keys_are_unique() {
        let table = comparison(&Outcome::Unavailable("x".into()), &PeerMachine::default());
        for figure in OUR_FIGURES {
            assert!(table.rows.iter().any(|row| row.ours_figure == Some(figure)), "{figure:?}");
        }
        let mut keys: Vec<&str> = ROWS.iter().map(|row| row.0).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), ROWS.len());
    }
}
