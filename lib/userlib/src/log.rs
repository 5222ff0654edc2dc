//! The task's `defmt` logger: a frame is gathered in a buffer and handed to
//! the kernel whole, which tags it with this task.

use core::cell::RefCell;

use capabilities::abi::LOG_FRAME_MAX;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;

use crate::syscall;

struct Frame {
    encoder: defmt::Encoder,
    bytes: [u8; LOG_FRAME_MAX],
    len: usize,
    /// Nesting of acquire calls; only the outermost frame is written.
    depth: usize,
}

static FRAME: Mutex<CriticalSectionRawMutex, RefCell<Frame>> =
    Mutex::new(RefCell::new(Frame { encoder: defmt::Encoder::new(), bytes: [0; LOG_FRAME_MAX], len: 0, depth: 0 }));

fn append(bytes: &mut [u8; LOG_FRAME_MAX], len: &mut usize, data: &[u8]) {
    let take = data.len().min(LOG_FRAME_MAX - *len);
    bytes[*len..*len + take].copy_from_slice(&data[..take]);
    *len += take;
}

fn with_frame(action: impl FnOnce(&mut Frame)) {
    FRAME.lock(|frame| action(&mut frame.borrow_mut()));
}

#[defmt::global_logger]
struct Logger;

// SAFETY: a task has one thread, and `depth` makes only the outermost
// acquire..release pair write into the frame, so frames never interleave.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        with_frame(|frame| {
            frame.depth += 1;
            if frame.depth == 1 {
                frame.len = 0;
                let Frame { encoder, bytes, len, .. } = frame;
                encoder.start_frame(|data| append(bytes, len, data));
            }
        });
    }

    unsafe fn flush() {}

    unsafe fn release() {
        with_frame(|frame| {
            if frame.depth == 1 {
                let Frame { encoder, bytes, len, .. } = frame;
                encoder.end_frame(|data| append(bytes, len, data));
                // A frame the kernel refuses cannot be reported anywhere else.
                let _ = syscall::log_write(&bytes[..*len]);
            }
            frame.depth = frame.depth.saturating_sub(1);
        });
    }

    unsafe fn write(data: &[u8]) {
        with_frame(|frame| {
            if frame.depth == 1 {
                let Frame { encoder, bytes, len, .. } = frame;
                encoder.write(data, |data| append(bytes, len, data));
            }
        });
    }
}

/// A task has a single thread and no signal handlers, so a critical
/// section has nothing to exclude.
struct SingleThread;

critical_section::set_impl!(SingleThread);

// SAFETY: with one thread per task there is no concurrent code for a
// critical section to exclude, so doing nothing upholds its contract.
unsafe impl critical_section::Impl for SingleThread {
    unsafe fn acquire() -> critical_section::RawRestoreState {}
    unsafe fn release(_state: critical_section::RawRestoreState) {}
}
