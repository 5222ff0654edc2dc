//! IPC round trips between two processes: a pipe ping-pong and a futex ping-pong.
//!
//! Both are the Linux analogue of our call+reply between two address spaces: the parent sends, the child
//! (a separate process, so a separate address space) answers, and the parent measures the round trip.
//! On the benchmark machine's single CPU every round trip is two context switches, as with our IPC.

use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;

use crate::sys::{self, Forked, Mapping};
use crate::timing::{Sample, Samples};

/// What a case measures: `runs` samples, each the mean over `iterations` round trips.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Number of samples.
    pub runs: usize,
    /// Round trips per sample (averaged, so timer cost and resolution vanish).
    pub iterations: usize,
    /// Round trips done first and thrown away (page faults, cold caches, the child's first scheduling).
    pub warmup: usize,
}

/// Pipe ping-pong: one byte each way over two pipes; the sample is the round-trip time.
pub fn pipe_ping_pong(shape: Shape) -> io::Result<Samples> {
    let (mut to_child_rx, mut to_child_tx) = io::pipe()?;
    let (mut to_parent_rx, mut to_parent_tx) = io::pipe()?;
    match sys::fork()? {
        Forked::Child => {
            drop(to_child_tx);
            drop(to_parent_rx);
            let mut byte = [0u8; 1];
            // Echo until the parent closes its end (read returns 0).
            let code = loop {
                match to_child_rx.read(&mut byte) {
                    Ok(1) => {
                        if to_parent_tx.write_all(&byte).is_err() {
                            break 2;
                        }
                    }
                    Ok(_) => break 0,
                    Err(_) => break 1,
                }
            };
            sys::exit_child(code)
        }
        Forked::Parent(child) => {
            drop(to_child_rx);
            drop(to_parent_tx);
            let mut byte = [0u8; 1];
            let mut round_trip = || -> io::Result<()> {
                to_child_tx.write_all(&[7])?;
                to_parent_rx.read_exact(&mut byte)
            };
            let result = measure(shape, &mut round_trip);
            drop(to_child_tx);
            finish_child(child, result)
        }
    }
}

/// The futex word's states: whose turn it is, or the end of the benchmark.
const PARENT_TURN: u32 = 0;
const CHILD_TURN: u32 = 1;
const STOP: u32 = 2;

/// Futex ping-pong: a word in shared memory says whose turn it is; each side flips it, wakes the other
/// with `FUTEX_WAKE` and sleeps in `FUTEX_WAIT` until it is flipped back. No spinning: with one CPU the
/// other side can only run once this one sleeps.
pub fn futex_ping_pong(shape: Shape) -> io::Result<Samples> {
    let shared = Mapping::anonymous(4096, true)?;
    let word = shared.word();
    word.store(PARENT_TURN, Ordering::SeqCst);
    match sys::fork()? {
        Forked::Child => {
            let code = loop {
                let state = word.load(Ordering::Acquire);
                if state == STOP {
                    break 0;
                }
                if state == PARENT_TURN {
                    if sys::futex_wait(word, PARENT_TURN).is_err() {
                        break 1;
                    }
                    continue;
                }
                // A compare-exchange, so a STOP the parent wrote meanwhile (after an error) is never lost.
                if word.compare_exchange(CHILD_TURN, PARENT_TURN, Ordering::AcqRel, Ordering::Acquire).is_ok()
                    && sys::futex_wake(word, 1).is_err()
                {
                    break 2;
                }
            };
            sys::exit_child(code)
        }
        Forked::Parent(child) => {
            let mut round_trip = || -> io::Result<()> {
                word.store(CHILD_TURN, Ordering::Release);
                sys::futex_wake(word, 1)?;
                while word.load(Ordering::Acquire) == CHILD_TURN {
                    sys::futex_wait(word, CHILD_TURN)?;
                }
                Ok(())
            };
            let result = measure(shape, &mut round_trip);
            word.store(STOP, Ordering::Release);
            let woke = sys::futex_wake(word, 1);
            let result = finish_child(child, result);
            woke.and(result)
        }
    }
}

/// Runs the warm-up, then `runs` timed batches of `iterations` round trips.
fn measure(shape: Shape, round_trip: &mut impl FnMut() -> io::Result<()>) -> io::Result<Samples> {
    for _ in 0..shape.warmup {
        round_trip()?;
    }
    let mut samples = Samples::default();
    for _ in 0..shape.runs {
        let start = Sample::now();
        for _ in 0..shape.iterations {
            round_trip()?;
        }
        samples.push(start.per(shape.iterations));
    }
    Ok(samples)
}

/// Reaps the child and turns its failure into an error if the measurement itself went well.
fn finish_child(child: libc::pid_t, result: io::Result<Samples>) -> io::Result<Samples> {
    let code = sys::wait_child(child)?;
    let samples = result?;
    if code != 0 {
        return Err(io::Error::other(format!("the child process ended with status {code}")));
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Shape = Shape { runs: 3, iterations: 50, warmup: 5 };

    #[test]
    fn pipe_ping_pong_runs_on_the_host() {
        let samples = pipe_ping_pong(SMALL).expect("pipes and fork work on the host");
        assert_eq!(samples.nanos.len(), 3);
        assert!(samples.nanos.iter().all(|&ns| ns > 0.0));
    }

    #[test]
    fn futex_ping_pong_runs_on_the_host() {
        let samples = futex_ping_pong(SMALL).expect("futexes and fork work on the host");
        assert_eq!(samples.cycles.len(), 3);
        assert!(samples.nanos.iter().all(|&ns| ns > 0.0));
    }
}
