//! The kernel's `defmt` logger: each frame becomes one console record
//! tagged [`logframe::TAG_KERNEL`].
//!
//! A frame is gathered in a buffer and written whole at release, so a
//! record is never interleaved with another. A log call made while another
//! is in progress (only possible from an exception inside the first) is
//! dropped rather than corrupting the outer frame.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

use capabilities::logframe;

use crate::console;

const BUFFER_SIZE: usize = 1024;

struct Frame {
    encoder: defmt::Encoder,
    bytes: [u8; BUFFER_SIZE],
    len: usize,
}

struct Shared(UnsafeCell<Frame>);

// SAFETY: one CPU with interrupts off in the kernel; `DEPTH` makes the
// outermost acquire..release pair the only user of the frame.
unsafe impl Sync for Shared {}

static FRAME: Shared =
    Shared(UnsafeCell::new(Frame { encoder: defmt::Encoder::new(), bytes: [0; BUFFER_SIZE], len: 0 }));
static DEPTH: AtomicUsize = AtomicUsize::new(0);

fn with_frame(action: impl FnOnce(&mut Frame)) {
    // SAFETY: called only between an outermost acquire and its release,
    // where no other reference to the frame exists (see `Shared`).
    action(unsafe { &mut *FRAME.0.get() });
}

fn append(frame_bytes: &mut [u8; BUFFER_SIZE], len: &mut usize, bytes: &[u8]) {
    let room = BUFFER_SIZE - *len;
    let take = bytes.len().min(room);
    frame_bytes[*len..*len + take].copy_from_slice(&bytes[..take]);
    *len += take;
}

#[defmt::global_logger]
struct Logger;

// SAFETY: acquire/release bracket every frame; `DEPTH` guarantees only the
// outermost pair touches the shared frame, and nothing runs concurrently.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        if DEPTH.fetch_add(1, Ordering::Acquire) == 0 {
            with_frame(|frame| {
                frame.len = 0;
                let Frame { encoder, bytes, len } = frame;
                encoder.start_frame(|data| append(bytes, len, data));
            });
        }
    }

    unsafe fn flush() {}

    unsafe fn release() {
        if DEPTH.load(Ordering::Relaxed) == 1 {
            with_frame(|frame| {
                let Frame { encoder, bytes, len } = frame;
                encoder.end_frame(|data| append(bytes, len, data));
                console::write_record(logframe::TAG_KERNEL, &bytes[..*len]);
            });
        }
        DEPTH.fetch_sub(1, Ordering::Release);
    }

    unsafe fn write(data: &[u8]) {
        if DEPTH.load(Ordering::Relaxed) == 1 {
            with_frame(|frame| {
                let Frame { encoder, bytes, len } = frame;
                encoder.write(data, |data| append(bytes, len, data));
            });
        }
    }
}
