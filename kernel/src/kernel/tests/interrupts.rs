//! Interrupt capabilities and I/O ports.

use capabilities::ErrorCode;
use capabilities::abi::{Syscall, rights};
use capabilities::manifest::BootObject;

use super::sim::{Outcome, Sim, cap, task};

#[test]
fn a_level_line_signals_its_notification_and_stays_masked_until_acknowledged() {
    let caps = [
        cap(8, BootObject::Interrupt { gsi: 8, level: true }, rights::ACK, 0),
        cap(9, BootObject::Notification(0), rights::SEND | rights::RECEIVE, 0),
    ];
    let mut sim = Sim::boot(&[task("handler", 1, &caps)], None, 0, 1);
    let id = sim.expect_running("handler");
    let (gsi, vector, level) = sim.m.routes[0];
    assert_eq!((gsi, level), (8, true));
    assert!(sim.m.masked[&8], "masked until bound");
    assert_eq!(sim.sys(Syscall::IrqBind, [8, 9, 0b10, 0, 0, 0]).ok()[0], u64::from(vector));
    assert!(!sim.m.masked[&8]);
    assert_eq!(sim.sys(Syscall::Wait, [9, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.kernel.interrupt(&mut sim.m, vector);
    assert!(sim.m.masked[&8], "level line masked until acknowledged");
    sim.expect_running("handler");
    assert_eq!(sim.result(id).ok()[0], 0b10);
    sim.sys(Syscall::IrqAck, [8, 0, 0, 0, 0, 0]).ok();
    assert!(!sim.m.masked[&8]);
    sim.kernel.interrupt(&mut sim.m, 0x99);
}

#[test]
fn msi_vectors_need_the_control_right_and_come_back_when_deleted() {
    let mut sim = Sim::boot(
        &[task("pci", 1, &[cap(8, BootObject::Control, rights::IRQ, 0), cap(9, BootObject::Control, rights::DMA, 0)])],
        None,
        0,
        0,
    );
    sim.schedule();
    assert_eq!(sim.sys(Syscall::IrqAllocMsi, [9, 20, 0, 0, 0, 0]).error(), ErrorCode::PermissionDenied);
    let [vector, address, data] = sim.sys(Syscall::IrqAllocMsi, [8, 20, 0, 0, 0, 0]).ok();
    assert_eq!((address, data), (0xfee0_0000, vector));
    let [second, _, _] = sim.sys(Syscall::IrqAllocMsi, [8, 21, 0, 0, 0, 0]).ok();
    assert_ne!(vector, second);
    sim.sys(Syscall::CapDelete, [20, 0, 0, 0, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::IrqAllocMsi, [8, 22, 0, 0, 0, 0]).ok()[0], vector, "the vector was freed");
}

#[test]
fn ports_are_checked_against_the_range_width_and_rights() {
    let caps = [
        cap(8, BootObject::IoPorts { base: 0xf4, count: 4 }, rights::SEND, 0),
        cap(9, BootObject::IoPorts { base: 0x70, count: 2 }, rights::RECEIVE, 0),
    ];
    let mut sim = Sim::boot(&[task("io", 1, &caps)], None, 0, 0);
    sim.schedule();
    sim.sys(Syscall::PortOut, [8, 0xf4, 4, 0x11, 0, 0]).ok();
    assert_eq!(sim.m.port_writes, [(0xf4, 4, 0x11)]);
    assert_eq!(sim.sys(Syscall::PortOut, [8, 0xf6, 4, 0, 0, 0]).error(), ErrorCode::PermissionDenied);
    assert_eq!(sim.sys(Syscall::PortOut, [8, 0xf4, 3, 0, 0, 0]).error(), ErrorCode::InvalidArgument);
    assert_eq!(sim.sys(Syscall::PortIn, [8, 0xf4, 1, 0, 0, 0]).error(), ErrorCode::PermissionDenied);
    assert_eq!(sim.sys(Syscall::PortOut, [9, 0x70, 1, 0, 0, 0]).error(), ErrorCode::PermissionDenied);
    assert_eq!(sim.sys(Syscall::PortIn, [9, 0x71, 1, 0, 0, 0]).ok()[0], 0x71 * 3);
    assert_eq!(sim.sys(Syscall::PortIn, [9, u64::MAX, 1, 0, 0, 0]).error(), ErrorCode::PermissionDenied);
}

#[test]
fn a_device_interrupt_on_an_exception_vector_is_counted_and_ends_no_task() {
    let mut sim = Sim::boot(&[task("busy", 1, &[])], None, 0, 0);
    let id = sim.expect_running("busy");
    for vector in [0, 2, 8, 13, 14, 17, 31] {
        sim.kernel.interrupt(&mut sim.m, vector);
    }
    assert_eq!(sim.kernel.stray_vectors(), 7);
    assert_eq!(sim.schedule(), crate::kernel::Next::Resume(id), "the task runs on");
    sim.kernel.interrupt(&mut sim.m, 0x40);
    assert_eq!(sim.kernel.stray_vectors(), 7, "a device vector is no stray");
}

#[test]
fn msi_vectors_are_bounded_per_task_and_come_back() {
    let mut sim = Sim::boot(&[task("pci", 1, &[cap(8, BootObject::Control, rights::IRQ, 0)])], None, 0, 0);
    sim.schedule();
    let allowance = crate::kernel::MSI_PER_TASK as u64;
    for slot in 20..20 + allowance {
        sim.sys(Syscall::IrqAllocMsi, [8, slot, 0, 0, 0, 0]).ok();
    }
    let next = 20 + allowance;
    assert_eq!(sim.sys(Syscall::IrqAllocMsi, [8, next, 0, 0, 0, 0]).error(), ErrorCode::QuotaExceeded);
    sim.sys(Syscall::CapDelete, [20, 0, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::IrqAllocMsi, [8, next, 0, 0, 0, 0]).ok();
}

/// A segment-not-present or general-protection fault raised because the
/// CPU could not deliver a device's message through its gate is that
/// message, counted as a stray; the same faults raised by a task (its own
/// `int` of a kernel gate, a bad selector) are its faults.
#[test]
fn a_fault_in_delivering_a_device_message_is_the_message_not_a_fault() {
    use crate::kernel::undelivered_interrupt;
    let nothing = || None;
    // The SDM's encoding: gate 15 in the index, IDT and EXT set.
    assert_eq!(undelivered_interrupt(11, 15 << 3 | 0b11, nothing), Some(15));
    assert_eq!(undelivered_interrupt(13, 22 << 3 | 0b11, nothing), Some(22));
    // QEMU 7.2's: index doubled, EXT clear; the local APIC names the vector.
    assert_eq!(undelivered_interrupt(11, 0xf2, || Some(15)), Some(15));
    // A task's `int $0x30`: IDT set, EXT clear, nothing in service.
    assert_eq!(undelivered_interrupt(13, 0x30 << 3 | 0b10, nothing), None);
    // A selector fault (no IDT bit), another exception, or no error code.
    assert_eq!(undelivered_interrupt(13, 0x18 | 0b01, || Some(0x40)), None);
    assert_eq!(undelivered_interrupt(14, 15 << 3 | 0b11, nothing), None);
    assert_eq!(undelivered_interrupt(13, 0, || Some(0x40)), None);
    let mut sim = Sim::boot(&[task("victim", 1, &[])], None, 0, 0);
    sim.expect_running("victim");
    sim.kernel.stray_vector(15);
    assert_eq!(sim.kernel.stray_vectors(), 1);
    assert_eq!(sim.schedule(), crate::kernel::Next::Resume(sim.id("victim")), "nothing ended");
}

/// The task priority holds off every vector below 32 and none the kernel
/// hands to devices: a fixed-mode message on vector 2 can never enter the
/// NMI's entry, on the NMI's own stack, while a real NMI might arrive and
/// reuse that stack (which hung the machine).
#[test]
fn the_task_priority_holds_off_every_exception_vector_and_no_device_vector() {
    use crate::kernel::interrupts::{FIRST_DEVICE_VECTOR, LAST_DEVICE_VECTOR, TASK_PRIORITY};
    let delivered = |vector: u8| vector >> 4 > TASK_PRIORITY >> 4;
    assert!((0..32).all(|vector| !delivered(vector)), "every exception vector is held off");
    assert!((FIRST_DEVICE_VECTOR..=LAST_DEVICE_VECTOR).all(delivered), "every device vector is delivered");
}

#[test]
fn an_msi_flood_wakes_its_holder_once_and_is_counted_to_the_last() {
    let caps = [
        cap(8, BootObject::Control, rights::IRQ, 0),
        cap(9, BootObject::Notification(0), rights::SEND | rights::RECEIVE, 0),
    ];
    let mut sim = Sim::boot(&[task("holder", 1, &caps)], None, 0, 1);
    let id = sim.expect_running("holder");
    let [vector, _, _] = sim.sys(Syscall::IrqAllocMsi, [8, 20, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::IrqBind, [20, 9, 0b1, 0, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::IrqAck, [20, 0, 0, 0, 0, 0]).ok()[0], 0, "nothing arrived yet");
    assert_eq!(sim.sys(Syscall::Wait, [9, 0, 0, 0, 0, 0]), Outcome::Blocked);
    for _ in 0..1000 {
        sim.kernel.interrupt(&mut sim.m, vector as u8);
    }
    sim.expect_running("holder");
    assert_eq!(sim.result(id).ok()[0], 0b1, "one wake-up, the bits coalesced");
    assert_eq!(sim.sys(Syscall::IrqAck, [20, 0, 0, 0, 0, 0]).ok()[0], 1000, "every message counted");
    assert_eq!(sim.sys(Syscall::IrqAck, [20, 0, 0, 0, 0, 0]).ok()[0], 0, "counted from the last acknowledgement");
    sim.kernel.interrupt(&mut sim.m, vector as u8);
    assert_eq!(sim.sys(Syscall::Wait, [9, 0, 0, 0, 0, 0]).ok()[0], 0b1);
    assert_eq!(sim.sys(Syscall::IrqAck, [20, 0, 0, 0, 0, 0]).ok()[0], 1);
}
