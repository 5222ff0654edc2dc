//! The guest program's `PEER` lines, parsed into samples, infos and errors.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};

/// One figure's samples: per operation, in nanoseconds and in TSC cycles.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measurement {
    /// Nanoseconds per round trip or per page, one value per run.
    pub nanos: Vec<f64>,
    /// TSC cycles per round trip or per page, one value per run.
    pub cycles: Vec<f64>,
}

/// The parsed `PEER` lines of one boot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// `CLOCK_BOOTTIME` when the program started, in nanoseconds.
    pub ready_boottime_ns: Option<u64>,
    /// `PEER info` lines, without the prefix.
    pub info: Vec<String>,
    /// Samples by figure name.
    pub figures: BTreeMap<String, Measurement>,
    /// `PEER error` lines: (figure or stage, message).
    pub errors: Vec<(String, String)>,
    /// Whether `PEER done` was seen (the program got to its end).
    pub done: bool,
}

/// Parses a guest console. Only lines holding `PEER ` count; anything before it on the line (a kernel
/// message that interleaved) is skipped, and malformed lines are reported as errors, not dropped.
pub fn parse(lines: &[String]) -> Report {
    let mut report = Report::default();
    for line in lines {
        let Some(at) = line.find("PEER ") else { continue };
        let mut words = line[at + 5..].split_whitespace();
        match words.next() {
            Some("ready") => report.ready_boottime_ns = words.next().and_then(|ns| ns.parse().ok()),
            Some("info") => report.info.push(words.collect::<Vec<_>>().join(" ")),
            Some("done") => report.done = true,
            Some("error") => {
                let what = words.next().unwrap_or("?").to_owned();
                report.errors.push((what, words.collect::<Vec<_>>().join(" ")));
            }
            Some("sample") => {
                let (Some(figure), Some(unit)) = (words.next(), words.next()) else {
                    report.errors.push(("parse".into(), format!("short sample line `{line}`")));
                    continue;
                };
                let values: Result<Vec<f64>, _> = words.map(str::parse::<f64>).collect();
                let Ok(values) = values else {
                    report.errors.push((figure.to_owned(), format!("unreadable samples in `{line}`")));
                    continue;
                };
                let measurement = report.figures.entry(figure.to_owned()).or_default();
                if unit.starts_with("ns") {
                    measurement.nanos = values;
                } else if unit.starts_with("cycles") {
                    measurement.cycles = values;
                }
            }
            _ => report.errors.push(("parse".into(), format!("unknown line `{line}`"))),
        }
    }
    report
}

/// Figures the measuring boot must report.
const EXPECTED: &[&str] = &["pipe_rtt", "futex_rtt", "vfio_map_1", "vfio_unmap_1", "vfio_map_64", "vfio_unmap_64"];

/// An error naming any expected figure a measuring boot's report lacks.
pub fn check_complete(report: &Report) -> Result<()> {
    let missing: Vec<&str> =
        EXPECTED.iter().copied().filter(|name| report.figures.get(*name).is_none_or(|m| m.nanos.is_empty())).collect();
    if missing.is_empty() { Ok(()) } else { Err(anyhow!("missing figures: {}", missing.join(", "))) }
}
