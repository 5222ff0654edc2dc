//! IPC round trips to the null server: batch means, and single round
//! trips timed one by one.
//!
//! The batch means are the compared figure, taken like the Linux peer's:
//! a batch of round trips between two time stamps, nothing else in the
//! loop. Then every round trip of a second run is timed alone with
//! `rdtsc` (two more time stamps each, about 150 ns under TCG); the
//! samples go into a frame of their own, are sorted, and the median and
//! the 10th and 90th percentiles are reported, as cycles. The TSC rate is
//! measured against the kernel's clock over both runs and reported with
//! the figures, for the host to convert cycles to time.

use userlib::cap::{Cap, Endpoint};
use userlib::ipc::Buffer;
use userlib::syscall;

use crate::timing::{percentile, rdtsc, sample_frame};

/// Round trips timed one by one.
const ROUND_TRIPS: usize = 50_000;
/// Round trips per batch-mean sample.
const BATCH: usize = 1_000;
/// Batch-mean samples per boot.
const BATCHES: usize = 100;
/// Untimed round trips first, to warm caches and TLBs.
const WARMUP: usize = 1_000;
/// Where the sample frame is mapped.
const SAMPLES_AT: u64 = 0x2000_0000;
/// Pages of the sample frame (enough for every sample as a `u32`).
const SAMPLE_PAGES: u64 = 128;

/// Times round trips to `server`; returns the TSC rate in cycles per µs,
/// or `None` (logged) if the run failed.
pub fn run(server: Cap<Endpoint>, buffer: &mut Buffer, sample_slot: u32) -> Option<u64> {
    let Some(samples) = sample_frame(sample_slot, SAMPLE_PAGES, SAMPLES_AT, ROUND_TRIPS) else {
        defmt::error!("BENCH no frame for the IPC samples");
        return None;
    };
    for _ in 0..WARMUP {
        if server.call(buffer, 0).is_err() {
            defmt::error!("BENCH the null server does not answer");
            return None;
        }
    }
    let (start_us, start_cycles) = (syscall::now(), rdtsc());
    let mut batches = [0u32; BATCHES];
    for batch in &mut batches {
        let before = rdtsc();
        for _ in 0..BATCH {
            let _ = server.call(buffer, 0);
        }
        *batch = ((rdtsc() - before) / BATCH as u64).min(u64::from(u32::MAX)) as u32;
    }
    for sample in samples.iter_mut() {
        let before = rdtsc();
        let _ = server.call(buffer, 0);
        *sample = (rdtsc() - before).min(u64::from(u32::MAX)) as u32;
    }
    let (micros, cycles) = (syscall::now() - start_us, rdtsc() - start_cycles);
    let cycles_per_us = cycles / micros.max(1);
    samples.sort_unstable();
    defmt::info!(
        "BENCH ipc-round-trip cycles {=u32} {=u32} {=u32} {=usize} cycles-per-us {=u64}",
        percentile(samples, 50),
        percentile(samples, 10),
        percentile(samples, 90),
        samples.len(),
        cycles_per_us
    );
    for batch in batches {
        defmt::info!("BENCH ipc-round-trip-batch cycles {=u32}", batch);
    }
    Some(cycles_per_us)
}
