//! The fast paths: the IPC fast path takes the calls it should, a call
//! returns straight to its caller only when the scheduler would keep it
//! running, and wherever they run the kernel ends up exactly as the
//! general path and the scheduler leave it.
//!
//! Every test drives two identical kernels with the same system calls:
//! one the way the machine layer does (fast path first, then the general
//! path, straight back to the caller or through the scheduler), one
//! through the general path and the scheduler only, and compares their
//! whole observable state after each call.

use std::fmt::Write;

use capabilities::abi::ipc::NONBLOCK;
use capabilities::abi::{Syscall, rights, slots};
use capabilities::manifest::BootObject;
use xorshift::XorShift;

use super::sim::{Sim, cap, client, serve, server_and_client, task, two_clients};
use crate::cspace::SlotId;
use crate::task::TaskId;

const EP: u64 = 8;
const REPLY: u64 = slots::REPLY as u64;

/// Everything a task or the scheduler could observe.
fn snapshot(sim: &Sim) -> String {
    let kernel = &sim.kernel;
    let mut out = String::new();
    for (index, task) in kernel.tasks.iter().enumerate() {
        let id = TaskId::new(index as u8);
        let reply = SlotId::new(id, REPLY).ok().and_then(|slot| kernel.caps.get(slot).copied());
        let _ = writeln!(
            out,
            "{}: {:?} {:?} deadline {:?} calls {} reply {:?} message {:?} received {:?}",
            task.name,
            task.state,
            task.frame,
            task.deadline,
            task.calls,
            reply,
            sim.message(id, 8),
            sim.received(id)
        );
    }
    for (handle, endpoint) in kernel.endpoints.iter() {
        let queue: Vec<_> = endpoint.queue.iter().collect();
        let _ = writeln!(
            out,
            "{handle:?}: {:?} {queue:?} refs {} receivers {}",
            endpoint.waiting, endpoint.refs, endpoint.receivers
        );
    }
    for (handle, notification) in kernel.notifications.iter() {
        let _ = writeln!(out, "{handle:?}: word {:#x} bound {:?}", notification.word, notification.bound);
    }
    let _ = writeln!(
        out,
        "current {:?} quantum {} ready {:?}",
        kernel.current,
        kernel.quantum_end,
        kernel.sched.snapshot()
    );
    out
}

/// Which way a system call went through the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// The IPC fast path.
    Fast,
    /// The general path, straight back to the caller.
    Continue,
    /// The general path and the scheduler.
    General,
}

/// Makes `call` as the running task, then schedules, as the machine layer
/// does (reaping dead tasks before resuming one): through the fast path
/// first and straight back to the caller where that is allowed when
/// `fast`, through the general path and the scheduler only otherwise.
fn enter(sim: &mut Sim, call: Syscall, args: [u64; 6], fast: bool) -> Path {
    let id = sim.kernel.current().expect("a task runs");
    let mut frame = *sim.kernel.frame(id);
    frame.rax = call as u64;
    [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9] = args;
    sim.kernel.save_frame(&frame);
    if fast {
        let before = snapshot(sim);
        if let Some(next) = sim.kernel.fastpath(&mut sim.m) {
            assert_eq!(sim.kernel.current(), Some(next));
            sim.kernel.reap(&mut sim.m);
            return Path::Fast;
        }
        assert_eq!(snapshot(sim), before, "a declined fast path changed the state");
        if let Some(caller) = sim.kernel.syscall_and_continue(&mut sim.m) {
            assert_eq!(caller, id);
            return Path::Continue;
        }
    } else {
        sim.kernel.syscall(&mut sim.m);
    }
    sim.kernel.schedule(sim.m.now);
    sim.kernel.reap(&mut sim.m);
    Path::General
}

/// Two identical kernels: (fast path on, general path only).
struct Twins {
    fast: Sim,
    slow: Sim,
}

impl Twins {
    fn boot(tasks: &[capabilities::manifest::TaskImage], endpoints: u16, notifications: u16) -> Self {
        let mut twins = Self {
            fast: Sim::boot(tasks, None, endpoints, notifications),
            slow: Sim::boot(tasks, None, endpoints, notifications),
        };
        twins.fast.schedule();
        twins.slow.schedule();
        twins
    }

    /// Makes `call` in both as the running task, which must be `who`;
    /// asserts whether the fast path took it and that the states agree.
    fn step(&mut self, who: &str, call: Syscall, args: [u64; 6], fast: bool) {
        let id = self.fast.id(who);
        assert_eq!(self.fast.kernel.current(), Some(id), "{who} should be running");
        let taken = enter(&mut self.fast, call, args, true) == Path::Fast;
        enter(&mut self.slow, call, args, false);
        assert_eq!(taken, fast, "{who} {call:?} {args:?}: fast path taken");
        assert_eq!(snapshot(&self.fast), snapshot(&self.slow), "{who} {call:?} {args:?}");
    }

    /// Applies `change` to both kernels.
    fn both(&mut self, change: impl Fn(&mut Sim)) {
        change(&mut self.fast);
        change(&mut self.slow);
    }

    fn write(&mut self, who: &str, bytes: &[u8]) {
        self.both(|sim| {
            let id = sim.id(who);
            sim.write_message(id, bytes);
        });
    }

    fn run(&mut self, who: &str) {
        self.both(|sim| {
            sim.run(who);
        });
    }
}

fn pair() -> Twins {
    Twins::boot(&server_and_client(), 1, 0)
}

#[test]
fn call_and_reply_recv_round_trips_take_the_fast_path() {
    let mut twins = pair();
    twins.step("server", Syscall::Recv, [EP, 0, 0, 0, 0, 0], false);
    for round in 0..4u8 {
        twins.write("client", &[round, 1, 2, 3]);
        twins.step("client", Syscall::Call, [EP, 4, 0, 0, 0, 0], true);
        let server = twins.fast.id("server");
        assert_eq!(twins.fast.result(server).ok(), [0x77, 4, 0]);
        assert_eq!(twins.fast.message(server, 4), [round, 1, 2, 3]);
        twins.write("server", &[round + 100, 9]);
        twins.step("server", Syscall::ReplyRecv, [REPLY, 2, EP, 0, 0, 0], true);
        let client = twins.fast.id("client");
        assert_eq!(twins.fast.result(client).ok(), [0, 2, 0]);
        assert_eq!(twins.fast.message(client, 2), [round + 100, 9]);
    }
}

#[test]
fn calls_that_find_no_waiting_receiver_take_the_general_path() {
    let mut twins = pair();
    twins.run("client");
    twins.step("client", Syscall::Call, [EP, 0, 0, 0, 0, 0], false);
    twins.step("server", Syscall::Recv, [EP, 0, 0, 0, 0, 0], false);
    twins.step("server", Syscall::ReplyRecv, [REPLY, 0, EP, 0, 0, 0], true);
    // Refused calls stay on the general path and fail there.
    twins.step("client", Syscall::Call, [EP, 5000, 0, 0, 0, 0], false);
    twins.step("client", Syscall::Call, [slots::SELF_TASK.into(), 0, 0, 0, 0, 0], false);
    twins.step("client", Syscall::Call, [99, 0, 0, 0, 0, 0], false);
}

#[test]
fn capabilities_travel_on_the_fast_path_both_ways() {
    let mut twins = pair();
    twins.step("server", Syscall::Recv, [EP, 0, 0, 0, 0, 0], false);
    twins.step("client", Syscall::NotificationCreate, [20, 0, 0, 0, 0, 0], false);
    twins.both(|sim| {
        let (client, server) = (sim.id("client"), sim.id("server"));
        sim.send_caps(client, &[20]);
        sim.window(server, 40, 4);
    });
    twins.step("client", Syscall::Call, [EP, 0, 0, 0, 0, 0], true);
    assert_eq!(twins.fast.received(twins.fast.id("server")), [40]);
    assert_eq!(twins.fast.result(twins.fast.id("server")).ok()[2], 1, "one capability arrived");
    twins.both(|sim| {
        let (client, server) = (sim.id("client"), sim.id("server"));
        sim.send_caps(client, &[]);
        sim.send_caps(server, &[40]);
        sim.window(client, 50, 4);
    });
    twins.step("server", Syscall::ReplyRecv, [REPLY, 0, EP, 0, 0, 0], true);
    assert_eq!(twins.fast.received(twins.fast.id("client")), [50]);
    // A capability received into the reply slot is replaced by the reply
    // capability, as on the general path.
    twins.both(|sim| {
        let (client, server) = (sim.id("client"), sim.id("server"));
        sim.send_caps(client, &[20]);
        sim.send_caps(server, &[]);
        sim.window(server, slots::REPLY, 1);
    });
    twins.step("client", Syscall::Call, [EP, 0, 0, 0, 0, 0], true);
    twins.step("server", Syscall::ReplyRecv, [REPLY, 0, EP, 0, 0, 0], true);
}

#[test]
fn a_send_only_capability_may_list_capabilities_and_still_take_the_fast_path() {
    let send_only = cap(8, BootObject::Endpoint(0), rights::SEND, 5);
    let mut twins = Twins::boot(&[task("server", 2, &[serve(8, 0)]), task("client", 1, &[send_only])], 1, 0);
    twins.step("server", Syscall::Recv, [EP, 0, 0, 0, 0, 0], false);
    twins.both(|sim| {
        let client = sim.id("client");
        sim.send_caps(client, &[1]);
    });
    twins.step("client", Syscall::Call, [EP, 0, 0, 0, 0, 0], true);
    assert!(twins.fast.received(twins.fast.id("server")).is_empty());
}

#[test]
fn a_partner_that_would_not_run_next_takes_the_general_path() {
    // `other` shares the server's priority and is runnable before it.
    let tasks = [
        task("server", 1, &[serve(8, 0)]),
        task("client", 3, &[client(8, 0, 1)]),
        task("other", 1, &[]),
        task("middle", 2, &[]),
    ];
    let mut twins = Twins::boot(&tasks, 1, 0);
    twins.step("client", Syscall::Yield, [0; 6], false);
    twins.step("client", Syscall::Exit, [0; 6], false);
    twins.step("middle", Syscall::Exit, [0; 6], false);
    twins.run("server");
    twins.step("server", Syscall::Recv, [EP, 0, 0, 0, 0, 0], false);
    twins.step("other", Syscall::Yield, [0; 6], false);
    twins.step("other", Syscall::Yield, [0; 6], false);

    // A caller of lower priority than a runnable task gets its reply on
    // the general path.
    let tasks = [task("server", 3, &[serve(8, 0)]), task("client", 1, &[client(8, 0, 1)]), task("middle", 2, &[])];
    let mut twins = Twins::boot(&tasks, 1, 0);
    twins.step("server", Syscall::Recv, [EP, 0, 0, 0, 0, 0], false);
    twins.run("client");
    twins.step("client", Syscall::Call, [EP, 0, 0, 0, 0, 0], true);
    twins.step("server", Syscall::ReplyRecv, [REPLY, 0, EP, 0, 0, 0], false);
    twins.step("middle", Syscall::Exit, [0; 6], false);
    twins.step("client", Syscall::Call, [EP, 0, 0, 0, 0, 0], true);
    twins.step("server", Syscall::ReplyRecv, [REPLY, 0, EP, 0, 0, 0], true);
}

#[test]
fn a_queued_sender_keeps_the_server_on_the_general_path() {
    let mut twins = Twins::boot(&two_clients(("first", 1), ("second", 2)), 1, 0);
    twins.run("server");
    twins.step("server", Syscall::Recv, [EP, 0, 0, 0, 0, 0], false);
    // `second` is runnable at a higher priority than the server.
    twins.step("first", Syscall::Call, [EP, 0, 0, 0, 0, 0], false);
    twins.step("second", Syscall::Call, [EP, 0, 0, 0, 0, 0], false);
    // A message waits: the server takes it at once.
    twins.step("server", Syscall::ReplyRecv, [REPLY, 0, EP, 0, 0, 0], false);
    let server = twins.fast.id("server");
    assert_eq!(twins.fast.result(server).ok()[0], 2);
    twins.step("first", Syscall::Exit, [0; 6], false);
    twins.step("server", Syscall::ReplyRecv, [REPLY, 0, EP, 0, 0, 0], true);
}

#[test]
fn timeouts_flags_and_pending_notifications_keep_reply_recv_on_the_general_path() {
    let bound = cap(9, BootObject::Notification(0), rights::SEND | rights::RECEIVE, 4);
    let mut twins =
        Twins::boot(&[task("server", 2, &[serve(8, 0), bound]), task("client", 1, &[client(8, 0, 1)])], 1, 1);
    twins.step("server", Syscall::NotificationBind, [9, 0, 0, 0, 0, 0], false);
    twins.step("server", Syscall::Recv, [EP, 0, 0, 0, 0, 0], false);
    twins.step("client", Syscall::Call, [EP, 0, 0, 0, 0, 0], true);
    twins.step("server", Syscall::ReplyRecv, [REPLY, 0, EP, 0, 700, 0], false);
    twins.step("client", Syscall::Call, [EP, 0, 0, 0, 0, 0], true);
    twins.step("server", Syscall::ReplyRecv, [REPLY, 0, EP, NONBLOCK, 0, 0], false);
    twins.step("server", Syscall::Recv, [EP, 0, 0, 0, 0, 0], false);
    twins.step("client", Syscall::Call, [EP, 0, 0, 0, 0, 0], true);
    twins.step("server", Syscall::Signal, [9, 0, 0, 0, 0, 0], false);
    twins.step("server", Syscall::ReplyRecv, [REPLY, 0, EP, 0, 0, 0], false);
    let server = twins.fast.id("server");
    assert_eq!(twins.fast.result(server).ok()[0], 4, "the bits came back at once");
}

#[test]
fn an_unanswered_reply_capability_keeps_the_call_on_the_general_path() {
    let mut twins = Twins::boot(&two_clients(("first", 1), ("second", 2)), 1, 0);
    twins.step("first", Syscall::Call, [EP, 0, 0, 0, 0, 0], false);
    twins.step("second", Syscall::Yield, [0; 6], false);
    twins.step("second", Syscall::Exit, [0; 6], false);
    twins.step("server", Syscall::Recv, [EP, 0, 0, 0, 0, 0], false);
    // The server waits again still holding first's reply capability.
    twins.step("server", Syscall::Recv, [EP, 0, 0, 0, 0, 0], false);
    let first = twins.fast.id("first");
    assert!(twins.fast.kernel.task(first).is_blocked());
}

#[test]
fn a_dead_caller_is_left_to_the_general_path() {
    let mut twins = pair();
    twins.step("server", Syscall::Recv, [EP, 0, 0, 0, 0, 0], false);
    twins.step("client", Syscall::Call, [EP, 0, 0, 0, 0, 0], true);
    twins.both(|sim| {
        let client = sim.id("client");
        sim.kernel.end_task(&mut sim.m, client, crate::task::Death::Exited(0));
    });
    twins.step("server", Syscall::ReplyRecv, [REPLY, 0, EP, 0, 0, 0], false);
}

#[test]
fn random_ipc_agrees_with_the_general_path() {
    let mut taken = std::collections::BTreeMap::new();
    for seed in 1..=40u64 {
        let mut random = XorShift::new(0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let priority = |random: &mut XorShift| 1 + random.below(3) as u8;
        let bound = cap(9, BootObject::Notification(0), rights::SEND | rights::RECEIVE, 2);
        let tasks = [
            task("server", priority(&mut random), &[serve(8, 0), bound]),
            task("a", priority(&mut random), &[client(8, 0, 0xa), bound]),
            task("b", priority(&mut random), &[client(8, 0, 0xb)]),
            task("c", priority(&mut random), &[cap(8, BootObject::Endpoint(0), rights::SEND | rights::RECEIVE, 0)]),
        ];
        let mut twins = Twins::boot(&tasks, 1, 1);
        for _ in 0..300 {
            let Some(current) = twins.fast.kernel.current() else { break };
            let name = twins.fast.kernel.tasks()[current.index()].name.clone();
            let len = random.below(16);
            let caps = if random.below(8) == 0 { vec![9] } else { vec![] };
            let window = random.below(4) as u32 * 20;
            twins.both(|sim| {
                let id = sim.id(&name);
                sim.send_caps(id, &caps);
                sim.window(id, window, 2);
                sim.write_message(id, &len.to_le_bytes());
            });
            let (call, args) = match random.below(10) {
                0..=2 => (Syscall::Call, [EP, len, 0, 0, 0, 0]),
                3..=5 => (Syscall::ReplyRecv, [REPLY, len, EP, 0, 0, 0]),
                6 => (Syscall::Recv, [EP, random.below(2) * NONBLOCK, 0, 0, 0, 0]),
                7 => (Syscall::Reply, [REPLY, len, 0, 0, 0, 0]),
                8 => (Syscall::Signal, [9, 0, 0, 0, 0, 0]),
                _ => match random.below(3) {
                    0 => (Syscall::NotificationBind, [9, 0, 0, 0, 0, 0]),
                    1 => (Syscall::Send, [EP, len, NONBLOCK, 0, 0, 0]),
                    _ => (Syscall::Yield, [0; 6]),
                },
            };
            let path = enter(&mut twins.fast, call, args, true);
            enter(&mut twins.slow, call, args, false);
            *taken.entry(format!("{path:?}")).or_insert(0) += 1;
            assert_eq!(snapshot(&twins.fast), snapshot(&twins.slow), "seed {seed}: {name} {call:?} {args:?}");
        }
    }
    for path in [Path::Fast, Path::Continue, Path::General] {
        let count = taken.get(&format!("{path:?}")).copied().unwrap_or(0);
        assert!(count > 100, "{path:?} taken only {count} times: {taken:?}");
    }
}
