//! The IPC buffer and the IPC calls: messages live in the task's buffer
//! page, which the kernel copies from and into.
//!
//! There is one [`Buffer`] per task; holding it `&mut` while a call runs
//! means no Rust reference into the page is alive when the kernel writes it.

use core::sync::atomic::{AtomicBool, Ordering};

use capabilities::ErrorCode;
use capabilities::abi::ipc::{DATA_OFFSET, Info, MAX_CAPS, MSG_MAX, header};
use capabilities::abi::{Syscall, layout};
use serde::{Deserialize, Serialize};

use crate::cap::{Cap, Endpoint, Reply};
use crate::syscall::raw;

static TAKEN: AtomicBool = AtomicBool::new(false);

/// Exclusive access to this task's IPC buffer page.
pub struct Buffer {
    _private: (),
}

/// What a receive delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// The sender's badge, or the notification bits.
    pub badge: u64,
    /// Message length in bytes.
    pub len: usize,
    /// Capabilities received and whether it was a notification.
    pub info: Info,
}

impl Buffer {
    /// The buffer, the first time it is asked for.
    pub fn take() -> Option<Buffer> {
        (!TAKEN.swap(true, Ordering::Acquire)).then_some(Buffer { _private: () })
    }

    fn page(&self) -> *mut u8 {
        layout::IPC_BUFFER as *mut u8
    }

    fn read_word(&self, offset: usize) -> u32 {
        // SAFETY: the kernel maps the IPC buffer page at `IPC_BUFFER`,
        // writable, for the task's whole life; `offset` is a header field
        // inside the page; the kernel only writes it during our calls.
        unsafe { (self.page().add(offset) as *const u32).read_volatile() }
    }

    fn write_word(&mut self, offset: usize, value: u32) {
        // SAFETY: as in `read_word`; `&mut self` makes this the only access.
        unsafe { (self.page().add(offset) as *mut u32).write_volatile(value) }
    }

    /// The message area.
    pub fn message(&self) -> &[u8] {
        // SAFETY: the data area lies inside the mapped page; the shared
        // borrow of `self` keeps any call (which needs `&mut`) from running
        // while the slice is alive.
        unsafe { core::slice::from_raw_parts(self.page().add(DATA_OFFSET), MSG_MAX) }
    }

    /// The message area, for writing the next message.
    pub fn message_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `message`, with exclusive access through `&mut self`.
        unsafe { core::slice::from_raw_parts_mut(self.page().add(DATA_OFFSET), MSG_MAX) }
    }

    /// Capabilities to send with the next message (at most four).
    pub fn set_send_caps(&mut self, slots: &[u32]) {
        let count = slots.len().min(MAX_CAPS);
        self.write_word(header::SEND_COUNT, count as u32);
        for (index, slot) in slots.iter().take(count).enumerate() {
            self.write_word(header::SEND_SLOTS + 4 * index, *slot);
        }
    }

    /// Where received capabilities go: `len` slots from `base` (0: none).
    pub fn set_window(&mut self, base: u32, len: u32) {
        self.write_word(header::WINDOW_BASE, base);
        self.write_word(header::WINDOW_LEN, len);
    }

    /// The slots the last receive put capabilities in.
    pub fn received_caps(&self) -> heapless::Vec<u32, MAX_CAPS> {
        let count = (self.read_word(header::RECEIVED_COUNT) as usize).min(MAX_CAPS);
        (0..count).map(|index| self.read_word(header::RECEIVED_SLOTS + 4 * index)).collect()
    }

    /// Encodes `value` as the next message; returns its length.
    pub fn encode<T: Serialize>(&mut self, value: &T) -> Result<usize, ErrorCode> {
        postcard::to_slice(value, self.message_mut()).map(|used| used.len()).map_err(|_| ErrorCode::TooLarge)
    }

    /// Decodes the first `len` bytes of the message area.
    pub fn decode<'a, T: Deserialize<'a>>(&'a self, len: usize) -> Result<T, ErrorCode> {
        let bytes = self.message().get(..len).ok_or(ErrorCode::Malformed)?;
        postcard::from_bytes(bytes).map_err(|_| ErrorCode::Malformed)
    }
}

fn received([badge, len, info]: [u64; 3]) -> Received {
    Received { badge, len: len as usize, info: Info(info) }
}

impl Cap<Endpoint> {
    /// Sends the first `len` bytes of the message and waits for the reply.
    pub fn call(self, buffer: &mut Buffer, len: usize) -> Result<Received, ErrorCode> {
        let _ = buffer;
        raw(Syscall::Call, [self.slot().into(), len as u64, 0, 0, 0, 0]).map(received)
    }

    /// Encodes `request`, calls, and returns the reply's length.
    pub fn call_with<T: Serialize>(self, buffer: &mut Buffer, request: &T) -> Result<Received, ErrorCode> {
        let len = buffer.encode(request)?;
        self.call(buffer, len)
    }

    /// Calls with `request`, sending the capabilities in `send` and taking
    /// a capability the reply carries into slot `window` (0: none), and
    /// decodes the reply; the buffer's send list and window are cleared
    /// afterwards.
    pub fn ask<Q: Serialize, R: serde::de::DeserializeOwned>(
        self,
        buffer: &mut Buffer,
        request: &Q,
        send: &[u32],
        window: u32,
    ) -> Result<R, ErrorCode> {
        buffer.set_send_caps(send);
        buffer.set_window(window, u32::from(window != 0));
        let result = self.call_with(buffer, request);
        buffer.set_send_caps(&[]);
        buffer.set_window(0, 0);
        buffer.decode::<R>(result?.len)
    }

    /// Sends without waiting for a reply (`flags`: `ipc::NONBLOCK`;
    /// `timeout_us` 0 waits as long as it takes).
    pub fn send(self, buffer: &mut Buffer, len: usize, flags: u64, timeout_us: u64) -> Result<(), ErrorCode> {
        let _ = buffer;
        raw(Syscall::Send, [self.slot().into(), len as u64, flags, timeout_us, 0, 0]).map(|_| ())
    }

    /// Receives a message (or bound-notification bits).
    pub fn receive(self, buffer: &mut Buffer, flags: u64, timeout_us: u64) -> Result<Received, ErrorCode> {
        let _ = buffer;
        raw(Syscall::Recv, [self.slot().into(), flags, timeout_us, 0, 0, 0]).map(received)
    }
}

impl Cap<Reply> {
    /// Answers with the first `len` bytes of the message.
    pub fn reply(self, buffer: &mut Buffer, len: usize) -> Result<(), ErrorCode> {
        let _ = buffer;
        raw(Syscall::Reply, [self.slot().into(), len as u64, 0, 0, 0, 0]).map(|_| ())
    }

    /// Answers (if the caller still waits) and receives the next message on
    /// `endpoint`.
    pub fn reply_receive(
        self,
        buffer: &mut Buffer,
        len: usize,
        endpoint: Cap<Endpoint>,
        flags: u64,
        timeout_us: u64,
    ) -> Result<Received, ErrorCode> {
        let _ = buffer;
        let args = [self.slot().into(), len as u64, endpoint.slot().into(), flags, timeout_us, 0];
        raw(Syscall::ReplyRecv, args).map(received)
    }
}
