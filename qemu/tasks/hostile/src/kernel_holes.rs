//! The system-call sequences that crashed or fooled the kernel (issue 23).
//!
//! Each case here made the kernel panic, hang with interrupts off, or let
//! a revoked capability keep working before its fix; now each must get an
//! error code and leave the kernel serving everyone else.

use capabilities::abi::ipc::NONBLOCK;
use capabilities::abi::{rights, slots};
use echo_api::{Operation, Reply, Request};
use userlib::testkit::prelude::*;

use crate::{BAR_VIRT, NOTIFICATION, PCI, QUOTA_DEVICE, STORM_DEVICE, WINDOW, claim, release_group, wait_unowned};

userlib::cap_slot!(ECHO_REQUESTS: Endpoint = "echo-requests");

/// Slots: an endpoint nobody receives on, and the badged copy of it the
/// accomplice gets.
const TARGET: u32 = 76;
const MINTED: u32 = 77;
/// The badge of that copy.
const MINTED_BADGE: u64 = 0x5eed;
/// Longest a receive into any window may take (the kernel once walked a
/// four-billion-slot window with interrupts off).
const QUICK_US: u64 = 200_000;

/// Receives the accomplice's next echo request and checks its operation.
fn next_request(buffer: &mut Buffer, expected: Operation) -> Result<heapless::Vec<u8, 8>, ErrorCode> {
    let message = ECHO_REQUESTS.get().receive(buffer, 0, 5_000_000)?;
    let request: Request<'_> = buffer.decode(message.len)?;
    if request.operation != expected {
        defmt::error!("  the accomplice asked for {}, not {}", request.operation, expected);
        return Err(ErrorCode::Malformed);
    }
    Ok(request.bytes.iter().copied().take(8).collect())
}

/// Answers the request just received, with the capabilities in `send`.
fn answer(buffer: &mut Buffer, reply: &Reply<'_>, send: &[u32]) -> Result<(), ErrorCode> {
    let len = buffer.encode(reply)?;
    buffer.set_send_caps(send);
    let replied = own::REPLY.reply(buffer, len);
    buffer.set_send_caps(&[]);
    replied
}

/// A `LogWrite` from the device's registers: the kernel used to follow the
/// mapping to a frame that is no RAM and panic.
pub fn log_write_from_device_memory_is_a_bad_address(buffer: &mut Buffer) -> Outcome {
    check_ok!(claim(buffer, STORM_DEVICE));
    let granted = check_ok!(pci_api::client::acquire(PCI.get(), buffer, STORM_DEVICE, WINDOW));
    let Some(bar) = granted.bar(0) else {
        check!(false, "BAR0");
        return Ok(());
    };
    let registers = check_ok!(Mapping::map(own::SPACE, Cap::<userlib::cap::DeviceMemory>::at(bar), BAR_VIRT, false));
    for (offset, len) in [(0, 4), (0x80, 64), (0xff0, 32)] {
        let written = syscall::log_write_raw(BAR_VIRT + offset, len);
        check_eq!(written, Err(ErrorCode::BadAddress), "no log frame from device registers");
    }
    check_eq!(registers.read32(0), Some(0x0100_00ed), "the device is still there, and so is the kernel");
    check_ok!(registers.unmap());
    check!(pci_api::client::release(PCI.get(), buffer, STORM_DEVICE).is_ok());
    check_ok!(release_group(buffer));
    check!(wait_unowned(buffer, STORM_DEVICE));
    Ok(())
}

/// The accomplice sends a capability into a window four billion slots long:
/// the kernel walks only the slots there are.
pub fn a_huge_receive_window_costs_no_more_than_the_slots(buffer: &mut Buffer) -> Outcome {
    // Past the last slot: nothing to take.
    let took = check_ok!(timed_signal_request(buffer, 200));
    defmt::info!("  a capability offered to a window of 2^32 slots past the end: {=u64} us", took);
    check!(took < QUICK_US, "the receive took no time");
    check!(buffer.received_caps().is_empty(), "no slot in the window");
    check_ok!(answer(buffer, &Reply::Failed(ErrorCode::InvalidArgument), &[]));
    // From slot 120 on: the first empty slot, and nothing past the last.
    let took = check_ok!(timed_signal_request(buffer, 120));
    check!(took < QUICK_US);
    let received = buffer.received_caps();
    check_eq!(received.as_slice(), &[120]);
    let note = Cap::<Notification>::at(120);
    check_ok!(note.signal());
    check_ok!(note.delete());
    check_ok!(answer(buffer, &Reply::Done { badge: 0 }, &[]));
    Ok(())
}

/// Takes the accomplice's next `SignalIt` request into a receive window of
/// 2^32 slots from `first`; the µs the receive took.
fn timed_signal_request(buffer: &mut Buffer, first: u32) -> Result<u64, ErrorCode> {
    buffer.set_window(first, u32::MAX);
    let start = syscall::now();
    let request = next_request(buffer, Operation::SignalIt);
    let took = syscall::now().saturating_sub(start);
    buffer.set_window(0, 0);
    request.map(|_| took)
}

/// The accomplice blocks sending on a badged capability this task minted;
/// revoking it withdraws the message and ends the send with an error.
pub fn revoking_a_capability_withdraws_the_send_blocked_on_it(buffer: &mut Buffer) -> Outcome {
    let target = check_ok!(objects::create_endpoint(TARGET));
    check_ok!(next_request(buffer, Operation::MintBadge));
    let minted = check_ok!(target.mint_to(MINTED, rights::SEND, MINTED_BADGE));
    check_ok!(answer(buffer, &Reply::Done { badge: MINTED_BADGE }, &[MINTED]));
    // While this task sleeps, the accomplice sends on its copy and
    // blocks: nobody receives on the endpoint yet.
    let sleep = Cap::<Notification>::at(NOTIFICATION);
    let _ = sleep.wait(NONBLOCK, 0);
    check_eq!(sleep.wait(0, 10_000), Err(ErrorCode::TimedOut));
    check_ok!(minted.revoke());
    let queued = target.receive(buffer, NONBLOCK, 0);
    check_eq!(queued.map(|message| message.badge), Err(ErrorCode::WouldBlock), "no message under the revoked badge");
    let outcome = check_ok!(next_request(buffer, Operation::Reverse));
    let code = u16::from_le_bytes([outcome.first().copied().unwrap_or(0), outcome.get(1).copied().unwrap_or(0)]);
    check_ok!(answer(buffer, &Reply::Done { badge: 0 }, &[]));
    check_eq!(
        ErrorCode::from_code(code.into()),
        Some(ErrorCode::InvalidCapability),
        "the send ended with the capability"
    );
    check_ok!(minted.delete());
    check_ok!(target.delete());
    Ok(())
}

/// This task watches itself until the kernel says no; the IOMMU server's
/// watch on it, which a claim needs, is the server's own to make. (It runs
/// before this task's first claim, when the server watches it for the
/// first time.)
pub fn watching_itself_crowds_out_no_servers_watch(buffer: &mut Buffer) -> Outcome {
    let mut own = 0u32;
    let refused = loop {
        match own::TASK.watch(Cap::<Notification>::at(NOTIFICATION), 1 << (own % 64) | 1 << 63) {
            Ok(()) => own += 1,
            Err(code) => break code,
        }
        check!(own < 1000, "a task's own watches are bounded");
    };
    defmt::info!("  {=u32} watches of itself, then {}", own, refused);
    check_eq!(refused, ErrorCode::QuotaExceeded);
    check_ok!(claim(buffer, QUOTA_DEVICE));
    check_ok!(release_group(buffer));
    check!(wait_unowned(buffer, QUOTA_DEVICE));
    Ok(())
}

/// Slot 3 is where a receive puts the reply capability of a call, and
/// each call empties it: a receive made with an endpoint capability moved
/// there was once ended by the very call it took, which woke the receiver
/// twice (a dead task could later run again on freed page tables). No
/// capability but a reply may enter it now.
pub fn nothing_but_a_reply_enters_the_reply_slot(_buffer: &mut Buffer) -> Outcome {
    let requests = ECHO_REQUESTS.get();
    check_eq!(requests.move_to(slots::REPLY).map(|_| ()), Err(ErrorCode::InvalidCapability), "move");
    check_eq!(requests.copy_to(slots::REPLY, rights::RECEIVE).map(|_| ()), Err(ErrorCode::InvalidCapability), "copy");
    let notification = Cap::<Notification>::at(NOTIFICATION);
    check_eq!(notification.mint_to(slots::REPLY, rights::SEND, 9).map(|_| ()), Err(ErrorCode::InvalidCapability));
    check_eq!(objects::create_endpoint(slots::REPLY).map(|_| ()), Err(ErrorCode::InvalidCapability), "create");
    check!(requests.info().is_ok(), "the endpoint capability stayed where it was");
    Ok(())
}
