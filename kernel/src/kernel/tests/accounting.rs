//! Accounting: the figures are the kernel's own, only the ACCOUNT right
//! reads them, and a death gives back exactly what the dead task held.

use capabilities::ErrorCode;
use capabilities::abi::{Syscall, rights, slots};
use capabilities::accounting::{Figure, Figures, MACHINE, MachineFigures, TaskFigures};
use capabilities::manifest::BootObject;

use super::sim::{Outcome, Sim, cap, client, serve, task};
use crate::task::Death;

const REPLY: u64 = slots::REPLY as u64;
/// The auditor's control capability (ACCOUNT and DMA) and its endpoint.
const CONTROL: u64 = 8;
const REQUESTS: u64 = 9;
/// Where the auditor receives a frame.
const RECEIVED: u64 = 20;

/// An auditor that may read the figures and pin frames, serving a
/// victim and a bystander, which may not read them.
fn audited() -> Sim {
    let control = cap(8, BootObject::Control, rights::ACCOUNT | rights::DMA, 0);
    let tasks = [
        task("auditor", 3, &[control, serve(9, 0)]),
        task("victim", 2, &[client(8, 0, 1), cap(9, BootObject::Control, rights::DMA | rights::IRQ, 0)]),
        task("bystander", 1, &[client(8, 0, 2)]),
    ];
    Sim::boot(&tasks, None, 1, 0)
}

/// Every figure, read by the running task through `Accounting`.
fn figures(sim: &mut Sim) -> Figures {
    let machine = MachineFigures::from_registers(sim.sys(Syscall::Accounting, [CONTROL, MACHINE, 0, 0, 0, 0]).ok());
    let mut tasks = heapless::Vec::new();
    for index in 0.. {
        match sim.sys(Syscall::Accounting, [CONTROL, index, 0, 0, 0, 0]) {
            Outcome::Returned(0, registers) => tasks.push(TaskFigures::from_registers(registers)).expect("room"),
            other => {
                assert_eq!(other.error(), ErrorCode::NotFound, "past the last task");
                break;
            }
        }
    }
    Figures { machine, tasks }
}

#[test]
fn only_a_control_capability_with_the_account_right_reads_the_figures() {
    let mut sim = audited();
    sim.run("victim");
    let refused =
        |sim: &mut Sim, slot: u64, scope: u64| sim.sys(Syscall::Accounting, [slot, scope, 0, 0, 0, 0]).error();
    assert_eq!(refused(&mut sim, 9, MACHINE), ErrorCode::PermissionDenied, "DMA and IRQ are not ACCOUNT");
    assert_eq!(refused(&mut sim, 9, 0), ErrorCode::PermissionDenied, "nor another task's figures");
    assert_eq!(refused(&mut sim, 8, MACHINE), ErrorCode::WrongKind, "an endpoint");
    assert_eq!(refused(&mut sim, 1, 1), ErrorCode::WrongKind, "its own task capability");
    for slot in [0, 30, 128, u64::MAX] {
        assert_eq!(refused(&mut sim, slot, MACHINE), ErrorCode::InvalidCapability);
    }
    sim.run("auditor");
    sim.sys(Syscall::CapCopy, [CONTROL, 21, u64::from(rights::ALL & !rights::ACCOUNT), 0, 0, 0]).ok();
    assert_eq!(refused(&mut sim, 21, MACHINE), ErrorCode::PermissionDenied, "a copy without the right");
    for scope in [3, 32, 255, MACHINE - 1, 1 << 32] {
        assert_eq!(refused(&mut sim, CONTROL, scope), ErrorCode::NotFound, "no task {scope}");
    }
}

#[test]
fn the_figures_are_the_kernels_own_counts() {
    let mut sim = audited();
    sim.run("auditor");
    let start = figures(&mut sim);
    assert_eq!(start.machine.free_frames, sim.kernel.frames().free_frames() as u64);
    assert_eq!(start.machine.pins, 0);
    assert_eq!(start.tasks.len(), 3);
    for (index, figures) in start.tasks.iter().enumerate() {
        let kernel = &sim.kernel.tasks()[index];
        assert_eq!((figures.objects, figures.memory_pages), (0, u64::from(kernel.memory.used)));
    }
    // Its own task and address space, its two grants; the victim's three.
    let capabilities: Vec<u64> = start.tasks.iter().map(|task| task.capabilities).collect();
    assert_eq!(capabilities, [4, 4, 3]);
    assert_eq!(start.machine.capabilities, 11);

    sim.sys(Syscall::FrameAlloc, [22, 4, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::EndpointCreate, [23, 0, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::CapCopy, [22, 24, u64::from(rights::READ), 0, 0, 0]).ok();
    let [pin, ..] = sim.sys(Syscall::DmaPin, [CONTROL, 24, 0, 0, 0, 0]).ok();
    let now = figures(&mut sim);
    assert_eq!(now.machine, MachineFigures { free_frames: start.machine.free_frames - 4, pins: 1, capabilities: 14 });
    let auditor = TaskFigures { objects: 2, memory_pages: start.tasks[0].memory_pages + 4, capabilities: 7 };
    assert_eq!(now.tasks[0], auditor, "a pin's node is counted as a pin, not a capability");
    assert_eq!(now.tasks[1..], start.tasks[1..], "nobody else's figures move");

    sim.sys(Syscall::DmaUnpin, [CONTROL, pin, 0, 0, 0, 0]).ok();
    for slot in [24, 23, 22] {
        sim.sys(Syscall::CapDelete, [slot, 0, 0, 0, 0, 0]).ok();
    }
    assert_eq!(figures(&mut sim), start, "everything comes back");
}

/// The victim creates objects, maps a frame and lends another to the
/// auditor, which pins it as the IOMMU server would; then it dies.
fn victim_dies_lending(sim: &mut Sim) -> (Figures, u64) {
    let (auditor, victim) = (sim.id("auditor"), sim.id("victim"));
    sim.run("auditor");
    let start = figures(sim);
    sim.window(auditor, RECEIVED as u32, 1);
    assert_eq!(sim.sys(Syscall::Recv, [REQUESTS, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.run("victim");
    sim.sys(Syscall::NotificationCreate, [20, 0, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::FrameAlloc, [21, 2, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::Map, [slots::SELF_SPACE.into(), 21, 0x2000_0000, u64::from(rights::WRITE), 0, 0]).ok();
    sim.sys(Syscall::FrameAlloc, [22, 1, 0, 0, 0, 0]).ok();
    sim.send_caps(victim, &[22]);
    assert_eq!(sim.sys(Syscall::Call, [8, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.run("auditor");
    let [pin, ..] = sim.sys(Syscall::DmaPin, [CONTROL, RECEIVED, u64::from(rights::WRITE), 0, 0, 0]).ok();
    sim.sys(Syscall::CapDelete, [RECEIVED, 0, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::Reply, [REPLY, 0, 0, 0, 0, 0]).ok();
    sim.kernel.end_task(&mut sim.m, victim, Death::Terminated { by: auditor });
    sim.kernel.reap(&mut sim.m);
    (start, pin)
}

#[test]
fn a_death_gives_back_exactly_what_the_dead_task_held_once_its_pins_are_released() {
    let mut sim = audited();
    let victim = sim.id("victim").index();
    let (start, pin) = victim_dies_lending(&mut sim);
    let expected = start.after_deaths(&[victim]);
    assert!(expected.machine.free_frames > start.machine.free_frames, "its image, stack and tables are free");
    let pinned = figures(&mut sim);
    let differences: Vec<(Figure, u64, u64)> =
        pinned.differences(&expected).map(|d| (d.figure, d.found, d.expected)).collect();
    assert_eq!(
        differences,
        [
            (Figure::FreeFrames, expected.machine.free_frames - 1, expected.machine.free_frames),
            (Figure::Pins, 1, 0),
            (Figure::Objects(victim as u8), 1, 0),
            (Figure::MemoryPages(victim as u8), 1, 0),
        ],
        "the pinned frame is the one thing left, its object and page still charged to the dead task"
    );
    sim.sys(Syscall::DmaUnpin, [CONTROL, pin, 0, 0, 0, 0]).ok();
    assert_eq!(figures(&mut sim), expected, "once released, nothing is left but what the death explains");
}
