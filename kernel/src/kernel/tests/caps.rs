//! Capability operations from user mode: copy, mint, move, delete, revoke,
//! split and info, and every kind of bad slot.

use capabilities::ErrorCode;
use capabilities::abi::{ObjectKind, Syscall, rights, slots};
use capabilities::manifest::BootObject;

use super::sim::{Sim, cap, task};

fn one_task(caps: &[capabilities::manifest::BootCap]) -> Sim {
    let mut sim = Sim::boot(&[task("holder", 1, caps)], None, 1, 1);
    sim.schedule();
    sim
}

fn info(sim: &mut Sim, slot: u64) -> (u64, u32, u64, u64) {
    let [kind_rights, second, third] = sim.sys(Syscall::CapInfo, [slot, 0, 0, 0, 0, 0]).ok();
    (kind_rights & 0xff, (kind_rights >> 8) as u32, second, third)
}

#[test]
fn the_fixed_slots_hold_the_task_and_its_address_space() {
    let mut sim = one_task(&[]);
    assert_eq!(info(&mut sim, u64::from(slots::SELF_TASK)).0, ObjectKind::Task as u64);
    assert_eq!(info(&mut sim, u64::from(slots::SELF_TASK)).3, 0, "the task's own index");
    assert_eq!(info(&mut sim, u64::from(slots::SELF_SPACE)).0, ObjectKind::AddressSpace as u64);
    assert_eq!(
        sim.sys(Syscall::CapInfo, [u64::from(slots::REPLY), 0, 0, 0, 0, 0]).error(),
        ErrorCode::InvalidCapability
    );
}

#[test]
fn copies_only_reduce_rights_and_mint_needs_the_mint_right() {
    let mut sim = one_task(&[cap(8, BootObject::Endpoint(0), rights::SEND | rights::RECEIVE | rights::MINT, 0)]);
    sim.sys(Syscall::CapCopy, [8, 9, u64::from(rights::SEND | rights::GRANT), 0, 0, 0]).ok();
    assert_eq!(info(&mut sim, 9).1, rights::SEND, "GRANT was not there to copy");
    sim.sys(Syscall::CapMint, [8, 10, u64::from(rights::SEND | rights::MINT), 42, 0, 0]).ok();
    assert_eq!(info(&mut sim, 10).2, 42);
    assert_eq!(
        sim.sys(Syscall::CapMint, [9, 11, u64::from(rights::ALL), 7, 0, 0]).error(),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        sim.sys(Syscall::CapMint, [10, 11, u64::from(rights::ALL), 43, 0, 0]).error(),
        ErrorCode::PermissionDenied,
        "a badged capability cannot be re-badged"
    );
    sim.sys(Syscall::CapMint, [10, 11, u64::from(rights::ALL), 42, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::CapCopy, [8, 9, 0, 0, 0, 0]).error(), ErrorCode::SlotOccupied);
}

#[test]
fn revoke_deletes_every_derived_copy_and_delete_only_one() {
    let mut sim = one_task(&[cap(8, BootObject::Notification(0), rights::SEND | rights::RECEIVE | rights::MINT, 0)]);
    sim.sys(Syscall::CapMint, [8, 9, u64::from(rights::SEND | rights::MINT), 1, 0, 0]).ok();
    sim.sys(Syscall::CapCopy, [9, 10, u64::from(rights::SEND), 0, 0, 0]).ok();
    sim.sys(Syscall::CapCopy, [8, 11, u64::from(rights::SEND), 0, 0, 0]).ok();
    sim.sys(Syscall::CapDelete, [11, 0, 0, 0, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::Signal, [11, 0, 0, 0, 0, 0]).error(), ErrorCode::InvalidCapability);
    sim.sys(Syscall::CapRevoke, [8, 0, 0, 0, 0, 0]).ok();
    for slot in [9, 10] {
        assert_eq!(sim.sys(Syscall::Signal, [slot, 0, 0, 0, 0, 0]).error(), ErrorCode::InvalidCapability);
    }
    assert_eq!(sim.sys(Syscall::Signal, [8, 0, 0, 0, 0, 0]).ok(), [0; 3], "the revoked capability itself stays");
}

#[test]
fn moving_keeps_the_capability_revocable_from_its_parent() {
    let mut sim = one_task(&[cap(8, BootObject::Notification(0), rights::ALL, 0)]);
    sim.sys(Syscall::CapCopy, [8, 9, u64::from(rights::SEND), 0, 0, 0]).ok();
    sim.sys(Syscall::CapMove, [9, 50, 0, 0, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::CapInfo, [9, 0, 0, 0, 0, 0]).error(), ErrorCode::InvalidCapability);
    sim.sys(Syscall::CapRevoke, [8, 0, 0, 0, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::CapInfo, [50, 0, 0, 0, 0, 0]).error(), ErrorCode::InvalidCapability);
}

#[test]
fn splitting_narrows_device_memory_and_ports() {
    let mut sim = one_task(&[
        cap(8, BootObject::DeviceMemory { base: 0xfed9_0000, pages: 4 }, rights::READ | rights::WRITE, 0),
        cap(9, BootObject::IoPorts { base: 0x70, count: 2 }, rights::SEND | rights::RECEIVE, 0),
    ]);
    sim.sys(Syscall::CapSplit, [8, 10, 1, 2, 0, 0]).ok();
    assert_eq!(info(&mut sim, 10), (ObjectKind::DeviceMemory as u64, rights::READ | rights::WRITE, 0xfed9_1000, 2));
    assert_eq!(sim.sys(Syscall::CapSplit, [8, 11, 3, 2, 0, 0]).error(), ErrorCode::InvalidArgument);
    assert_eq!(sim.sys(Syscall::CapSplit, [8, 11, u64::MAX, 2, 0, 0]).error(), ErrorCode::InvalidArgument);
    assert_eq!(sim.sys(Syscall::CapSplit, [8, 11, 0, 0, 0, 0]).error(), ErrorCode::InvalidArgument);
    sim.sys(Syscall::CapSplit, [9, 11, 1, 1, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::PortIn, [11, 0x70, 1, 0, 0, 0]).error(), ErrorCode::PermissionDenied);
    assert_eq!(sim.sys(Syscall::PortIn, [11, 0x71, 1, 0, 0, 0]).ok()[0], 0x71 * 3);
    assert_eq!(sim.sys(Syscall::CapSplit, [u64::from(slots::SELF_TASK), 12, 0, 1, 0, 0]).error(), ErrorCode::WrongKind);
}

#[test]
fn every_bad_slot_index_is_an_error_for_every_call() {
    let mut sim = one_task(&[]);
    let out_of_range = [0, 128, 1 << 32, u64::MAX];
    let empty = [5, 127];
    for call in capabilities::abi::Syscall::ALL {
        if matches!(call, Syscall::Exit | Syscall::Yield | Syscall::Time | Syscall::LogWrite) {
            continue;
        }
        let creates = matches!(
            call,
            Syscall::EndpointCreate | Syscall::NotificationCreate | Syscall::FrameAlloc | Syscall::IrqAllocMsi
        );
        let slots = out_of_range.iter().chain(if creates { &[][..] } else { &empty[..] });
        for &slot in slots {
            let outcome = sim.sys(*call, [slot, slot, slot, slot, slot, slot]);
            let code = outcome.error();
            assert!(
                matches!(code, ErrorCode::InvalidCapability | ErrorCode::SlotOccupied | ErrorCode::InvalidArgument),
                "{call:?} with slot {slot:#x} gave {code:?}"
            );
        }
    }
}

/// Slot 3 holds only the reply capability a receive puts there: no system
/// call puts anything else there, and a receive window skips it. A receive
/// made with an endpoint capability moved there was once ended by the very
/// call it received, when the slot was emptied for the reply capability.
#[test]
fn the_reply_slot_holds_nothing_but_a_reply_capability() {
    let reply = u64::from(slots::REPLY);
    let everything = rights::SEND | rights::RECEIVE | rights::GRANT | rights::MINT;
    let mut sim = one_task(&[
        cap(8, BootObject::Endpoint(0), everything, 0),
        cap(9, BootObject::Control, rights::ALL, 0),
        cap(10, BootObject::DeviceMemory { base: 0xd000_0000, pages: 2 }, rights::READ, 0),
    ]);
    let refused = |sim: &mut Sim, call: Syscall, args: [u64; 6]| {
        assert_eq!(sim.sys(call, args).error(), ErrorCode::InvalidCapability, "{call:?} into the reply slot");
    };
    refused(&mut sim, Syscall::CapMove, [8, reply, 0, 0, 0, 0]);
    refused(&mut sim, Syscall::CapCopy, [8, reply, u64::from(rights::ALL), 0, 0, 0]);
    refused(&mut sim, Syscall::CapMint, [8, reply, u64::from(rights::ALL), 5, 0, 0]);
    refused(&mut sim, Syscall::CapSplit, [10, reply, 0, 1, 0, 0]);
    refused(&mut sim, Syscall::EndpointCreate, [reply, 0, 0, 0, 0, 0]);
    refused(&mut sim, Syscall::NotificationCreate, [reply, 0, 0, 0, 0, 0]);
    refused(&mut sim, Syscall::FrameAlloc, [reply, 1, 0, 0, 0, 0]);
    refused(&mut sim, Syscall::IrqAllocMsi, [9, reply, 0, 0, 0, 0]);
    refused(&mut sim, Syscall::DeviceMemoryCreate, [9, reply, 0xd010_0000, 1, 0, 0]);
    // A capability sent to a window that starts at slot 1 passes 1 and 2
    // (occupied) and 3 (the reply slot) and lands in 4.
    let mut sim = Sim::boot(
        &[
            task("receiver", 2, &[cap(8, BootObject::Endpoint(0), rights::RECEIVE, 0)]),
            task("sender", 1, &[cap(8, BootObject::Endpoint(0), everything, 0)]),
        ],
        None,
        1,
        0,
    );
    let (receiver, sender) = (sim.id("receiver"), sim.id("sender"));
    sim.run("receiver");
    sim.window(receiver, 1, 8);
    assert_eq!(sim.sys(Syscall::Recv, [8, 0, 0, 0, 0, 0]), super::sim::Outcome::Blocked);
    sim.run("sender");
    sim.send_caps(sender, &[8]);
    sim.sys(Syscall::Send, [8, 0, 0, 0, 0, 0]).ok();
    assert_eq!(sim.received(receiver), [4]);
}
