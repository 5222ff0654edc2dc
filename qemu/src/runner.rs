//! Booting a machine and collecting its console until it exits.
//!
//! The system ends a run by writing its status to `isa-debug-exit`, which
//! makes QEMU exit with `(status << 1) | 1`; [`Ending`] maps that back. A
//! run that outlives its timeout is killed and reported as such.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::console::{LogLine, Tables};

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The system wrote this status to `isa-debug-exit`.
    Status(u8),
    /// The run was killed after its timeout.
    TimedOut(Duration),
    /// QEMU exited without a system status (its own error, or a signal).
    Qemu {
        /// QEMU's exit code, if it exited.
        code: Option<i32>,
        /// What QEMU printed on stderr.
        stderr: String,
    },
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Status(status) => write!(f, "system status {status}"),
            Ending::TimedOut(after) => write!(f, "timed out after {:.1} s", after.as_secs_f64()),
            Ending::Qemu { code, stderr } => {
                write!(f, "QEMU ended without a system status (exit code {code:?})")?;
                if !stderr.trim().is_empty() {
                    write!(f, ": {}", stderr.trim())?;
                }
                Ok(())
            }
        }
    }
}

/// Everything a run produced.
#[derive(Clone, Debug)]
pub struct Run {
    /// How it ended.
    pub ending: Ending,
    /// Every console line, in order.
    pub lines: Vec<LogLine>,
    /// Wall-clock time from starting QEMU to its exit.
    pub wall: Duration,
}

/// Maps QEMU's exit code to how the run ended.
pub fn ending_of(code: Option<i32>, stderr: String) -> Ending {
    match code {
        Some(code) if code & 1 == 1 => Ending::Status(((code >> 1) & 0x7f) as u8),
        code => Ending::Qemu { code, stderr },
    }
}

/// How a run that printed `console_bytes` on the console ended. QEMU exits
/// with 1 both for its own errors (an unknown device, say) and for a system
/// status of 0; a system always writes to the console before it ends, so
/// a silent run with an error message is QEMU's failure.
fn ending_of_run(code: Option<i32>, stderr: String, console_bytes: usize) -> Ending {
    if code == Some(1) && console_bytes == 0 && !stderr.trim().is_empty() {
        return Ending::Qemu { code, stderr };
    }
    ending_of(code, stderr)
}

/// Starts `command` (a QEMU command line), decodes its console with
/// `tables`, calls `on_line` for each line as it arrives, and waits at most
/// `timeout` for it to exit.
pub fn run(mut command: Command, tables: &Tables, timeout: Duration, mut on_line: impl FnMut(&LogLine)) -> Result<Run> {
    let mut console = tables.console();
    let mut console_bytes = 0;
    let mut lines = Vec::new();
    let mut collect = |line: LogLine| {
        on_line(&line);
        lines.push(line);
    };
    let exit = watch(&mut command, timeout, |_, bytes| {
        console_bytes += bytes.len();
        console.feed(bytes, &mut collect);
    })?;
    console.finish(&mut collect);
    let ending = if exit.timed_out {
        Ending::TimedOut(timeout)
    } else {
        ending_of_run(exit.status.code(), exit.stderr, console_bytes)
    };
    Ok(Run { ending, lines, wall: exit.wall })
}

/// How a process [`watch`] ran came to an end.
#[derive(Debug)]
pub struct Exit {
    /// Its exit status (after the kill, if it timed out).
    pub status: ExitStatus,
    /// Whether it outlived its timeout and was killed.
    pub timed_out: bool,
    /// Everything it wrote on stderr.
    pub stderr: String,
    /// Wall-clock time from starting it to its exit.
    pub wall: Duration,
}

/// Starts `command` with its output piped, hands every piece of its stdout
/// to `on_output` with the time since the start as the piece arrives, and
/// kills it if it is still running after `timeout`. Output still in the
/// pipe when it exits is handed over too, before this returns.
pub fn watch(command: &mut Command, timeout: Duration, mut on_output: impl FnMut(Duration, &[u8])) -> Result<Exit> {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
    let mut stdout = child.stdout.take().context("QEMU stdout")?;
    let mut stderr = child.stderr.take().context("QEMU stderr")?;
    // Threads, so that a full stderr pipe cannot stall the process while
    // this one waits on stdout with a timeout.
    let (sender, receiver) = mpsc::channel::<(Duration, Vec<u8>)>();
    let reader = std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(read @ 1..) = stdout.read(&mut buffer) {
            if sender.send((started.elapsed(), buffer[..read].to_vec())).is_err() {
                break;
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut timed_out = false;
    loop {
        let Some(left) = timeout.checked_sub(started.elapsed()) else {
            timed_out = true;
            break;
        };
        match receiver.recv_timeout(left) {
            Ok((at, bytes)) => on_output(at, &bytes),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if timed_out {
        let _ = child.kill();
    }
    let status = child.wait().context("waiting for QEMU")?;
    let wall = started.elapsed();
    let _ = reader.join();
    for (at, bytes) in receiver.try_iter() {
        on_output(at, &bytes);
    }
    let stderr = errors.join().unwrap_or_default();
    Ok(Exit { status, timed_out, stderr, wall })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_exit_codes_carry_the_system_status() {
        assert_eq!(ending_of(Some(1), String::new()), Ending::Status(0));
        assert_eq!(ending_of(Some(15), String::new()), Ending::Status(7));
        assert_eq!(ending_of(Some(255), String::new()), Ending::Status(127));
        assert!(matches!(ending_of(Some(0), String::new()), Ending::Qemu { code: Some(0), .. }));
        assert!(matches!(ending_of(None, String::new()), Ending::Qemu { code: None, .. }));
    }

    #[test]
    fn a_silent_exit_1_with_an_error_is_qemus_failure_not_status_0() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo \"-device nosuch: 'nosuch' is not a valid device model name\" >&2; exit 1"]);
        let failed = run(command, &Tables::new(), Duration::from_secs(5), |_| {}).expect("sh starts");
        assert!(matches!(&failed.ending, Ending::Qemu { code: Some(1), stderr } if stderr.contains("nosuch")));
        let mut command = Command::new("sh");
        command.args(["-c", "echo the system ran; exit 1"]);
        let ran = run(command, &Tables::new(), Duration::from_secs(5), |_| {}).expect("sh starts");
        assert_eq!(ran.ending, Ending::Status(0));
    }

    #[test]
    fn a_run_that_outlives_its_timeout_is_killed() {
        let mut command = Command::new("sleep");
        command.arg("5");
        let run = run(command, &Tables::new(), Duration::from_millis(200), |_| {}).expect("sleep starts");
        assert_eq!(run.ending, Ending::TimedOut(Duration::from_millis(200)));
        assert!(run.wall < Duration::from_secs(4));
    }

    #[test]
    fn text_output_is_collected_line_by_line() {
        let mut command = Command::new("printf");
        command.arg("one\\ntwo\\n");
        let run = run(command, &Tables::new(), Duration::from_secs(5), |_| {}).expect("printf starts");
        let texts: Vec<_> = run.lines.iter().map(|line| line.text.as_str()).collect();
        assert_eq!(texts, ["one", "two"]);
    }
}
