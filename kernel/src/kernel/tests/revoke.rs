//! Revocation reaches in-flight operations: a send, receive, wait, binding
//! or interrupt route made with a capability ends when it is revoked.

use capabilities::ErrorCode;
use capabilities::abi::ipc::NONBLOCK;
use capabilities::abi::{Syscall, rights, slots};
use capabilities::manifest::BootObject;

use super::sim::{Outcome, Sim, cap, task};

const REPLY: u64 = slots::REPLY as u64;

/// The server gives the client a badged capability on its own endpoint
/// (slot 40 of the client, a child of the server's slot 20).
fn badged_client() -> Sim {
    let server_caps = [
        cap(8, BootObject::Endpoint(0), rights::RECEIVE, 0),
        cap(9, BootObject::Endpoint(0), rights::SEND | rights::GRANT | rights::MINT, 0),
    ];
    let tasks = [task("server", 2, &server_caps), task("client", 1, &[super::sim::client(8, 0, 7)])];
    let mut sim = Sim::boot(&tasks, None, 1, 0);
    let (server, client) = (sim.id("server"), sim.id("client"));
    sim.run("client");
    sim.window(client, 40, 1);
    assert_eq!(sim.sys(Syscall::Call, [8, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.run("server");
    assert_eq!(sim.sys(Syscall::Recv, [8, 0, 0, 0, 0, 0]).ok()[0], 7);
    sim.sys(Syscall::CapMint, [9, 20, u64::from(rights::SEND), 0x55, 0, 0]).ok();
    sim.send_caps(server, &[20]);
    sim.sys(Syscall::Reply, [REPLY, 0, 0, 0, 0, 0]).ok();
    sim.send_caps(server, &[]);
    assert_eq!(sim.received(client), [40]);
    sim
}

/// `blocked` makes `call`, which must block; `revoker` revokes its slot
/// 20, the capability the call was made with or its parent, and the call
/// ends with `InvalidCapability`.
fn revoking_slot_20_ends(sim: &mut Sim, blocked: &str, call: Syscall, args: [u64; 6], revoker: &str) {
    let id = sim.id(blocked);
    sim.run(blocked);
    assert_eq!(sim.sys(call, args), Outcome::Blocked, "{call:?} blocks");
    sim.run(revoker);
    sim.sys(Syscall::CapRevoke, [20, 0, 0, 0, 0, 0]).ok();
    assert_eq!(sim.woken(id).error(), ErrorCode::InvalidCapability, "the {call:?} ends with the capability");
}

#[test]
fn revoking_the_capability_a_blocked_send_was_made_with_withdraws_the_message() {
    let mut sim = badged_client();
    // Nobody receives yet, so the send blocks.
    revoking_slot_20_ends(&mut sim, "client", Syscall::Send, [40, 0, 0, 0, 0, 0], "server");
    assert_eq!(
        sim.sys(Syscall::Recv, [8, NONBLOCK, 0, 0, 0, 0]).error(),
        ErrorCode::WouldBlock,
        "no message under the revoked badge"
    );
}

#[test]
fn revoking_the_capability_of_a_blocked_call_ends_the_call() {
    let mut sim = badged_client();
    revoking_slot_20_ends(&mut sim, "client", Syscall::Call, [40, 0, 0, 0, 0, 0], "server");
    assert_eq!(sim.sys(Syscall::Recv, [8, NONBLOCK, 0, 0, 0, 0]).error(), ErrorCode::WouldBlock);
}

/// A boss hands a worker a copy (slot 30) of its capability in slot
/// `from` through endpoint 1, keeping the copy it made in slot 20.
fn hand_over(sim: &mut Sim, from: u64, rights: u32) {
    let (boss, worker) = (sim.id("boss"), sim.id("worker"));
    sim.run("worker");
    sim.window(worker, 30, 1);
    assert_eq!(sim.sys(Syscall::Recv, [9, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.run("boss");
    sim.sys(Syscall::CapCopy, [from, 20, u64::from(rights), 0, 0, 0]).ok();
    sim.send_caps(boss, &[20]);
    sim.sys(Syscall::Send, [9, 0, 0, 0, 0, 0]).ok();
    sim.send_caps(boss, &[]);
    assert_eq!(sim.received(worker), [30]);
}

fn boss_and_worker(worker_caps: &[capabilities::manifest::BootCap]) -> Sim {
    let boss_caps = [
        cap(8, BootObject::Endpoint(0), rights::ALL, 0),
        cap(9, BootObject::Endpoint(1), rights::SEND | rights::GRANT, 0),
        cap(10, BootObject::Notification(0), rights::ALL, 0),
    ];
    let mut caps = vec![cap(9, BootObject::Endpoint(1), rights::RECEIVE, 0)];
    caps.extend_from_slice(worker_caps);
    Sim::boot(&[task("boss", 2, &boss_caps), task("worker", 1, &caps)], None, 2, 1)
}

#[test]
fn revoking_a_receive_capability_ends_the_receive_made_with_it() {
    let mut sim = boss_and_worker(&[]);
    hand_over(&mut sim, 8, rights::RECEIVE);
    revoking_slot_20_ends(&mut sim, "worker", Syscall::Recv, [30, 0, 0, 0, 0, 0], "boss");
    assert_eq!(
        sim.sys(Syscall::Send, [8, 0, NONBLOCK, 0, 0, 0]).error(),
        ErrorCode::WouldBlock,
        "no receiver is left waiting with the revoked capability"
    );
}

#[test]
fn revoking_a_notification_capability_ends_waits_bindings_and_interrupt_routes_made_with_it() {
    let irq = cap(10, BootObject::Interrupt { gsi: 4, level: false }, rights::ACK, 0);
    let mut sim = boss_and_worker(&[irq, cap(11, BootObject::Endpoint(0), rights::RECEIVE, 0)]);
    hand_over(&mut sim, 10, rights::SEND | rights::RECEIVE);
    let worker = sim.id("worker");
    sim.run("worker");
    let vector = sim.sys(Syscall::IrqBind, [10, 30, 0b100, 0, 0, 0]).ok()[0] as u8;
    sim.sys(Syscall::NotificationBind, [30, 0, 0, 0, 0, 0]).ok();
    revoking_slot_20_ends(&mut sim, "worker", Syscall::Wait, [30, 0, 0, 0, 0, 0], "boss");
    sim.kernel.interrupt(&mut sim.m, vector);
    assert_eq!(
        sim.sys(Syscall::Wait, [10, NONBLOCK, 0, 0, 0, 0]).error(),
        ErrorCode::WouldBlock,
        "the interrupt no longer signals it"
    );
    sim.run("worker");
    assert_eq!(sim.sys(Syscall::Recv, [11, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.run("boss");
    sim.sys(Syscall::Signal, [10, 0, 0, 0, 0, 0]).ok();
    assert!(
        sim.kernel.tasks()[worker.index()].is_blocked(),
        "the binding is gone: the signal does not end the receive"
    );
    assert_eq!(sim.sys(Syscall::Wait, [10, NONBLOCK, 0, 0, 0, 0]).ok()[0], 1, "the bits wait for the boss");
}

#[test]
fn a_binding_follows_its_capability_when_moved_and_ends_when_it_is_deleted() {
    let mut sim = boss_and_worker(&[cap(11, BootObject::Endpoint(0), rights::RECEIVE, 0)]);
    hand_over(&mut sim, 10, rights::SEND | rights::RECEIVE);
    let worker = sim.id("worker");
    sim.run("worker");
    sim.sys(Syscall::NotificationBind, [30, 0, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::CapMove, [30, 31, 0, 0, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::Recv, [11, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.run("boss");
    sim.sys(Syscall::Signal, [10, 0, 0, 0, 0, 0]).ok();
    assert_eq!(sim.woken(worker).ok()[0], 1, "still bound after the move");
    sim.run("worker");
    sim.sys(Syscall::CapDelete, [31, 0, 0, 0, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::Recv, [11, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.run("boss");
    sim.sys(Syscall::Signal, [10, 0, 0, 0, 0, 0]).ok();
    assert!(sim.kernel.tasks()[worker.index()].is_blocked(), "deleting the capability unbound it");
}

/// An interrupt route ends with the interrupt capability it was made
/// with, though other copies keep the interrupt itself alive (before the
/// fix, only the notification capability's deletion ended a route, so a
/// worker whose interrupt capability was revoked went on being signalled
/// by the device); the route follows that capability through `CapMove`.
#[test]
fn revoking_the_interrupt_capability_a_route_was_made_with_ends_the_route() {
    let boss_caps = [
        cap(9, BootObject::Endpoint(0), rights::SEND | rights::GRANT, 0),
        cap(10, BootObject::Interrupt { gsi: 4, level: false }, rights::ACK | rights::GRANT, 0),
    ];
    let worker_caps =
        [cap(9, BootObject::Endpoint(0), rights::RECEIVE, 0), cap(11, BootObject::Notification(0), rights::ALL, 0)];
    let mut sim = Sim::boot(&[task("boss", 2, &boss_caps), task("worker", 1, &worker_caps)], None, 1, 1);
    let (boss, worker) = (sim.id("boss"), sim.id("worker"));
    sim.run("worker");
    sim.window(worker, 30, 1);
    assert_eq!(sim.sys(Syscall::Recv, [9, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.run("boss");
    sim.sys(Syscall::CapCopy, [10, 20, u64::from(rights::ACK), 0, 0, 0]).ok();
    sim.send_caps(boss, &[20]);
    sim.sys(Syscall::Send, [9, 0, 0, 0, 0, 0]).ok();
    sim.run("worker");
    let vector = sim.sys(Syscall::IrqBind, [30, 11, 0b1, 0, 0, 0]).ok()[0] as u8;
    sim.sys(Syscall::CapMove, [30, 31, 0, 0, 0, 0]).ok();
    sim.kernel.interrupt(&mut sim.m, vector);
    assert_eq!(sim.sys(Syscall::Wait, [11, NONBLOCK, 0, 0, 0, 0]).ok()[0], 1, "still routed after the move");
    sim.run("boss");
    sim.sys(Syscall::CapRevoke, [20, 0, 0, 0, 0, 0]).ok();
    sim.kernel.interrupt(&mut sim.m, vector);
    sim.run("worker");
    assert_eq!(
        sim.sys(Syscall::Wait, [11, NONBLOCK, 0, 0, 0, 0]).error(),
        ErrorCode::WouldBlock,
        "the revoked worker gets no more of the device's interrupts"
    );
    sim.run("boss");
    assert_eq!(
        sim.sys(Syscall::IrqAck, [10, 0, 0, 0, 0, 0]),
        Outcome::Returned(0, [2, 0, 0]),
        "the boss's copy lives, and both interrupts were counted"
    );
}
