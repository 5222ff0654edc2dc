//! The console protocol on COM1: tagged binary log records and plain text.
//!
//! See `capabilities::logframe` for the framing. Each record carries the
//! writer's tag and the time in microseconds since the machine started, so
//! the host prints every line, kernel's and tasks', on one clock.

use capabilities::logframe;

use crate::{serial, time};

/// Writes one record of `payload` tagged `tag`, stamped with the time now.
pub fn write_record(tag: u8, payload: &[u8]) {
    let len = payload.len().min(usize::from(u16::MAX)) as u16;
    serial::write(&logframe::header(tag, len, time::micros()));
    serial::write(&payload[..usize::from(len)]);
}

/// Plain text, for panics: readable without any decoding.
pub struct Text;

impl core::fmt::Write for Text {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        // Never emit the record marker: text must stay text.
        for chunk in text.as_bytes().split(|&byte| byte == logframe::RECORD_MARKER) {
            serial::write(chunk);
        }
        Ok(())
    }
}
