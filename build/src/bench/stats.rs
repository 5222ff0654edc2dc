//! Summary statistics of repeated runs: the median, and the 10th-90th percentile range as the spread.
//!
//! Why p10/p90 rather than min/max: under TCG, on two cores shared with other work, single runs are
//! sometimes stretched by the host scheduler; the 10-90 range shows how stable a figure is without
//! letting one such outlier define it. Min and max are kept too (in the JSON) for whoever wants them.
//! Percentiles interpolate linearly between the two closest ranks (the usual "type 7" definition), so
//! the median of an even count is the mean of the two middle samples.

use serde::Serialize;

/// Median and spread of one figure's samples.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Number of samples.
    pub n: usize,
    /// The 50th percentile.
    pub median: f64,
    /// The 10th percentile (the low end of the spread).
    pub p10: f64,
    /// The 90th percentile (the high end of the spread).
    pub p90: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Stats {
    /// The statistics of `samples`; `None` if there are none or any is not a finite number.
    pub fn of(samples: &[f64]) -> Option<Self> {
        if samples.is_empty() || samples.iter().any(|sample| !sample.is_finite()) {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Self {
            n: sorted.len(),
            median: percentile(&sorted, 0.5),
            p10: percentile(&sorted, 0.1),
            p90: percentile(&sorted, 0.9),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        })
    }
}

/// The `q` quantile (0..=1) of non-empty sorted samples, interpolating between closest ranks.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = q * (sorted.len() - 1) as f64;
    let below = rank.floor() as usize;
    let above = rank.ceil() as usize;
    sorted[below] + (sorted[above] - sorted[below]) * (rank - below as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_counts_have_an_exact_median_and_interpolated_percentiles() {
        let stats = Stats::of(&[5.0, 1.0, 4.0, 2.0, 3.0]).expect("samples");
        assert_eq!(stats.n, 5);
        assert_eq!(stats.median, 3.0);
        assert_eq!((stats.min, stats.max), (1.0, 5.0));
        // rank 0.4 between 1 and 2; rank 3.6 between 4 and 5.
        assert!((stats.p10 - 1.4).abs() < 1e-12, "{}", stats.p10);
        assert!((stats.p90 - 4.6).abs() < 1e-12, "{}", stats.p90);
    }

    #[test]
    fn even_counts_average_the_middle_pair() {
        let stats = Stats::of(&[10.0, 40.0, 20.0, 30.0]).expect("samples");
        assert_eq!(stats.median, 25.0);
    }

    #[test]
    fn one_outlier_moves_the_extremes_not_the_median_or_the_spread_much() {
        let mut samples: Vec<f64> = (1..=21).map(f64::from).collect();
        samples[20] = 1e6;
        let stats = Stats::of(&samples).expect("samples");
        assert_eq!(stats.median, 11.0);
        assert_eq!(stats.p90, 19.0);
        assert_eq!(stats.max, 1e6);
    }

    #[test]
    fn a_single_sample_is_its_own_spread() {
        let stats = Stats::of(&[7.5]).expect("one sample");
        assert_eq!((stats.median, stats.p10, stats.p90), (7.5, 7.5, 7.5));
    }

    #[test]
    fn nothing_or_nonsense_gives_no_statistics() {
        assert_eq!(Stats::of(&[]), None);
        assert_eq!(Stats::of(&[1.0, f64::NAN]), None);
        assert_eq!(Stats::of(&[f64::INFINITY]), None);
    }
}
