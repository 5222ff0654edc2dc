//! Timestamps and samples: every figure is taken with `CLOCK_MONOTONIC` and the TSC at once.

use crate::sys;

/// A start point on both clocks.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    nanos: u64,
    cycles: u64,
}

impl Sample {
    /// Reads both clocks now.
    pub fn now() -> Self {
        Self { nanos: sys::monotonic_ns(), cycles: sys::rdtsc() }
    }

    /// Time since this start point divided by `count` operations: (ns, cycles) per operation.
    pub fn per(self, count: usize) -> (f64, f64) {
        let end = Self::now();
        let count = count.max(1) as f64;
        (end.nanos.saturating_sub(self.nanos) as f64 / count, end.cycles.saturating_sub(self.cycles) as f64 / count)
    }
}

/// The samples of one figure, in nanoseconds and in TSC cycles per operation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples {
    /// Nanoseconds per operation, one value per run.
    pub nanos: Vec<f64>,
    /// TSC cycles per operation, one value per run.
    pub cycles: Vec<f64>,
}

impl Samples {
    /// Adds one run's (ns, cycles) per operation.
    pub fn push(&mut self, (nanos, cycles): (f64, f64)) {
        self.nanos.push(nanos);
        self.cycles.push(cycles);
    }
}
