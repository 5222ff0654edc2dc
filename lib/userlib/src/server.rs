//! A server's receive loop: each request answered, notification bits handed over.

use capabilities::abi::ipc::MAX_CAPS;
use heapless::Vec;
use serde::Serialize;

use crate::cap::{Cap, Endpoint, own};
use crate::ipc::{Buffer, Received};

/// What a server does with what its endpoint receives.
pub trait Serve {
    /// The protocol's reply.
    type Reply: Serialize;

    /// Answers the request just received (its bytes and capabilities are
    /// in `buffer`): the reply, and the capabilities to send with it.
    fn request(&mut self, buffer: &mut Buffer, message: Received) -> (Self::Reply, Vec<u32, MAX_CAPS>);

    /// The reply sent instead of one that does not fit a message.
    fn too_large(&self) -> Self::Reply;

    /// Bits arrived on the notification bound to the endpoint.
    fn notified(&mut self, buffer: &mut Buffer, bits: u64);
}

/// Receives on `requests` forever, answering each request with
/// `ReplyRecv` and handing notification bits to `server`.
pub fn serve(requests: Cap<Endpoint>, buffer: &mut Buffer, server: &mut impl Serve) -> ! {
    let mut next = requests.receive(buffer, 0, 0);
    loop {
        let message = match next {
            Ok(message) => message,
            Err(code) => {
                warn!("receive failed: {}", code);
                next = requests.receive(buffer, 0, 0);
                continue;
            }
        };
        if message.info.is_notification() {
            server.notified(buffer, message.badge);
            next = requests.receive(buffer, 0, 0);
            continue;
        }
        let (reply, caps) = server.request(buffer, message);
        let len = buffer.encode(&reply).or_else(|_| buffer.encode(&server.too_large())).unwrap_or(0);
        buffer.set_send_caps(&caps);
        next = own::REPLY.reply_receive(buffer, len, requests, 0, 0);
    }
}
