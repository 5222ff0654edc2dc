//! Peer benchmarks run inside a Debian Linux guest on the same QEMU machine as our own system.
//!
//! Started by the initramfs's `/init` right after it mounted proc, sysfs and devtmpfs. Its first line,
//! `PEER ready`, is the boot-time mark. Then it times IPC round trips (pipe and futex ping-pong between two
//! processes) and VFIO type1 map/unmap of 4 KiB pages, and prints one line per figure with every sample:
//!
//! ```text
//! PEER ready <CLOCK_BOOTTIME ns>
//! PEER info <key> <value...>
//! PEER sample <figure> <unit> <value> <value> ...
//! PEER error <figure or stage> <message>
//! PEER done
//! ```
//!
//! Figures: `pipe_rtt`, `futex_rtt` (per round trip); `vfio_map_1`, `vfio_unmap_1`, `vfio_map_64`,
//! `vfio_unmap_64` (per page, 1 or 64 pages per request, physically contiguous memory) and
//! `vfio_map_64_scattered`, `vfio_unmap_64_scattered` (no two neighbouring frames contiguous). Units are
//! `ns` and `cycles`, with `_per_page` for map/unmap. The host (`cargo xtask bench`) computes the statistics. What to run and how much comes from the kernel command line:
//! `linux_peer.cases=ipc,vfio linux_peer.runs=N linux_peer.iterations=N linux_peer.pages=N` (dotted
//! parameters are left alone by the kernel and not passed to init).
// Unsafe code is allowed here: Linux system calls (futex, VFIO ioctls, mmap) are foreign functions.
#![allow(unsafe_code)]

mod abi;
mod ipc;
mod sys;
mod timing;
mod vfio;

use std::path::Path;
use std::process::ExitCode;

use timing::Samples;

/// Where the host puts the modules and the file listing their load order.
const MODULE_ORDER: &str = "/modules/order";
/// Pages per request of the batched map/unmap case (our batched figure uses the same).
const BATCH: u64 = 64;
/// The transparent huge page size: the alignment of the contiguous buffer.
const HUGE_PAGE: usize = 2 << 20;

/// What to run, read from the kernel command line.
#[derive(Clone, Debug, PartialEq)]
struct Config {
    ipc: bool,
    vfio: bool,
    runs: usize,
    iterations: usize,
    pages: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self { ipc: true, vfio: true, runs: 15, iterations: 1000, pages: 1024 }
    }
}

impl Config {
    /// Reads `linux_peer.*` parameters from a kernel command line; anything else is ignored.
    fn from_cmdline(cmdline: &str) -> Self {
        let mut config = Self::default();
        for (key, value) in cmdline.split_whitespace().filter_map(|word| word.split_once('=')) {
            match key {
                "linux_peer.cases" => {
                    config.ipc = value.split(',').any(|case| case == "ipc");
                    config.vfio = value.split(',').any(|case| case == "vfio");
                }
                "linux_peer.runs" => config.runs = value.parse().unwrap_or(config.runs).max(1),
                "linux_peer.iterations" => config.iterations = value.parse().unwrap_or(config.iterations).max(1),
                // Whole batches only, so the single and batched cases map the same number of pages.
                "linux_peer.pages" => config.pages = (value.parse().unwrap_or(config.pages) / BATCH).max(1) * BATCH,
                _ => {}
            }
        }
        config
    }
}

/// One `PEER sample` line per unit.
fn print_samples(figure: &str, unit_suffix: &str, samples: &Samples) {
    for (unit, values) in [("ns", &samples.nanos), ("cycles", &samples.cycles)] {
        let values: Vec<String> = values.iter().map(|value| format!("{value:.1}")).collect();
        println!("PEER sample {figure} {unit}{unit_suffix} {}", values.join(" "));
    }
}

fn print_error(what: &str, error: &dyn std::fmt::Display) {
    // One line: the host parser reads the rest of the line as the message.
    println!("PEER error {what} {}", error.to_string().replace('\n', " "));
}

fn main() -> ExitCode {
    println!("PEER ready {}", sys::boottime_ns());
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let config = Config::from_cmdline(&cmdline);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("PEER info kernel {}", release.trim());
    // Memory in use at the ready line (MemTotal - MemFree), for the resident-memory row.
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        meminfo.lines().find_map(|line| line.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
    };
    if let (Some(total), Some(free)) = (field("MemTotal:"), field("MemFree:")) {
        println!("PEER info meminfo total-kib={total} free-kib={free} used-kib={}", total.saturating_sub(free));
    }
    // What Linux formed by the ready line, for the scale rows.
    let entries = |dir: &str| std::fs::read_dir(dir).map_or(0, Iterator::count);
    println!(
        "PEER info iommu groups={} functions={}",
        entries("/sys/kernel/iommu_groups"),
        entries("/sys/bus/pci/devices")
    );
    println!(
        "PEER info shape runs={} iterations={} pages={} batch={BATCH}",
        config.runs, config.iterations, config.pages
    );
    let mut failed = false;

    if config.ipc {
        let shape = ipc::Shape { runs: config.runs, iterations: config.iterations, warmup: config.iterations / 10 };
        for (figure, result) in [("pipe_rtt", ipc::pipe_ping_pong(shape)), ("futex_rtt", ipc::futex_ping_pong(shape))] {
            match result {
                Ok(samples) => print_samples(figure, "", &samples),
                Err(error) => {
                    print_error(figure, &error);
                    failed = true;
                }
            }
        }
    }

    if config.vfio
        && let Err(error) = run_vfio(&config)
    {
        print_error("vfio", &error);
        failed = true;
    }

    println!("PEER done");
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// Loads VFIO, binds edu, and prints the four map/unmap figures for 1 and [`BATCH`] pages per request.
fn run_vfio(config: &Config) -> std::io::Result<()> {
    for (module, millis) in vfio::load_modules(Path::new(MODULE_ORDER))? {
        println!("PEER info insmod {module} {millis:.1}ms");
    }
    let device = vfio::find_edu(Path::new("/sys/bus/pci/devices"))?;
    let group = vfio::group_of(&device)?;
    let address = device.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    // The default domain's type tells strict (`DMA`) from lazy (`DMA-FQ`) invalidation in this boot.
    println!("PEER info edu {address} group {group} default-domain {}", vfio::group_type(group));
    vfio::bind_vfio_pci(&device)?;
    let container = vfio::Container::open(group)?;
    println!("PEER info vfio-iommu-type {}", container.iommu_type);

    let bytes = (config.pages * vfio::PAGE) as usize;
    // Linux turns transparent huge pages off on machines with less than 512 MiB of RAM (this one has
    // slightly less once firmware took its share); allow them again for regions that ask, as below.
    let thp = Path::new("/sys/kernel/mm/transparent_hugepage/enabled");
    let before = std::fs::read_to_string(thp).unwrap_or_default();
    let switched = std::fs::write(thp, "madvise");
    let after = std::fs::read_to_string(thp).unwrap_or_default();
    println!(
        "PEER info thp {} -> {}{}",
        before.trim(),
        after.trim(),
        if switched.is_err() { " (not writable)" } else { "" }
    );
    // Linux's best case: 2 MiB-aligned memory backed by transparent huge pages, so every 64-page request is
    // one physically contiguous run, which type1 maps with one `iommu_map` call (still 4 KiB IOMMU pages:
    // a 256 KiB request is below the 2 MiB superpage size).
    let contiguous = sys::Mapping::anonymous_aligned(bytes, HUGE_PAGE)?;
    contiguous.huge_pages(true)?;
    contiguous.touch_pages(vfio::PAGE as usize, false);
    // Its worst case: 4 KiB frames faulted in even pages first, then odd ones, so neighbouring pages get no
    // neighbouring frames and type1 makes one `iommu_map` call per page even inside a 64-page request.
    let scattered = sys::Mapping::anonymous(bytes, false)?;
    scattered.huge_pages(false)?;
    scattered.touch_pages(vfio::PAGE as usize, true);
    let shape = vfio::Shape { runs: config.runs, pages: config.pages };
    let cases: [(&str, &sys::Mapping, &[u64]); 2] =
        [("", &contiguous, &[1, BATCH]), ("_scattered", &scattered, &[BATCH])];
    for (layout, memory, batches) in cases {
        let name = if layout.is_empty() { "contiguous" } else { "scattered" };
        match vfio::contiguity(memory, config.pages) {
            Ok((runs, longest)) => println!(
                "PEER info vfio-buffer {name} pages={} contiguous-runs={runs} longest-run={longest}",
                config.pages
            ),
            Err(error) => println!("PEER info vfio-buffer {name} contiguity unknown: {error}"),
        }
        for &batch in batches {
            let result = container.map_unmap(memory, shape, batch)?;
            print_samples(&format!("vfio_map_{batch}{layout}"), "_per_page", &result.map);
            print_samples(&format!("vfio_unmap_{batch}{layout}"), "_per_page", &result.unmap);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_chooses_cases_and_sizes() {
        let config = Config::from_cmdline(
            "console=ttyS0 intel_iommu=on linux_peer.cases=vfio linux_peer.runs=7 linux_peer.pages=200 quiet",
        );
        assert_eq!(config, Config { ipc: false, vfio: true, runs: 7, iterations: 1000, pages: 192 });
        assert_eq!(Config::from_cmdline("quiet"), Config::default());
        let odd = Config::from_cmdline("linux_peer.runs=0 linux_peer.pages=x linux_peer.iterations=5");
        assert_eq!((odd.runs, odd.pages, odd.iterations), (1, 1024, 5));
    }
}
