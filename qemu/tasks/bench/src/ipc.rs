//! IPC round trips to the null server, timed one by one and in batches.
//!
//! Each round trip is timed alone with `rdtsc`; the samples go into a
//! frame of their own, are sorted, and the median and the 10th and 90th
//! percentiles are reported, as cycles. Batch means are reported too, one
//! sample per batch, comparable with the Linux peer's samples. The TSC
//! rate is measured against the kernel's clock over the whole run and
//! reported with the figures, for the host to convert cycles to time.

use userlib::cap::{Cap, Endpoint};
use userlib::ipc::Buffer;
use userlib::syscall;

use crate::timing::{percentile, rdtsc, sample_frame};

/// Round trips timed one by one.
const ROUND_TRIPS: usize = 100_000;
/// Round trips per batch-mean sample.
const BATCH: usize = 1_000;
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
    let mut batch_start = start_cycles;
    let mut batches = [0u32; ROUND_TRIPS / BATCH];
    for (index, sample) in samples.iter_mut().enumerate() {
        let before = rdtsc();
        let _ = server.call(buffer, 0);
        let after = rdtsc();
        *sample = (after - before).min(u64::from(u32::MAX)) as u32;
        if (index + 1) % BATCH == 0 {
            batches[index / BATCH] = ((after - batch_start) / BATCH as u64) as u32;
            batch_start = after;
        }
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
