//! The hostile task's accomplice: an echo client whose calls set up the kernel cases it needs.
//!
//! The hostile task serves the echo protocol on `hostile-echo`; this task
//! calls it, and each step happens when the hostile task receives:
//!
//! 1. `SignalIt` twice, each with a notification capability, which the
//!    hostile task receives into a receive window four billion slots long.
//! 2. `MintBadge`: the reply carries a badged capability to an endpoint
//!    nobody receives on yet. This task sends on it (while the hostile
//!    task sleeps) and blocks until the hostile task revokes it.
//! 3. `Reverse`, whose bytes are the outcome of that send (the error code
//!    as a little-endian `u16`, 0 for success), for the hostile task to check.
#![no_std]
#![no_main]

use capabilities::ErrorCode;
use echo_api::{Operation, Reply, Request};
use userlib::cap::{Cap, Endpoint};
use userlib::ipc::Buffer;
use userlib::objects;

userlib::cap_slot!(HOSTILE: Endpoint = "hostile");
userlib::entry!(main);

/// Slots: the notification it sends, and where the minted capability lands.
const NOTE: u32 = 40;
const MINTED: u32 = 41;

fn ask(buffer: &mut Buffer, operation: Operation, bytes: &[u8], send: &[u32], window: u32) -> Result<u64, ErrorCode> {
    buffer.set_send_caps(send);
    buffer.set_window(window, u32::from(window != 0));
    let called = HOSTILE.get().call_with(buffer, &Request { operation, bytes });
    buffer.set_send_caps(&[]);
    buffer.set_window(0, 0);
    match buffer.decode::<Reply<'_>>(called?.len)? {
        Reply::Done { badge } | Reply::Reversed { badge, .. } => Ok(badge),
        Reply::Failed(code) => Err(code),
    }
}

fn main() -> u64 {
    let Some(mut buffer) = Buffer::take() else { return 1 };
    if objects::create_notification(NOTE).is_err() {
        defmt::error!("accomplice: no notification (the policy must allow one object)");
        return 1;
    }
    for _ in 0..2 {
        if let Err(code) = ask(&mut buffer, Operation::SignalIt, b"", &[NOTE], 0) {
            defmt::info!("accomplice: signal-it answered {}", code);
        }
    }
    let sent = match ask(&mut buffer, Operation::MintBadge, b"", &[], MINTED) {
        Ok(_) => Cap::<Endpoint>::at(MINTED).send(&mut buffer, 0, 0, 0),
        Err(code) => Err(code),
    };
    let _ = Cap::<Endpoint>::at(MINTED).delete();
    let code = sent.err().map_or(0, ErrorCode::code);
    defmt::info!("accomplice: the send on the minted capability ended with code {=u16}", code);
    match ask(&mut buffer, Operation::Reverse, &code.to_le_bytes(), &[], 0) {
        Ok(_) => 0,
        Err(_) => 1,
    }
}
