//! Task death: watchers learn of it, peers keep running, and what the
//! dead task held is released.

use capabilities::ErrorCode;
use capabilities::abi::ipc::NONBLOCK;
use capabilities::abi::{Syscall, rights, task_state};
use capabilities::manifest::{BootObject, TaskImage};

use super::sim::{Outcome, Sim, cap, task};
use crate::kernel::Next;
use crate::task::Fault;

/// A task of priority 2 that may watch task 0 (slot 8) and is signalled
/// through boot notification `notification` (slot 9).
fn watcher(notification: u16) -> TaskImage {
    task(
        "watcher",
        2,
        &[
            cap(8, BootObject::Task(0), rights::WATCH, 0),
            cap(9, BootObject::Notification(notification), rights::SEND | rights::RECEIVE, 0),
        ],
    )
}

fn watched() -> Sim {
    let tasks = [task("victim", 3, &[]), watcher(0), task("bystander", 1, &[])];
    Sim::boot(&tasks, None, 0, 1)
}

#[test]
fn a_fault_signals_the_watcher_which_learns_how_the_task_died() {
    let mut sim = watched();
    sim.run("watcher");
    sim.sys(Syscall::TaskWatch, [8, 9, 0b100, 0, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::TaskInfo, [8, 0, 0, 0, 0, 0]).ok(), [task_state::ALIVE, 0, 0]);
    let watcher = sim.id("watcher");
    assert_eq!(sim.sys(Syscall::Wait, [9, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.expect_running("victim");
    sim.kernel.fault(&mut sim.m, Fault { vector: 14, error_code: 6, address: 0xdead_0000, rip: 0x40_0010 });
    sim.expect_running("watcher");
    assert_eq!(sim.result(watcher).ok()[0], 0b100);
    assert_eq!(sim.sys(Syscall::TaskInfo, [8, 0, 0, 0, 0, 0]).ok(), [task_state::KILLED, 14, 0xdead_0000]);
    sim.sys(Syscall::Exit, [0; 6]);
    sim.expect_running("bystander");
}

#[test]
fn watching_an_exited_task_signals_at_once_with_its_code() {
    let mut sim = watched();
    sim.expect_running("victim");
    sim.sys(Syscall::Exit, [9, 0, 0, 0, 0, 0]);
    sim.expect_running("watcher");
    sim.sys(Syscall::TaskWatch, [8, 9, 1, 0, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::Wait, [9, 0, 0, 0, 0, 0]).ok()[0], 1);
    assert_eq!(sim.sys(Syscall::TaskInfo, [8, 0, 0, 0, 0, 0]).ok(), [task_state::EXITED, 9, 0]);
    assert_eq!(sim.sys(Syscall::TaskWatch, [9, 9, 1, 0, 0, 0]).error(), ErrorCode::WrongKind);
    assert_eq!(sim.sys(Syscall::TaskWatch, [8, 9, 0, 0, 0, 0]).error(), ErrorCode::InvalidArgument);
}

#[test]
fn a_dead_tasks_objects_and_memory_are_all_returned() {
    let mut sim = Sim::boot(&[task("hoarder", 2, &[]), task("other", 1, &[])], None, 0, 0);
    let free_before = sim.kernel.frames().free_frames();
    let hoarder_pages = sim.kernel.tasks()[0].memory.used as usize;
    sim.expect_running("hoarder");
    sim.sys(Syscall::EndpointCreate, [8, 0, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::NotificationCreate, [9, 0, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::FrameAlloc, [10, 4, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::Map, [2, 10, 0x2000_0000, u64::from(rights::WRITE), 0, 0]).ok();
    assert!(sim.kernel.frames().free_frames() < free_before);
    sim.sys(Syscall::Exit, [0; 6]);
    assert_eq!(sim.schedule(), Next::Resume(sim.id("other")));
    sim.kernel.reap(&mut sim.m);
    assert_eq!(sim.kernel.frames().free_frames(), free_before + hoarder_pages);
    assert!(
        sim.kernel.endpoints.is_empty() && sim.kernel.notifications.is_empty() && sim.kernel.frame_objects.is_empty()
    );
}

#[test]
fn a_task_with_the_kill_right_ends_another_which_its_watchers_learn() {
    let tasks = [
        task("victim", 1, &[]),
        task(
            "supervisor",
            3,
            &[
                cap(8, BootObject::Task(0), rights::WATCH | rights::KILL, 0),
                cap(9, BootObject::Notification(0), rights::SEND | rights::RECEIVE, 0),
                cap(10, BootObject::Task(0), rights::WATCH, 0),
            ],
        ),
    ];
    let mut sim = Sim::boot(&tasks, None, 0, 1);
    sim.expect_running("supervisor");
    sim.sys(Syscall::TaskWatch, [8, 9, 0b10, 0, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::TaskKill, [10, 0, 0, 0, 0, 0]).error(), ErrorCode::PermissionDenied, "WATCH alone");
    assert_eq!(sim.sys(Syscall::TaskKill, [9, 0, 0, 0, 0, 0]).error(), ErrorCode::WrongKind);
    assert_eq!(
        sim.sys(Syscall::TaskKill, [1, 0, 0, 0, 0, 0]).error(),
        ErrorCode::PermissionDenied,
        "its own cap: WATCH"
    );
    sim.sys(Syscall::TaskKill, [8, 0, 0, 0, 0, 0]).ok();
    let supervisor = sim.id("supervisor");
    assert_eq!(sim.sys(Syscall::Wait, [9, 0, 0, 0, 0, 0]).ok()[0], 0b10, "the watch fired");
    let info = sim.sys(Syscall::TaskInfo, [8, 0, 0, 0, 0, 0]).ok();
    assert_eq!(info, [task_state::TERMINATED, supervisor.index() as u64, 0]);
    assert_eq!(sim.sys(Syscall::TaskKill, [8, 0, 0, 0, 0, 0]).error(), ErrorCode::PeerDied, "already dead");
}

#[test]
fn every_mapping_into_a_dead_tasks_space_is_forgotten_before_its_tables_are_freed() {
    // More mappings into the victim's space than the kernel used to clear
    // (64): deleting the 65th after the space was freed walked a freed root.
    const COPIES: u64 = 70;
    let tasks = [task("mapper", 2, &[super::sim::serve(8, 0)]), task("victim", 1, &[super::sim::client(8, 0, 1)])];
    let mut sim = Sim::boot(&tasks, None, 1, 0);
    let (mapper, victim) = (sim.id("mapper"), sim.id("victim"));
    sim.expect_running("mapper");
    sim.window(mapper, 10, 1);
    assert_eq!(sim.sys(Syscall::Recv, [8, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.expect_running("victim");
    sim.send_caps(victim, &[2]);
    sim.sys(Syscall::Send, [8, 0, 0, 0, 0, 0]).ok();
    sim.expect_running("mapper");
    sim.sys(Syscall::FrameAlloc, [11, 1, 0, 0, 0, 0]).ok();
    for copy in 0..COPIES {
        let slot = 20 + copy;
        sim.sys(Syscall::CapCopy, [11, slot, u64::from(rights::READ), 0, 0, 0]).ok();
        sim.sys(Syscall::Map, [10, slot, 0x2000_0000 + copy * 0x1000, 0, 0, 0]).ok();
    }
    sim.kernel.end_task(&mut sim.m, victim, crate::task::Death::Exited(0));
    sim.kernel.reap(&mut sim.m);
    let flushes = sim.m.flushes.len();
    for copy in 0..COPIES {
        let slot = crate::cspace::SlotId::new(mapper, 20 + copy).expect("valid");
        assert_eq!(sim.kernel.caps.mapping(slot), None, "copy {copy} still records a mapping into the dead space");
        sim.sys(Syscall::CapDelete, [20 + copy, 0, 0, 0, 0, 0]).ok();
    }
    assert_eq!(sim.m.flushes.len(), flushes, "nothing unmapped from the freed space");
}

#[test]
fn deleting_a_notification_removes_the_watches_that_would_signal_it() {
    let mut sim = watched();
    sim.run("watcher");
    let room = crate::task::WATCHES_PER_TASK as u64;
    sim.sys(Syscall::NotificationCreate, [20, 0, 0, 0, 0, 0]).ok();
    for bit in 0..room {
        sim.sys(Syscall::TaskWatch, [8, 20, 1 << bit, 0, 0, 0]).ok();
    }
    sim.sys(Syscall::CapDelete, [20, 0, 0, 0, 0, 0]).ok();
    // Its watches went with it: they neither take room nor fire.
    sim.sys(Syscall::NotificationCreate, [21, 0, 0, 0, 0, 0]).ok();
    for bit in 0..room {
        sim.sys(Syscall::TaskWatch, [8, 21, 1 << bit, 0, 0, 0]).ok();
    }
    let victim = sim.id("victim");
    sim.kernel.end_task(&mut sim.m, victim, crate::task::Death::Exited(0));
    assert_eq!(sim.sys(Syscall::Wait, [21, NONBLOCK, 0, 0, 0, 0]).ok()[0], (1 << room) - 1, "the live watches fired");
}

#[test]
fn a_task_watching_itself_cannot_crowd_out_the_watches_of_others() {
    let victim_caps = [cap(8, BootObject::Notification(0), rights::SEND | rights::RECEIVE, 0)];
    let tasks = [task("victim", 3, &victim_caps), watcher(1)];
    let mut sim = Sim::boot(&tasks, None, 0, 2);
    sim.run("victim");
    let mut own = 0;
    while let Outcome::Returned(0, _) = sim.sys(Syscall::TaskWatch, [1, 8, 1 << (own % 64), 0, 0, 0]) {
        own += 1;
        assert!(own < 1000, "a task's own watches are bounded");
    }
    assert_eq!(sim.sys(Syscall::TaskWatch, [1, 8, 1 << 63, 0, 0, 0]).error(), ErrorCode::QuotaExceeded);
    sim.run("watcher");
    sim.sys(Syscall::TaskWatch, [8, 9, 0b10, 0, 0, 0]).ok();
    let victim = sim.id("victim");
    sim.kernel.end_task(&mut sim.m, victim, crate::task::Death::Exited(0));
    assert_eq!(sim.sys(Syscall::Wait, [9, NONBLOCK, 0, 0, 0, 0]).ok()[0], 0b10, "the watcher learns of the death");
}

#[test]
fn revoking_the_notification_capability_a_watch_was_made_with_ends_the_watch() {
    let tasks = [task("victim", 3, &[]), watcher(0)];
    let mut sim = Sim::boot(&tasks, None, 0, 1);
    sim.run("watcher");
    sim.sys(Syscall::CapCopy, [9, 20, u64::from(rights::SEND), 0, 0, 0]).ok();
    sim.sys(Syscall::TaskWatch, [8, 20, 0b100, 0, 0, 0]).ok();
    sim.sys(Syscall::CapMove, [20, 21, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::TaskWatch, [8, 9, 0b1, 0, 0, 0]).ok();
    sim.sys(Syscall::CapRevoke, [9, 0, 0, 0, 0, 0]).ok();
    let victim = sim.id("victim");
    sim.kernel.end_task(&mut sim.m, victim, crate::task::Death::Exited(0));
    assert_eq!(sim.sys(Syscall::Wait, [9, NONBLOCK, 0, 0, 0, 0]).ok()[0], 0b1, "only the watch made with slot 9 fired");
}
