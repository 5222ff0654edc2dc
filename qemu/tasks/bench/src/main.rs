//! The benchmark task: times IPC round trips to the null server and
//! reports `BENCH` lines the host collects (`cargo xtask bench`).
//!
//! Each round trip is timed alone with `rdtsc`; the samples go into a
//! frame of their own, are sorted, and the median and the 10th and 90th
//! percentiles are reported, as cycles and as nanoseconds (the TSC rate is
//! measured against the kernel's clock over the whole run). Batch means
//! are reported too, one sample per batch, comparable with the Linux
//! peer's samples.
#![no_std]
#![no_main]

use capabilities::abi::rights;
use userlib::cap::own;
use userlib::ipc::Buffer;
use userlib::{objects, syscall};

userlib::cap_slot!(NULL_SERVER: Endpoint = "null-server");
userlib::entry!(main);

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

fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads the time-stamp counter; the kernel leaves
    // CR4.TSD clear so it is allowed in ring 3.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn samples() -> Option<&'static mut [u32]> {
    let frame = objects::alloc_frame(64, SAMPLE_PAGES).ok()?;
    own::SPACE.map(frame, SAMPLES_AT, rights::WRITE).ok()?;
    // SAFETY: the frame was just mapped, writable, at `SAMPLES_AT` for
    // `SAMPLE_PAGES` pages, and nothing else refers to that memory.
    Some(unsafe { core::slice::from_raw_parts_mut(SAMPLES_AT as *mut u32, ROUND_TRIPS) })
}

fn main() -> u64 {
    const _: () = assert!(ROUND_TRIPS * 4 <= SAMPLE_PAGES as usize * 4096);
    let (Some(mut buffer), Some(samples)) = (Buffer::take(), samples()) else {
        defmt::error!("BENCH setup failed");
        return 1;
    };
    defmt::info!("bench ready");
    let server = NULL_SERVER.get();
    for _ in 0..WARMUP {
        if server.call(&mut buffer, 0).is_err() {
            defmt::error!("BENCH the null server does not answer");
            return 1;
        }
    }
    let (start_us, start_cycles) = (syscall::now(), rdtsc());
    let mut batch_start = start_cycles;
    let mut batches = [0u32; ROUND_TRIPS / BATCH];
    for (index, sample) in samples.iter_mut().enumerate() {
        let before = rdtsc();
        let _ = server.call(&mut buffer, 0);
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
    let percentile = |p: usize| samples[(samples.len() - 1) * p / 100];
    defmt::info!(
        "BENCH ipc-round-trip cycles {=u32} {=u32} {=u32} {=usize} cycles-per-us {=u64}",
        percentile(50),
        percentile(10),
        percentile(90),
        samples.len(),
        cycles_per_us
    );
    for batch in batches {
        defmt::info!("BENCH ipc-round-trip-batch cycles {=u32}", batch);
    }
    0
}
