//! DMA pins and revocation: revoking a frame capability reaches the pins
//! made from it, however far the frame travelled, and the memory stays
//! until the pinner lets go.

use capabilities::ErrorCode;
use capabilities::abi::ipc::NONBLOCK;
use capabilities::abi::{Syscall, rights, slots};
use capabilities::manifest::BootObject;

use super::sim::{Outcome, Sim, cap, client, serve, task};

const REPLY: u64 = slots::REPLY as u64;
/// The IOMMU server's slots: control (DMA), its endpoint, its events
/// notification, and where a request's frame arrives.
const CONTROL: u64 = 8;
const EVENTS: u64 = 10;
const RECEIVED: u64 = 40;
/// The bit the server asks revocations to set.
const REVOKED_BIT: u64 = 1 << 63;
/// The lender's frame, and where the borrower receives it.
const LENT: u64 = 20;
const BORROWED: u64 = 30;

/// A lender allocates a frame and sends it to a borrower, which sends it
/// to the IOMMU server with a request; the server watches its pins on
/// `EVENTS`, pins the frame for device writes and deletes the capability
/// the request brought, as the real server does. Returns the pin handle.
fn lent_and_pinned(extra: &[capabilities::manifest::TaskImage]) -> (Sim, u64) {
    let mut tasks = vec![
        task(
            "iommu",
            4,
            &[
                cap(8, BootObject::Control, rights::DMA, 0),
                serve(9, 0),
                cap(10, BootObject::Notification(0), rights::SEND | rights::RECEIVE, 0),
            ],
        ),
        task("borrower", 2, &[serve(8, 1), client(9, 0, 1)]),
        task("lender", 1, &[client(8, 1, 2)]),
    ];
    tasks.extend_from_slice(extra);
    let mut sim = Sim::boot(&tasks, None, 2, 1);
    let (iommu, borrower, lender) = (sim.id("iommu"), sim.id("borrower"), sim.id("lender"));
    sim.run("iommu");
    sim.sys(Syscall::DmaWatch, [CONTROL, EVENTS, REVOKED_BIT, 0, 0, 0]).ok();
    sim.window(iommu, RECEIVED as u32, 1);
    assert_eq!(sim.sys(Syscall::Recv, [9, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.run("borrower");
    sim.window(borrower, BORROWED as u32, 1);
    assert_eq!(sim.sys(Syscall::Recv, [8, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.run("lender");
    sim.sys(Syscall::FrameAlloc, [LENT, 1, 0, 0, 0, 0]).ok();
    sim.send_caps(lender, &[LENT as u32]);
    sim.sys(Syscall::Send, [8, 0, 0, 0, 0, 0]).ok();
    assert_eq!(sim.received(borrower), [BORROWED as u32]);
    sim.run("borrower");
    sim.send_caps(borrower, &[BORROWED as u32]);
    assert_eq!(sim.sys(Syscall::Call, [9, 0, 0, 0, 0, 0]), Outcome::Blocked);
    sim.run("iommu");
    assert_eq!(sim.received(iommu), [RECEIVED as u32]);
    let [pin, _, pages] = sim.sys(Syscall::DmaPin, [CONTROL, RECEIVED, u64::from(rights::WRITE), 0, 0, 0]).ok();
    assert_eq!(pages, 1);
    sim.sys(Syscall::CapDelete, [RECEIVED, 0, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::Reply, [REPLY, 0, 0, 0, 0, 0]).ok();
    (sim, pin)
}

/// The bits pending in the IOMMU server's events notification (it runs).
fn events(sim: &mut Sim) -> u64 {
    match sim.sys(Syscall::Wait, [EVENTS, NONBLOCK, 0, 0, 0, 0]) {
        Outcome::Returned(0, [bits, ..]) => bits,
        _ => 0,
    }
}

#[test]
fn revoking_a_lent_frame_revokes_the_pin_made_from_it_and_tells_the_pinner() {
    let (mut sim, pin) = lent_and_pinned(&[]);
    assert_eq!(events(&mut sim), 0, "nothing revoked yet");
    assert_eq!(sim.sys(Syscall::DmaRevoked, [CONTROL, 0, 0, 0, 0, 0]).error(), ErrorCode::WouldBlock);
    sim.run("lender");
    sim.sys(Syscall::CapRevoke, [LENT, 0, 0, 0, 0, 0]).ok();
    sim.run("borrower");
    assert_eq!(sim.sys(Syscall::CapInfo, [BORROWED, 0, 0, 0, 0, 0]).error(), ErrorCode::InvalidCapability);
    sim.run("iommu");
    assert_eq!(events(&mut sim), REVOKED_BIT, "the pinner is signalled");
    let [revoked, physical, pages] = sim.sys(Syscall::DmaRevoked, [CONTROL, 0, 0, 0, 0, 0]).ok();
    assert_eq!(revoked, pin, "the pin made from the lent frame");
    assert_eq!((physical % 4096, pages), (0, 1));
    assert_eq!(
        sim.sys(Syscall::DmaRevoked, [CONTROL, 0, 0, 0, 0, 0]).error(),
        ErrorCode::WouldBlock,
        "each revoked pin is reported once"
    );
    sim.sys(Syscall::DmaUnpin, [CONTROL, pin, 0, 0, 0, 0]).ok();
}

#[test]
fn a_revoked_pin_keeps_the_frame_until_its_pinner_releases_it() {
    let (mut sim, pin) = lent_and_pinned(&[]);
    sim.run("borrower");
    // The borrower's deletion hands the pin to the lender's capability.
    sim.sys(Syscall::CapDelete, [BORROWED, 0, 0, 0, 0, 0]).ok();
    sim.run("lender");
    let free = sim.kernel.frames().free_frames();
    sim.sys(Syscall::CapRevoke, [LENT, 0, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::CapDelete, [LENT, 0, 0, 0, 0, 0]).ok();
    assert_eq!(sim.kernel.frames().free_frames(), free, "no capability is left, yet a device may still reach it");
    sim.run("iommu");
    assert_eq!(sim.sys(Syscall::DmaRevoked, [CONTROL, 0, 0, 0, 0, 0]).ok()[0], pin);
    assert_eq!(sim.kernel.frames().free_frames(), free, "reported is not released");
    sim.sys(Syscall::DmaUnpin, [CONTROL, pin, 0, 0, 0, 0]).ok();
    assert_eq!(sim.kernel.frames().free_frames(), free + 1, "the pinner's release frees it");
}

#[test]
fn another_task_can_neither_release_nor_learn_of_a_revoked_pin() {
    let rogue = task("rogue", 3, &[cap(8, BootObject::Control, rights::DMA, 0)]);
    let (mut sim, pin) = lent_and_pinned(&[rogue]);
    sim.run("lender");
    sim.sys(Syscall::CapRevoke, [LENT, 0, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::CapDelete, [LENT, 0, 0, 0, 0, 0]).ok();
    let free = sim.kernel.frames().free_frames();
    sim.run("rogue");
    assert_eq!(sim.sys(Syscall::DmaRevoked, [8, 0, 0, 0, 0, 0]).error(), ErrorCode::WouldBlock, "not its pin");
    for guess in [pin, pin ^ 1 << 16, pin + 1] {
        assert_eq!(sim.sys(Syscall::DmaUnpin, [8, guess, 0, 0, 0, 0]).error(), ErrorCode::InvalidArgument);
    }
    assert_eq!(sim.kernel.frames().free_frames(), free, "the frame stays");
    sim.run("iommu");
    assert_eq!(sim.sys(Syscall::DmaRevoked, [CONTROL, 0, 0, 0, 0, 0]).ok()[0], pin, "the pinner still learns of it");
    sim.sys(Syscall::DmaUnpin, [CONTROL, pin, 0, 0, 0, 0]).ok();
    assert_eq!(sim.kernel.frames().free_frames(), free + 1);
}

#[test]
fn repeated_revokes_revoke_a_pin_once_and_its_release_frees_the_frame_once() {
    let (mut sim, pin) = lent_and_pinned(&[]);
    sim.run("lender");
    let free = sim.kernel.frames().free_frames();
    for _ in 0..3 {
        sim.sys(Syscall::CapRevoke, [LENT, 0, 0, 0, 0, 0]).ok();
    }
    sim.run("iommu");
    assert_eq!(events(&mut sim), REVOKED_BIT);
    assert_eq!(sim.sys(Syscall::DmaRevoked, [CONTROL, 0, 0, 0, 0, 0]).ok()[0], pin);
    assert_eq!(sim.sys(Syscall::DmaRevoked, [CONTROL, 0, 0, 0, 0, 0]).error(), ErrorCode::WouldBlock);
    sim.sys(Syscall::DmaUnpin, [CONTROL, pin, 0, 0, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::DmaUnpin, [CONTROL, pin, 0, 0, 0, 0]).error(), ErrorCode::InvalidArgument);
    assert_eq!(sim.kernel.frames().free_frames(), free, "the lender still holds its frame");
    sim.run("lender");
    sim.sys(Syscall::CapRevoke, [LENT, 0, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::CapDelete, [LENT, 0, 0, 0, 0, 0]).ok();
    assert_eq!(sim.kernel.frames().free_frames(), free + 1, "freed once, when nothing holds it");
    sim.run("iommu");
    assert_eq!(events(&mut sim), 0, "a released pin is revoked no more");
}

#[test]
fn a_released_pin_is_out_of_reach_of_later_revocations() {
    let (mut sim, pin) = lent_and_pinned(&[]);
    sim.sys(Syscall::DmaUnpin, [CONTROL, pin, 0, 0, 0, 0]).ok();
    sim.run("lender");
    sim.sys(Syscall::CapRevoke, [LENT, 0, 0, 0, 0, 0]).ok();
    sim.run("iommu");
    assert_eq!(events(&mut sim), 0);
    assert_eq!(sim.sys(Syscall::DmaRevoked, [CONTROL, 0, 0, 0, 0, 0]).error(), ErrorCode::WouldBlock);
    assert_eq!(sim.sys(Syscall::DmaUnpin, [CONTROL, pin, 0, 0, 0, 0]).error(), ErrorCode::InvalidArgument);
}

#[test]
fn the_pin_watch_checks_its_arguments_and_ends_with_its_notification_capability() {
    let (mut sim, pin) = lent_and_pinned(&[]);
    let bit = u64::from(rights::SEND);
    assert_eq!(sim.sys(Syscall::DmaWatch, [9, EVENTS, bit, 0, 0, 0]).error(), ErrorCode::WrongKind, "no control");
    assert_eq!(sim.sys(Syscall::DmaWatch, [CONTROL, 9, bit, 0, 0, 0]).error(), ErrorCode::WrongKind);
    assert_eq!(sim.sys(Syscall::DmaWatch, [CONTROL, EVENTS, 0, 0, 0, 0]).error(), ErrorCode::InvalidArgument);
    sim.sys(Syscall::CapCopy, [EVENTS, 11, u64::from(rights::RECEIVE), 0, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::DmaWatch, [CONTROL, 11, 2, 0, 0, 0]).error(), ErrorCode::PermissionDenied);
    // A watch made with a copy ends when the copy is deleted.
    sim.sys(Syscall::CapCopy, [EVENTS, 12, u64::from(rights::SEND), 0, 0, 0]).ok();
    sim.sys(Syscall::DmaWatch, [CONTROL, 12, 2, 0, 0, 0]).ok();
    sim.sys(Syscall::CapDelete, [12, 0, 0, 0, 0, 0]).ok();
    sim.run("lender");
    sim.sys(Syscall::CapRevoke, [LENT, 0, 0, 0, 0, 0]).ok();
    sim.run("iommu");
    assert_eq!(events(&mut sim), 0, "the watch ended with its capability");
    sim.sys(Syscall::DmaWatch, [CONTROL, EVENTS, REVOKED_BIT, 0, 0, 0]).ok();
    assert_eq!(events(&mut sim), REVOKED_BIT, "a new watch is told of the revoked pin at once");
    assert_eq!(sim.sys(Syscall::DmaRevoked, [CONTROL, 0, 0, 0, 0, 0]).ok()[0], pin);
    assert_eq!(sim.sys(Syscall::DmaRevoked, [9, 0, 0, 0, 0, 0]).error(), ErrorCode::WrongKind);
}
