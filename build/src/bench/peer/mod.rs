//! The Linux peer run: Debian's kernel booted in the benchmark machine, running `linux-peer` from an
//! initramfs, its result lines parsed into figures.
//!
//! Boots, all under TCG on the same machine shape as our own benchmarks:
//! 1. strict (`iommu.strict=1`): IPC and VFIO: "the" Linux figures (synchronous invalidation, like ours);
//! 2. lazy (`iommu.strict=0`, Linux's default on Intel): VFIO only, kept as an extra;
//! 3. [`BOOT_ONLY_RUNS`] more boots that only print the ready line, so boot time has a spread too;
//! 4. [`SCALE_RUNS`] boots to the ready line on each scale machine (`crate::bench::scale`).
//!
//! Boot time is host wall time from starting QEMU to receiving the guest program's `PEER ready` line
//! (firmware, kernel, initramfs and `/init` included), the same start point our own boot figure uses.

mod boot;
mod guest;
mod linux;
mod report;

pub use boot::{Boot, IPC_ITERATIONS, Mode, PAGES, PeerMachine, RUNS, load_average};
pub use linux::{BOOT_ONLY_RUNS, Linux, Outcome, SCALE_RUNS, ScaleBoots, boots, run};
pub use report::{Measurement, Report};

#[cfg(test)]
mod tests;
