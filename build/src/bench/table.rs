//! The results table: one row per compared figure, "ours" beside Linux with the ratio, as Markdown and JSON.
//!
//! Rows are created with the Linux side filled in (or marked unavailable with the reason); our own
//! figures are added with [`Table::set_ours`], which fills every row comparing against that figure.

use serde::Serialize;
use serde_json::{Value, json};

use super::stats::Stats;

/// One of our own figures, the key rows compare against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Figure {
    /// Seconds from QEMU start until the first task runs.
    BootToReady,
    /// IPC call+reply round trip between two address spaces, in nanoseconds.
    IpcRoundTrip,
    /// IOMMU map throughput, one 4 KiB page per request, in pages per second.
    Map1,
    /// IOMMU unmap throughput (IOTLB invalidation included), one page per request, in pages per second.
    Unmap1,
    /// IOMMU map throughput, 64 pages per request, in pages per second.
    Map64,
    /// IOMMU unmap throughput (IOTLB invalidation included), 64 pages per request, in pages per second.
    Unmap64,
    /// From a DMA the IOMMU blocks to the device's owner holding the fault record, in nanoseconds.
    FaultRecord,
    /// Bytes of the files QEMU boots, in KiB.
    BootFiles,
    /// RAM in use once the system is up, in KiB.
    Resident,
}

/// What a row's numbers are, which decides formatting and which direction is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unit {
    /// Seconds (lower is better).
    Seconds,
    /// Nanoseconds (lower is better).
    Nanoseconds,
    /// Pages per second (higher is better).
    PagesPerSecond,
    /// Kibibytes (lower is better).
    Kibibytes,
}

impl Unit {
    /// Whether a larger number is the better result.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Unit::PagesPerSecond)
    }

    /// The scale and suffix that print `value` readably (µs for thousands of ns, M for millions...).
    fn scale(self, value: f64) -> (f64, &'static str) {
        let magnitude = value.abs();
        match self {
            Unit::Seconds => (1.0, "s"),
            Unit::Nanoseconds if magnitude >= 1e6 => (1e6, "ms"),
            Unit::Nanoseconds if magnitude >= 1e3 => (1e3, "µs"),
            Unit::Nanoseconds => (1.0, "ns"),
            Unit::PagesPerSecond if magnitude >= 1e6 => (1e6, "M pages/s"),
            Unit::PagesPerSecond if magnitude >= 1e3 => (1e3, "k pages/s"),
            Unit::PagesPerSecond => (1.0, "pages/s"),
            Unit::Kibibytes if magnitude >= 1024.0 => (1024.0, "MiB"),
            Unit::Kibibytes => (1.0, "KiB"),
        }
    }
}

/// One side of a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// Not measured yet (our own figures, until the rest of the bench fills them).
    Pending,
    /// Measured in this run.
    Measured {
        /// Median and spread.
        stats: Stats,
        /// Every sample, in the row's unit.
        samples: Vec<f64>,
        /// The same figure in TSC cycles per operation, where it was taken.
        cycles: Option<Stats>,
    },
    /// Could not be measured on this machine, and why.
    Unavailable(String),
}

impl Cell {
    /// A measured cell from samples; unavailable if there are none or they are not numbers.
    pub fn from_samples(samples: Vec<f64>, cycles: Option<&[f64]>) -> Self {
        match Stats::of(&samples) {
            Some(stats) => Cell::Measured { stats, samples, cycles: cycles.and_then(Stats::of) },
            None => Cell::Unavailable("no valid samples".into()),
        }
    }

    fn stats(&self) -> Option<&Stats> {
        match self {
            Cell::Measured { stats, .. } => Some(stats),
            _ => None,
        }
    }

    fn markdown(&self, unit: Unit) -> String {
        match self {
            Cell::Pending => "—".into(),
            Cell::Unavailable(reason) => format!("unavailable: {}", reason.replace('|', "/").replace('\n', " ")),
            Cell::Measured { stats, .. } => {
                let (scale, suffix) = unit.scale(stats.median);
                let number = |value: f64| significant(value / scale);
                format!(
                    "{} {suffix} ({}–{}, n={})",
                    number(stats.median),
                    number(stats.p10),
                    number(stats.p90),
                    stats.n
                )
            }
        }
    }

    fn json(&self) -> Value {
        match self {
            Cell::Pending => json!({ "status": "pending" }),
            Cell::Unavailable(reason) => json!({ "status": "unavailable", "reason": reason }),
            Cell::Measured { stats, samples, cycles } => {
                json!({ "status": "measured", "stats": stats, "samples": samples, "cycles_per_op": cycles })
            }
        }
    }
}

/// `value` with three significant digits (at least the integer part), for tables.
fn significant(value: f64) -> String {
    let magnitude = value.abs();
    let decimals = if magnitude >= 100.0 {
        0
    } else if magnitude >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$}")
}

/// One compared figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Stable identifier, e.g. `ipc/futex` (the JSON key people script against).
    pub key: String,
    /// What is compared, for people.
    pub label: String,
    /// Unit of both sides.
    pub unit: Unit,
    /// Which of our figures this row compares against; `None` for Linux-only extras and for rows whose
    /// own side is filled when they are made (the scale rows).
    pub ours_figure: Option<Figure>,
    /// Our side.
    pub ours: Cell,
    /// Linux's side.
    pub linux: Cell,
}

impl Row {
    /// Ours ÷ Linux, of the medians, when both sides were measured.
    pub fn ratio(&self) -> Option<f64> {
        let (ours, linux) = (self.ours.stats()?, self.linux.stats()?);
        (linux.median != 0.0).then(|| ours.median / linux.median)
    }

    fn ratio_markdown(&self) -> String {
        let Some(ratio) = self.ratio() else { return "—".into() };
        let ours_better = if self.unit.higher_is_better() { ratio > 1.0 } else { ratio < 1.0 };
        let verdict = if (ratio - 1.0).abs() < 0.005 {
            "even"
        } else if ours_better {
            "ours better"
        } else {
            "Linux better"
        };
        format!("{} ({verdict})", significant(ratio))
    }
}

/// The whole results table, with the context needed to read it.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Title line of the Markdown file.
    pub title: String,
    /// Context lines (machine, kernel, how long it took...), one Markdown bullet each.
    pub notes: Vec<String>,
    /// Rows in order.
    pub rows: Vec<Row>,
    /// Extra machine-readable context for the JSON (the peer's details).
    pub details: Value,
}

impl Table {
    /// Sets our side of every row that compares against `figure`; returns how many rows it filled.
    pub fn set_ours(&mut self, figure: Figure, cell: Cell) -> usize {
        let mut filled = 0;
        for row in self.rows.iter_mut().filter(|row| row.ours_figure == Some(figure)) {
            row.ours = cell.clone();
            filled += 1;
        }
        filled
    }

    /// The table as Markdown: a title, the notes, the legend and one line per row.
    pub fn markdown(&self) -> String {
        let mut out = format!("# {}\n\n", self.title);
        for note in &self.notes {
            out.push_str(&format!("- {note}\n"));
        }
        out.push_str(
            "\nEach cell: median (10th–90th percentile, number of runs). Ratio: ours ÷ Linux, of the medians.\n\n",
        );
        out.push_str("| figure | ours (median, spread) | Linux (median, spread) | ratio |\n");
        out.push_str("| --- | --- | --- | --- |\n");
        for row in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                row.label.replace('|', "/"),
                row.ours.markdown(row.unit),
                row.linux.markdown(row.unit),
                row.ratio_markdown()
            ));
        }
        out
    }

    /// The table as JSON: every row with both sides' statistics and samples, plus the details.
    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                json!({
                    "key": row.key,
                    "label": row.label,
                    "unit": row.unit,
                    "higher_is_better": row.unit.higher_is_better(),
                    "ours_figure": row.ours_figure,
                    "ours": row.ours.json(),
                    "linux": row.linux.json(),
                    "ratio_ours_over_linux": row.ratio(),
                })
            })
            .collect();
        json!({
            "title": self.title,
            "notes": self.notes,
            "spread": "p10-p90 (linear interpolation between closest ranks); min and max also given",
            "rows": rows,
            "details": self.details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, unit: Unit, ours_figure: Option<Figure>, linux: Cell) -> Row {
        Row { key: key.into(), label: format!("label {key}"), unit, ours_figure, ours: Cell::Pending, linux }
    }

    fn table() -> Table {
        Table {
            title: "Benchmarks".into(),
            notes: vec!["machine: q35".into()],
            rows: vec![
                row(
                    "ipc/futex",
                    Unit::Nanoseconds,
                    Some(Figure::IpcRoundTrip),
                    Cell::from_samples(vec![50_000.0, 60_000.0, 70_000.0], None),
                ),
                row(
                    "ipc/pipe",
                    Unit::Nanoseconds,
                    Some(Figure::IpcRoundTrip),
                    Cell::Unavailable("no packages | offline".into()),
                ),
                row(
                    "map/64",
                    Unit::PagesPerSecond,
                    Some(Figure::Map64),
                    Cell::from_samples(vec![1.0e6, 1.5e6, 2.0e6], Some(&[1000.0, 1100.0, 1200.0])),
                ),
                row("boot/clock", Unit::Seconds, None, Cell::from_samples(vec![1.8, 1.9], None)),
            ],
            details: json!({ "kernel": "6.1" }),
        }
    }

    #[test]
    fn ours_fills_every_row_of_its_figure_and_gives_a_ratio() {
        let mut table = table();
        assert_eq!(table.rows[0].ratio(), None);
        let filled = table.set_ours(Figure::IpcRoundTrip, Cell::from_samples(vec![30_000.0], None));
        assert_eq!(filled, 2);
        assert_eq!(table.rows[0].ratio(), Some(0.5));
        assert_eq!(table.rows[1].ratio(), None, "Linux side unavailable");
        assert_eq!(table.set_ours(Figure::Unmap1, Cell::Pending), 0);
        table.set_ours(Figure::Map64, Cell::from_samples(vec![3.0e6], None));
        assert_eq!(table.rows[2].ratio(), Some(2.0));
    }

    #[test]
    fn markdown_has_one_line_per_row_with_units_spread_and_verdicts() {
        let mut table = table();
        table.set_ours(Figure::IpcRoundTrip, Cell::from_samples(vec![30_000.0], None));
        table.set_ours(Figure::Map64, Cell::from_samples(vec![1.0e6], None));
        let text = table.markdown();
        let lines: Vec<&str> = text.lines().filter(|line| line.starts_with("| ")).collect();
        assert_eq!(lines.len(), 2 + 4, "{text}");
        assert!(text.starts_with("# Benchmarks\n\n- machine: q35\n"), "{text}");
        assert_eq!(
            lines[2],
            concat!(
                "| label ipc/futex | 30.0 µs (30.0–30.0, n=1) ",
                "| 60.0 µs (52.0–68.0, n=3) | 0.50 (ours better) |"
            )
        );
        assert_eq!(lines[3], "| label ipc/pipe | 30.0 µs (30.0–30.0, n=1) | unavailable: no packages / offline | — |");
        assert_eq!(
            lines[4],
            concat!(
                "| label map/64 | 1.00 M pages/s (1.00–1.00, n=1) ",
                "| 1.50 M pages/s (1.10–1.90, n=3) | 0.67 (Linux better) |"
            )
        );
        assert_eq!(lines[5], "| label boot/clock | — | 1.85 s (1.81–1.89, n=2) | — |");
    }

    #[test]
    fn json_carries_stats_samples_status_and_ratio() {
        let mut table = table();
        table.set_ours(Figure::IpcRoundTrip, Cell::from_samples(vec![30_000.0], None));
        let value = table.json();
        let rows = value["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0]["key"], "ipc/futex");
        assert_eq!(rows[0]["unit"], "nanoseconds");
        assert_eq!(rows[0]["ours_figure"], "ipc-round-trip");
        assert_eq!(rows[0]["linux"]["stats"]["median"], 60_000.0);
        assert_eq!(rows[0]["linux"]["samples"].as_array().map(Vec::len), Some(3));
        assert_eq!(rows[0]["ratio_ours_over_linux"], 0.5);
        assert_eq!(rows[1]["linux"]["status"], "unavailable");
        assert_eq!(rows[1]["linux"]["reason"], "no packages | offline");
        assert_eq!(rows[2]["ours"]["status"], "pending");
        assert_eq!(rows[2]["higher_is_better"], true);
        assert_eq!(rows[2]["linux"]["cycles_per_op"]["median"], 1100.0);
        assert_eq!(rows[3]["ours_figure"], Value::Null);
        assert_eq!(value["details"]["kernel"], "6.1");
    }
}
