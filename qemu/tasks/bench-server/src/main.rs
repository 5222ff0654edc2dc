//! The null server of the IPC benchmark: every call is answered at once
//! with an empty reply, so a round trip measures the kernel alone.
#![no_std]
#![no_main]

use userlib::cap::own;
use userlib::ipc::Buffer;

userlib::cap_slot!(REQUESTS: Endpoint = "requests");
userlib::entry!(main);

fn main() -> u64 {
    let Some(mut buffer) = Buffer::take() else { return 1 };
    let requests = REQUESTS.get();
    let mut next = requests.receive(&mut buffer, 0, 0);
    loop {
        next = match next {
            Ok(_) => own::REPLY.reply_receive(&mut buffer, 0, requests, 0, 0),
            Err(_) => requests.receive(&mut buffer, 0, 0),
        };
    }
}
