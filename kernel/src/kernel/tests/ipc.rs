//! The IPC state machine: every ordering of call, receive and reply, dead
//! partners, badges and capability transfer.

use capabilities::ErrorCode;
use capabilities::abi::ipc::{Info, NONBLOCK};
use capabilities::abi::{Syscall, rights, slots};
use capabilities::manifest::BootObject;

use super::sim::{Outcome, Sim, cap, serve, server_and_client, task, two_clients};
use crate::kernel::Next;
use crate::task::TaskState;

const SERVER_EP: u64 = 8;
const CLIENT_EP: u64 = 8;

fn pair() -> Sim {
    Sim::boot(&server_and_client(), None, 1, 0)
}

#[test]
fn call_before_receive_queues_the_caller_until_the_server_takes_it() {
    let mut sim = pair();
    let client = sim.id("client");
    let server = sim.id("server");
    sim.run("client");
    sim.write_message(client, b"ping");
    assert_eq!(sim.sys(Syscall::Call, [CLIENT_EP, 4, 0, 0, 0, 0]), Outcome::Blocked);
    sim.expect_running("server");
    let [badge, len, info] = sim.sys(Syscall::Recv, [SERVER_EP, 0, 0, 0, 0, 0]).ok();
    assert_eq!((badge, len, Info(info).caps()), (0x77, 4, 0));
    assert_eq!(sim.message(server, 4), b"ping");
    sim.write_message(server, b"pong!");
    assert_eq!(sim.sys(Syscall::Reply, [u64::from(slots::REPLY), 5, 0, 0, 0, 0]).ok(), [0; 3]);
    assert_eq!(sim.result(client).ok(), [0, 5, 0]);
    assert_eq!(sim.message(client, 5), b"pong!");
    assert_eq!(
        sim.sys(Syscall::Reply, [u64::from(slots::REPLY), 0, 0, 0, 0, 0]).error(),
        ErrorCode::InvalidCapability,
        "a reply capability is used up by one reply"
    );
}

#[test]
fn receive_before_call_blocks_the_server_and_reply_recv_serves_in_a_loop() {
    let mut sim = pair();
    let client = sim.id("client");
    sim.expect_running("server");
    assert_eq!(sim.sys(Syscall::Recv, [SERVER_EP, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.expect_running("client");
    for round in 0..3u8 {
        sim.write_message(client, &[round]);
        assert_eq!(sim.sys(Syscall::Call, [CLIENT_EP, 1, 0, 0, 0, 0]), Outcome::Blocked);
        let server = sim.expect_running("server");
        assert_eq!(sim.result(server).ok(), [0x77, 1, 0]);
        assert_eq!(sim.message(server, 1), [round]);
        sim.write_message(server, &[round + 100]);
        assert_eq!(sim.sys(Syscall::ReplyRecv, [u64::from(slots::REPLY), 1, SERVER_EP, 0, 0, 0]), Outcome::Blocked);
        sim.expect_running("client");
        assert_eq!(sim.result(client).ok(), [0, 1, 0]);
        assert_eq!(sim.message(client, 1), [round + 100]);
    }
}

#[test]
fn send_without_reply_continues_once_taken() {
    let mut sim = pair();
    sim.run("client");
    assert_eq!(sim.sys(Syscall::Send, [CLIENT_EP, 0, NONBLOCK, 0, 0, 0]).error(), ErrorCode::WouldBlock);
    assert_eq!(sim.sys(Syscall::Send, [CLIENT_EP, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.expect_running("server");
    assert_eq!(sim.sys(Syscall::Recv, [SERVER_EP, 0, 0, 0, 0, 0]).ok()[0], 0x77);
    let client = sim.id("client");
    assert_eq!(sim.result(client).ok(), [0; 3], "the sender was released");
}

#[test]
fn receive_can_poll_or_time_out() {
    let mut sim = pair();
    let server = sim.expect_running("server");
    assert_eq!(sim.sys(Syscall::Recv, [SERVER_EP, NONBLOCK, 0, 0, 0, 0]).error(), ErrorCode::WouldBlock);
    assert_eq!(sim.sys(Syscall::Recv, [SERVER_EP, 0, 500, 0, 0, 0]), Outcome::Blocked);
    assert_eq!(sim.kernel.next_deadline(), Some(500));
    sim.m.now = 499;
    sim.expect_running("client");
    sim.sys(Syscall::Yield, [0; 6]);
    sim.m.now = 500;
    sim.expect_running("server");
    assert_eq!(sim.result(server).error(), ErrorCode::TimedOut);
}

#[test]
fn a_server_that_dies_holding_a_reply_wakes_its_caller_with_peer_died() {
    let mut sim = pair();
    let client = sim.id("client");
    sim.run("client");
    sim.sys(Syscall::Call, [CLIENT_EP, 0, 0, 0, 0, 0]);
    sim.expect_running("server");
    sim.sys(Syscall::Recv, [SERVER_EP, 0, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::Exit, [0; 6]);
    sim.expect_running("client");
    assert_eq!(sim.result(client).error(), ErrorCode::PeerDied);
    assert_eq!(sim.sys(Syscall::Call, [CLIENT_EP, 0, 0, 0, 0, 0]).error(), ErrorCode::PeerDied, "no receiver is left");
}

#[test]
fn a_caller_queued_when_the_only_receiver_dies_is_told() {
    let mut sim = pair();
    let client = sim.id("client");
    sim.run("client");
    assert_eq!(sim.sys(Syscall::Call, [CLIENT_EP, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.expect_running("server");
    sim.sys(Syscall::Exit, [0; 6]);
    sim.expect_running("client");
    assert_eq!(sim.result(client).error(), ErrorCode::PeerDied);
}

#[test]
fn replying_to_a_dead_caller_is_an_error_for_reply_only() {
    let mut sim = pair();
    sim.run("client");
    sim.sys(Syscall::Call, [CLIENT_EP, 0, 0, 0, 0, 0]);
    sim.expect_running("server");
    sim.sys(Syscall::Recv, [SERVER_EP, 0, 0, 0, 0, 0]).ok();
    let client = sim.id("client");
    sim.kernel.end_task(&mut sim.m, client, crate::task::Death::Exited(0));
    assert_eq!(sim.sys(Syscall::Reply, [u64::from(slots::REPLY), 0, 0, 0, 0, 0]).error(), ErrorCode::PeerDied);
}

#[test]
fn a_second_call_received_without_replying_abandons_the_first() {
    let mut sim = Sim::boot(&two_clients(("first", 1), ("second", 2)), None, 1, 0);
    let first = sim.id("first");
    sim.expect_running("first");
    sim.sys(Syscall::Call, [8, 0, 0, 0, 0, 0]);
    sim.expect_running("second");
    sim.sys(Syscall::Call, [8, 0, 0, 0, 0, 0]);
    sim.expect_running("server");
    assert_eq!(sim.sys(Syscall::Recv, [8, 0, 0, 0, 0, 0]).ok()[0], 1);
    assert_eq!(sim.sys(Syscall::Recv, [8, 0, 0, 0, 0, 0]).ok()[0], 2);
    assert_eq!(sim.result(first).error(), ErrorCode::NoReply);
}

#[test]
fn badges_identify_the_client_that_holds_the_capability() {
    let mut sim = Sim::boot(&two_clients(("alice", 0xa11ce), ("bob", 0xb0b)), None, 1, 0);
    sim.expect_running("alice");
    sim.sys(Syscall::Send, [8, 0, 0, 0, 0, 0]);
    sim.expect_running("bob");
    sim.sys(Syscall::Send, [8, 0, 0, 0, 0, 0]);
    sim.expect_running("server");
    assert_eq!(sim.sys(Syscall::Recv, [8, 0, 0, 0, 0, 0]).ok()[0], 0xa11ce);
    assert_eq!(sim.sys(Syscall::Recv, [8, 0, 0, 0, 0, 0]).ok()[0], 0xb0b);
}

#[test]
fn capabilities_travel_with_grant_into_the_receive_window_and_stay_revocable() {
    let mut sim = pair();
    let (client, server) = (sim.id("client"), sim.id("server"));
    sim.run("client");
    assert_eq!(sim.sys(Syscall::NotificationCreate, [20, 0, 0, 0, 0, 0]).ok(), [0; 3]);
    sim.send_caps(client, &[20, 21]);
    sim.sys(Syscall::Call, [CLIENT_EP, 0, 0, 0, 0, 0]);
    sim.expect_running("server");
    sim.window(server, 40, 4);
    let [_, _, info] = sim.sys(Syscall::Recv, [SERVER_EP, 0, 0, 0, 0, 0]).ok();
    assert_eq!(Info(info).caps(), 1, "the empty slot 21 is skipped");
    assert_eq!(sim.received(server), [40]);
    assert_eq!(sim.sys(Syscall::Signal, [40, 0, 0, 0, 0, 0]).ok(), [0; 3], "the server can use it");
    sim.sys(Syscall::Reply, [u64::from(slots::REPLY), 0, 0, 0, 0, 0]).ok();
    sim.run("client");
    assert_eq!(sim.sys(Syscall::Wait, [20, NONBLOCK, 0, 0, 0, 0]).ok()[0], 1, "the signal arrived");
    sim.sys(Syscall::CapRevoke, [20, 0, 0, 0, 0, 0]).ok();
    sim.run("server");
    assert_eq!(sim.sys(Syscall::Signal, [40, 0, 0, 0, 0, 0]).error(), ErrorCode::InvalidCapability);
}

#[test]
fn without_grant_or_window_no_capability_moves() {
    let send_only = cap(8, BootObject::Endpoint(0), rights::SEND, 0);
    let tasks = [task("server", 2, &[serve(8, 0)]), task("client", 1, &[send_only])];
    let mut sim = Sim::boot(&tasks, None, 1, 0);
    let (client, server) = (sim.id("client"), sim.id("server"));
    sim.run("client");
    sim.sys(Syscall::NotificationCreate, [20, 0, 0, 0, 0, 0]).ok();
    sim.send_caps(client, &[20]);
    sim.sys(Syscall::Send, [CLIENT_EP, 0, 0, 0, 0, 0]);
    sim.expect_running("server");
    sim.window(server, 40, 4);
    assert_eq!(Info(sim.sys(Syscall::Recv, [SERVER_EP, 0, 0, 0, 0, 0]).ok()[2]).caps(), 0);
    assert_eq!(sim.sys(Syscall::CapInfo, [40, 0, 0, 0, 0, 0]).error(), ErrorCode::InvalidCapability);
}

#[test]
fn wrong_rights_kinds_and_sizes_are_refused() {
    let mut sim = pair();
    sim.run("client");
    assert_eq!(sim.sys(Syscall::Recv, [CLIENT_EP, 0, 0, 0, 0, 0]).error(), ErrorCode::PermissionDenied);
    assert_eq!(sim.sys(Syscall::Call, [slots::SELF_TASK as u64, 0, 0, 0, 0, 0]).error(), ErrorCode::WrongKind);
    assert_eq!(sim.sys(Syscall::Call, [CLIENT_EP, 5000, 0, 0, 0, 0]).error(), ErrorCode::TooLarge);
    for slot in [0, 9, 127, 128, u64::MAX] {
        assert_eq!(sim.sys(Syscall::Call, [slot, 0, 0, 0, 0, 0]).error(), ErrorCode::InvalidCapability, "slot {slot}");
    }
}

#[test]
fn a_receive_window_of_four_billion_slots_costs_no_more_than_the_slots() {
    use std::sync::mpsc::{RecvTimeoutError, channel};
    let (done, finished) = channel();
    let worker = std::thread::spawn(move || {
        let mut sim = pair();
        let (client, server) = (sim.id("client"), sim.id("server"));
        sim.run("client");
        sim.sys(Syscall::NotificationCreate, [20, 0, 0, 0, 0, 0]).ok();
        sim.send_caps(client, &[20]);
        sim.sys(Syscall::Send, [CLIENT_EP, 0, 0, 0, 0, 0]);
        sim.run("server");
        // Wholly past the last slot, then from the last empty ones on.
        sim.window(server, 200, u32::MAX);
        assert_eq!(Info(sim.sys(Syscall::Recv, [SERVER_EP, 0, 0, 0, 0, 0]).ok()[2]).caps(), 0);
        sim.run("client");
        sim.sys(Syscall::Send, [CLIENT_EP, 0, 0, 0, 0, 0]);
        sim.run("server");
        sim.window(server, 126, u32::MAX);
        sim.sys(Syscall::Recv, [SERVER_EP, 0, 0, 0, 0, 0]).ok();
        assert_eq!(sim.received(server), [126]);
        let _ = done.send(());
    });
    match finished.recv_timeout(std::time::Duration::from_secs(2)) {
        Ok(()) => worker.join().expect("the transfers ran"),
        Err(RecvTimeoutError::Disconnected) => std::panic::resume_unwind(worker.join().expect_err("it panicked")),
        Err(RecvTimeoutError::Timeout) => panic!("the transfer walked the whole window, with interrupts off"),
    }
}

#[test]
fn a_reply_carries_capabilities_only_to_a_caller_whose_capability_grants_them() {
    let send_only = cap(8, BootObject::Endpoint(0), rights::SEND, 0);
    let tasks = [task("server", 2, &[serve(8, 0)]), task("client", 1, &[send_only])];
    let mut sim = Sim::boot(&tasks, None, 1, 0);
    let (client, server) = (sim.id("client"), sim.id("server"));
    sim.run("client");
    sim.window(client, 40, 4);
    assert_eq!(sim.sys(Syscall::Call, [CLIENT_EP, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.run("server");
    sim.sys(Syscall::Recv, [SERVER_EP, 0, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::NotificationCreate, [20, 0, 0, 0, 0, 0]).ok();
    sim.send_caps(server, &[20]);
    sim.sys(Syscall::Reply, [u64::from(slots::REPLY), 0, 0, 0, 0, 0]).ok();
    assert_eq!(Info(sim.woken(client).ok()[2]).caps(), 0, "no GRANT in the call, no capability in the reply");
    assert_eq!(sim.received(client), [] as [u32; 0]);
}

#[test]
fn call_numbers_never_repeat() {
    let mut sim = pair();
    let (client, server) = (sim.id("client"), sim.id("server"));
    sim.kernel.tasks[client.index()].calls = u64::from(u32::MAX) - 1;
    let reply_slot = crate::cspace::SlotId::new(server, u64::from(slots::REPLY)).expect("valid");
    let mut numbers = vec![];
    for _ in 0..2 {
        sim.run("client");
        assert_eq!(sim.sys(Syscall::Call, [CLIENT_EP, 0, 0, 0, 0, 0]), Outcome::Blocked);
        sim.run("server");
        sim.sys(Syscall::Recv, [SERVER_EP, 0, 0, 0, 0, 0]).ok();
        match sim.kernel.caps.get(reply_slot).map(|cap| cap.object) {
            Some(crate::cspace::Object::Reply { call, .. }) => numbers.push(call),
            other => panic!("no reply capability: {other:?}"),
        }
        sim.sys(Syscall::Reply, [u64::from(slots::REPLY), 0, 0, 0, 0, 0]).ok();
    }
    assert!(numbers[1] > numbers[0], "the counter wrapped: {numbers:?}");
}

/// One call wakes its receiver once, even when the receive was made with a
/// capability in the reply slot, which the call empties for the reply
/// capability: that deletion once woke the receiver a second time, so it
/// sat in the run queue twice and, after it exited and was reaped, ran
/// again on its freed page-table root. No system call puts an endpoint
/// capability in the reply slot any more (the test puts it there from
/// inside the kernel), and the wake-up order holds regardless.
#[test]
fn a_receive_on_the_reply_slot_is_woken_once() {
    let t_caps = [
        cap(8, BootObject::Endpoint(0), rights::RECEIVE, 0),
        cap(9, BootObject::Endpoint(1), rights::RECEIVE, 0),
        cap(10, BootObject::Notification(0), rights::ALL, 0),
    ];
    let a_caps =
        [cap(8, BootObject::Endpoint(0), rights::SEND, 0), cap(10, BootObject::Notification(0), rights::SEND, 0)];
    let mut sim = Sim::boot(&[task("t", 2, &t_caps), task("a", 1, &a_caps)], None, 2, 1);
    let (t, a) = (sim.id("t"), sim.id("a"));
    sim.run("t");
    let reply = u64::from(slots::REPLY);
    assert_eq!(sim.sys(Syscall::CapMove, [8, reply, 0, 0, 0, 0]).error(), ErrorCode::InvalidCapability);
    let from = crate::cspace::SlotId::new(t, 8).expect("valid slot");
    let to = crate::cspace::SlotId::new(t, reply).expect("valid slot");
    sim.kernel.caps.move_slot(from, to).expect("moves");
    assert_eq!(sim.sys(Syscall::Recv, [u64::from(slots::REPLY), 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.run("a");
    assert_eq!(sim.sys(Syscall::Call, [8, 0, 0, 0, 0, 0]), Outcome::Blocked);
    let copies: usize =
        sim.kernel.sched.snapshot().iter().map(|(_, queue)| queue.iter().filter(|&&x| x == t).count()).sum();
    assert_eq!(copies, 1, "t is in the run queues {copies} times");
    assert_eq!(sim.schedule(), Next::Resume(t));
    // The receive took the message; the reply capability is in its place.
    assert_eq!(sim.result(t), Outcome::Returned(0, [0, 0, 0]));
    sim.sys(Syscall::Reply, [u64::from(slots::REPLY), 0, 0, 0, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::Wait, [10, 0, 0, 0, 0, 0]), Outcome::Blocked);
    assert_eq!(sim.schedule(), Next::Resume(a), "t waits; only a can run");
    // What the second copy did: t ran while it was recorded as waiting,
    // exited, and a signal later made the dead, reaped task runnable.
    sim.run("a");
    sim.sys(Syscall::Signal, [10, 0, 0, 0, 0, 0]).ok();
    assert_eq!(sim.schedule(), Next::Resume(t));
    assert_eq!(sim.sys(Syscall::Exit, [0, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.kernel.reap(&mut sim.m);
    assert_eq!(sim.schedule(), Next::Resume(a));
    sim.sys(Syscall::Signal, [10, 0, 0, 0, 0, 0]).ok();
    assert!(matches!(sim.kernel.task(t).state, TaskState::Dead { reaped: true, .. }), "t stays dead");
    assert_eq!(sim.schedule(), Next::Resume(a));
}
