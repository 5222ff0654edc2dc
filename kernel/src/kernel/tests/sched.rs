//! Preemption: time slices among equals and wake-ups of more urgent tasks.

use capabilities::abi::{Syscall, rights};
use capabilities::manifest::BootObject;

use super::sim::{Outcome, Sim, cap, task};
use crate::kernel::{Next, QUANTUM_US};
use crate::task::{Death, Fault, TaskState};

#[test]
fn equal_priority_tasks_share_the_cpu_by_time_slice() {
    let mut sim = Sim::boot(&[task("a", 1, &[]), task("b", 1, &[])], None, 0, 0);
    let a = sim.expect_running("a");
    assert_eq!(sim.kernel.next_deadline(), Some(QUANTUM_US), "a timer is needed: b waits");
    sim.m.now = QUANTUM_US - 1;
    assert_eq!(sim.schedule(), Next::Resume(a), "the slice is not over");
    sim.m.now = QUANTUM_US;
    sim.expect_running("b");
    sim.m.now = 2 * QUANTUM_US;
    assert_eq!(sim.schedule(), Next::Resume(a));
}

#[test]
fn a_lone_task_needs_no_timer_and_a_woken_urgent_task_preempts() {
    let tasks = [
        task("urgent", 5, &[cap(8, BootObject::Notification(0), rights::RECEIVE, 0)]),
        task("spinner", 1, &[cap(8, BootObject::Notification(0), rights::SEND, 1)]),
    ];
    let mut sim = Sim::boot(&tasks, None, 0, 1);
    sim.expect_running("urgent");
    assert_eq!(sim.sys(Syscall::Wait, [8, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.expect_running("spinner");
    assert_eq!(sim.kernel.next_deadline(), None);
    sim.sys(Syscall::Signal, [8, 0, 0, 0, 0, 0]).ok();
    sim.expect_running("urgent");
    sim.sys(Syscall::Exit, [0; 6]);
    sim.expect_running("spinner");
}

#[test]
fn a_frame_that_would_return_outside_user_space_ends_its_task_instead() {
    let mut sim = Sim::boot(&[task("bad", 2, &[]), task("good", 1, &[])], None, 0, 0);
    let bad = sim.expect_running("bad");
    let mut frame = *sim.kernel.frame(bad);
    frame.rip = capabilities::abi::layout::USER_END;
    sim.kernel.save_frame(&frame);
    assert!(!sim.kernel.check_resumable(&mut sim.m, bad), "the machine may not return to it");
    assert_eq!(sim.schedule(), Next::Resume(sim.id("good")));
    let state = sim.kernel.tasks()[bad.index()].state;
    assert!(
        matches!(state, TaskState::Dead { death: Death::Killed(Fault { vector: 13, .. }), .. }),
        "ended as by a general-protection fault: {state:?}"
    );
}

/// Waking ends a blocking operation, so a task that is not blocked (the
/// running one, one waiting for the CPU, a dead one) is left as it is:
/// no path that wakes by mistake can put a task in a run queue twice, or
/// make a dead task runnable again.
#[test]
fn waking_a_task_that_is_not_blocked_changes_nothing() {
    let mut sim = Sim::boot(&[task("a", 2, &[]), task("b", 1, &[]), task("c", 1, &[])], None, 0, 0);
    let (a, b, c) = (sim.id("a"), sim.id("b"), sim.id("c"));
    assert_eq!(sim.schedule(), Next::Resume(a));
    assert_eq!(sim.sys(Syscall::Exit, [0; 6]), Outcome::Blocked);
    sim.kernel.reap(&mut sim.m);
    assert_eq!(sim.schedule(), Next::Resume(b));
    let queued = sim.kernel.sched.snapshot();
    for id in [a, b, c] {
        sim.kernel.wake(id, Err(capabilities::ErrorCode::TimedOut));
    }
    assert!(matches!(sim.kernel.task(a).state, TaskState::Dead { reaped: true, .. }), "a stays dead");
    assert_eq!(sim.kernel.sched.snapshot(), queued, "nobody was queued: b runs, c was queued already");
    assert_eq!(sim.result(b), Outcome::Returned(0, [0; 3]), "the running task's registers are untouched");
    assert_eq!(sim.schedule(), Next::Resume(b));
}
