//! The echo server: a small, real server for the kernel scenarios. It
//! checks every request's badge against the operation asked for, decodes
//! with bounds, and answers anything malformed with an error code.
#![no_std]
#![no_main]

use capabilities::abi::rights;
use capabilities::{ErrorCode, badge};
use echo_api::{Operation, Reply, Request};
use heapless::Vec;
use userlib::cap::{Cap, Endpoint, Notification, SlotPool, own};
use userlib::ipc::{Buffer, Received};

userlib::cap_slot!(REQUESTS: Endpoint = "requests");
userlib::cap_slot!(MINTER: Endpoint = "minter");
userlib::entry!(main);

/// Slot incoming capabilities land in (one at a time).
const WINDOW: u32 = 40;
/// Longest byte string `Reverse` handles.
const MAX_BYTES: usize = 256;

fn allowed(badge: u64, operation: Operation) -> bool {
    if badge & badge::SERVER_MINTED != 0 {
        // Badges this server minted grant only the harmless operation.
        operation == Operation::Reverse
    } else {
        badge::allows(badge, operation as u8)
    }
}

struct Server {
    pool: SlotPool,
    minted: u64,
}

/// What to answer: the reply, and a capability to send with it.
type Answer = (Reply<'static>, Option<u32>);

impl Server {
    fn handle(&mut self, buffer: &Buffer, message: Received, scratch: &mut Vec<u8, MAX_BYTES>) -> Answer {
        let request: Request<'_> = match buffer.decode(message.len) {
            Ok(request) => request,
            Err(error) => return (Reply::Failed(error), None),
        };
        if !allowed(message.badge, request.operation) {
            defmt::warn!("badge {=u64:#x} may not invoke {}", message.badge, request.operation);
            return (Reply::Failed(ErrorCode::PermissionDenied), None);
        }
        match request.operation {
            Operation::Reverse => {
                if scratch.extend_from_slice(request.bytes).is_err() {
                    return (Reply::Failed(ErrorCode::TooLarge), None);
                }
                scratch.reverse();
                (Reply::Done { badge: message.badge }, None)
            }
            Operation::SignalIt => {
                let Some(&slot) = buffer.received_caps().first() else {
                    return (Reply::Failed(ErrorCode::InvalidArgument), None);
                };
                let result = Cap::<Notification>::at(slot).signal();
                let _ = Cap::<Notification>::at(slot).delete();
                match result {
                    Ok(()) => (Reply::Done { badge: 0 }, None),
                    Err(error) => (Reply::Failed(error), None),
                }
            }
            Operation::MintBadge => {
                let Some(slot) = self.pool.take() else { return (Reply::Failed(ErrorCode::QuotaExceeded), None) };
                self.minted += 1;
                let new_badge = badge::SERVER_MINTED | self.minted;
                match MINTER.get().mint_to(slot, rights::SEND, new_badge) {
                    Ok(_) => (Reply::Done { badge: new_badge }, Some(slot)),
                    Err(error) => {
                        self.pool.give(slot);
                        (Reply::Failed(error), None)
                    }
                }
            }
        }
    }
}

fn main() -> u64 {
    let Some(mut buffer) = Buffer::take() else { return 1 };
    let requests: Cap<Endpoint> = REQUESTS.get();
    let mut server = Server { pool: SlotPool::new(), minted: 0 };
    defmt::info!("echo server ready");
    buffer.set_window(WINDOW, 1);
    let mut next = requests.receive(&mut buffer, 0, 0);
    loop {
        let message = match next {
            Ok(message) => message,
            Err(error) => {
                defmt::warn!("receive failed: {}", error);
                next = requests.receive(&mut buffer, 0, 0);
                continue;
            }
        };
        let mut scratch = Vec::new();
        let (reply, send) = server.handle(&buffer, message, &mut scratch);
        // A capability a request brought but the operation did not use is
        // not kept: the window must be free for the next one.
        for slot in buffer.received_caps() {
            let _ = Cap::<Notification>::at(slot).delete();
        }
        let reply = match reply {
            Reply::Done { badge } if !scratch.is_empty() => Reply::Reversed { badge, bytes: &scratch },
            other => other,
        };
        let len = buffer.encode(&reply).unwrap_or(0);
        buffer.set_send_caps(send.as_slice());
        next = own::REPLY.reply_receive(&mut buffer, len, requests, 0, 0);
    }
}
