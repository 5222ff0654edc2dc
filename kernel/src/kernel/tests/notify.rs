//! Notifications: signal, wait, binding to a receiving task.

use capabilities::ErrorCode;
use capabilities::abi::ipc::{Info, NONBLOCK};
use capabilities::abi::{Syscall, rights};
use capabilities::manifest::BootObject;

use super::sim::{Outcome, Sim, cap, serve, task};

#[test]
fn signals_accumulate_until_a_wait_takes_them() {
    let notify = |slot, badge| cap(slot, BootObject::Notification(0), rights::SEND, badge);
    let tasks = [
        task("waiter", 1, &[cap(8, BootObject::Notification(0), rights::RECEIVE, 0)]),
        task("signaller", 2, &[notify(8, 0b01), notify(9, 0b10)]),
    ];
    let mut sim = Sim::boot(&tasks, None, 0, 1);
    sim.expect_running("signaller");
    sim.sys(Syscall::Signal, [8, 0, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::Signal, [9, 0, 0, 0, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::Wait, [8, 0, 0, 0, 0, 0]).error(), ErrorCode::PermissionDenied);
    sim.sys(Syscall::Exit, [0; 6]);
    sim.expect_running("waiter");
    assert_eq!(sim.sys(Syscall::Wait, [8, 0, 0, 0, 0, 0]).ok()[0], 0b11);
    assert_eq!(sim.sys(Syscall::Wait, [8, NONBLOCK, 0, 0, 0, 0]).error(), ErrorCode::WouldBlock);
}

#[test]
fn a_waiter_is_woken_by_the_signal_and_a_timeout_ends_a_wait() {
    let tasks = [
        task("waiter", 2, &[cap(8, BootObject::Notification(0), rights::RECEIVE, 0)]),
        task("signaller", 1, &[cap(8, BootObject::Notification(0), rights::SEND, 4)]),
    ];
    let mut sim = Sim::boot(&tasks, None, 0, 1);
    let waiter = sim.expect_running("waiter");
    assert_eq!(sim.sys(Syscall::Wait, [8, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.expect_running("signaller");
    sim.sys(Syscall::Signal, [8, 0, 0, 0, 0, 0]).ok();
    sim.expect_running("waiter");
    assert_eq!(sim.result(waiter).ok()[0], 4);
    assert_eq!(sim.sys(Syscall::Wait, [8, 0, 1000, 0, 0, 0]), Outcome::Blocked);
    sim.m.now = 1000;
    sim.expect_running("waiter");
    assert_eq!(sim.result(waiter).error(), ErrorCode::TimedOut);
}

#[test]
fn a_bound_notification_ends_a_receive_with_its_bits() {
    let tasks = [
        task("server", 2, &[serve(8, 0), cap(9, BootObject::Notification(0), rights::RECEIVE, 0)]),
        task("irq", 1, &[cap(8, BootObject::Notification(0), rights::SEND, 0x100)]),
    ];
    let mut sim = Sim::boot(&tasks, None, 1, 1);
    let server = sim.expect_running("server");
    sim.sys(Syscall::NotificationBind, [9, 0, 0, 0, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::Recv, [8, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.expect_running("irq");
    sim.sys(Syscall::Signal, [8, 0, 0, 0, 0, 0]).ok();
    sim.expect_running("server");
    let [bits, _, info] = sim.result(server).ok();
    assert!(Info(info).is_notification());
    assert_eq!(bits, 0x100);
    sim.run("irq");
    sim.sys(Syscall::Signal, [8, 0, 0, 0, 0, 0]).ok();
    sim.run("server");
    let [bits, _, info] = sim.sys(Syscall::Recv, [8, 0, 0, 0, 0, 0]).ok();
    assert_eq!((bits, Info(info).is_notification()), (0x100, true), "pending bits end the receive at once");
}
