//! Progress of long commands: which step runs, how many of how many are
//! done, and the time so far.
//!
//! `test`, `bench` and `fuzz` run many steps of seconds to minutes each.
//! A person at a terminal sees each step start and end; under `CI=true`
//! only the end, one line per step, goes to stderr (the commands leave
//! out their other chatter there), so a CI log reads as a list of steps.

use std::time::{Duration, Instant};

/// Whether the command runs under CI (`CI=true`, as CI services set it).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// The steps of one command.
pub struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    quiet: bool,
}

impl Progress {
    /// `total` steps, starting now; quiet under CI.
    pub fn new(total: usize) -> Self {
        Self { total, done: 0, started: Instant::now(), quiet: under_ci() }
    }

    /// Whether only one line per step is wanted (under CI).
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// Says step `name` starts (not when quiet).
    pub fn start(&self, name: &str) {
        if !self.quiet {
            eprintln!("{}", line(self.done, self.total, self.started.elapsed(), &format!("{name} ...")));
        }
    }

    /// Counts step `name` done, which `outcome` sums up, in one line.
    pub fn finish(&mut self, name: &str, outcome: &str) {
        self.done = (self.done + 1).min(self.total);
        eprintln!("{}", line(self.done, self.total, self.started.elapsed(), &format!("{name}: {outcome}")));
    }
}

/// `[ 3/21  1:05] text`: steps done of all, and minutes and seconds since
/// the start.
pub fn line(done: usize, total: usize, elapsed: Duration, text: &str) -> String {
    let width = total.to_string().len();
    let seconds = elapsed.as_secs();
    format!("[{done:>width$}/{total} {:>2}:{:02}] {text}", seconds / 60, seconds % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_steps_done_of_all_and_the_time_so_far() {
        assert_eq!(line(3, 21, Duration::from_secs(65), "scenario iommu ..."), "[ 3/21  1:05] scenario iommu ...");
        assert_eq!(line(0, 4, Duration::from_millis(900), "x"), "[0/4  0:00] x");
        assert_eq!(line(120, 120, Duration::from_secs(3600 + 7), "y"), "[120/120 60:07] y");
    }

    #[test]
    fn finishing_counts_up_and_never_past_the_total() {
        let mut progress = Progress { total: 1, done: 0, started: Instant::now(), quiet: true };
        progress.finish("a", "ok");
        progress.finish("b", "ok");
        assert_eq!(progress.done, 1);
    }
}
