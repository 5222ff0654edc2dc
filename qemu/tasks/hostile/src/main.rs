//! A hostile task, run in QEMU: everything a buggy or malicious task can send, and a fault storm.
//!
//! It holds what a user task holds (the IOMMU server's user operations,
//! the PCI server's holder operations, the edu driver's `copy`, and the
//! groups of 00:04.0 and 00:06.0) and misuses all of it: random,
//! truncated and oversized messages, capabilities that are empty, revoked
//! or of the wrong kind, slots and IOVAs out of range, every quota run
//! out. Every request must come back with an error code, the servers must
//! go on serving the well-behaved driver, and the IOMMU server's counters
//! must return to where they started. Then its device faults again and
//! again: the group's fault log stays bounded and counts what it dropped
//! exactly. Last come the sequences that once crashed or fooled the kernel
//! (`kernel_holes`). The `rounds` and `storm` parameters size it (the soak
//! setting multiplies them).
#![no_std]
#![no_main]

mod kernel_holes;

use core::sync::atomic::{AtomicU32, Ordering};

use capabilities::abi::ipc::MSG_MAX;
use capabilities::abi::rights;
use edu_api as edu;
use iommu_api as iommu;
use iommu_api::FAULTS_PER_REPLY;
use iommu_api::client::group;
use serde::de::DeserializeOwned;
use userlib::testkit::prelude::*;
use xorshift::XorShift;

userlib::cap_slot!(IOMMU: Endpoint = "iommu");
userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::cap_slot!(EDU_DMA: Endpoint = "edu-dma");
userlib::cap_slot!(GO_A: Notification = "go-a");
userlib::cap_slot!(GO_B: Notification = "go-b");
userlib::cap_slot!(GO_C: Notification = "go-c");
userlib::cap_slot!(VICTIM_A: Task = "victim-a");
userlib::cap_slot!(VICTIM_B: Task = "victim-b");
userlib::cap_slot!(VICTIM_C: Task = "victim-c");
userlib::cap_slot!(ACCOMPLICE: Task = "accomplice");
userlib::cap_slot!(ACCOUNTING: Control = "accounting");
userlib::entry!(main);

/// Devices whose groups this task may own.
const STORM_DEVICE: Bdf = Bdf::at(0, 6, 0);
const QUOTA_DEVICE: Bdf = Bdf::at(0, 4, 0);
/// Slots: a grant window (four), a group capability, frames, scratch.
const WINDOW: u32 = 64;
const GROUP: u32 = 70;
const FRAME: u32 = 71;
const BIG_FRAME: u32 = 72;
const NOTIFICATION: u32 = 73;
const DONE: u32 = 74;
const SCRATCH: u32 = 75;
/// Where the storm device's BAR0 is mapped.
const BAR_VIRT: u64 = 0x2000_0000;
/// The mapping quota the policy sets on the iommu endpoint.
const MAPPING_QUOTA_PAGES: u64 = 32;
/// Faults a group's log keeps.
const FAULT_LOG: u64 = 16;
/// Page tables the storm's mapping of its device's registers needed: the
/// kernel keeps them with this task's address space after the unmap.
const BAR_TABLE_PAGES: u64 = 1;

/// The IOMMU server's counters when this task started (mappings, table
/// pages, domains), packed.
static BASELINE: [AtomicU32; 3] = [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)];
/// The kernel's figures when this task started.
static FIGURES: testkit::Baseline = testkit::Baseline::new();

fn main() -> u64 {
    let objects_made = objects::alloc_frame(FRAME, 1).is_ok()
        && objects::alloc_frame(BIG_FRAME, 2 * MAPPING_QUOTA_PAGES).is_ok()
        && objects::create_notification(NOTIFICATION).is_ok()
        && objects::create_notification(DONE).is_ok();
    if !objects_made {
        return testkit::setup_failed("no frames or notifications (the policy must allow four objects)");
    }
    testkit::run(userlib::cases![
        the_servers_start_healthy,
        kernel_holes::watching_itself_crowds_out_no_servers_watch,
        random_messages_get_error_codes_not_crashes,
        truncated_requests_are_malformed,
        oversized_messages_are_refused_by_the_kernel,
        bad_capabilities_in_messages_are_refused,
        out_of_range_slots_and_iovas_are_refused,
        every_system_call_refuses_bad_arguments,
        every_quota_holds_and_comes_back,
        a_fault_storm_stays_bounded_and_counted,
        owners_killed_at_random_points_give_everything_back,
        kernel_holes::log_write_from_device_memory_is_a_bad_address,
        kernel_holes::a_huge_receive_window_costs_no_more_than_the_slots,
        kernel_holes::revoking_a_capability_withdraws_the_send_blocked_on_it,
        kernel_holes::nothing_but_a_reply_enters_the_reply_slot,
        the_servers_still_serve_and_leaked_nothing
    ])
}

// ----- helpers -----

fn stats(buffer: &mut Buffer) -> Option<[u32; 3]> {
    iommu::client::stats(IOMMU.get(), buffer).ok().map(|stats| stats.held())
}

fn faults_seen(buffer: &mut Buffer) -> Option<u64> {
    iommu::client::stats(IOMMU.get(), buffer).ok().map(|stats| stats.faults)
}

/// Sends `len` bytes already in the buffer; the reply must decode as `R`.
fn raw_call<R: DeserializeOwned>(endpoint: Cap<Endpoint>, buffer: &mut Buffer, len: usize) -> Result<R, ErrorCode> {
    buffer.set_window(0, 0);
    let received = endpoint.call(buffer, len)?;
    buffer.decode::<R>(received.len)
}

/// Claims `device`'s group into [`GROUP`].
fn claim(buffer: &mut Buffer, device: Bdf) -> Result<(), ErrorCode> {
    group::claim(IOMMU.get(), buffer, device, GROUP).map(|_| ()).map_err(|refused| refused.code)
}

fn release_group(buffer: &mut Buffer) -> Result<(), ErrorCode> {
    group::release(Cap::at(GROUP), buffer).map_err(|refused| refused.code)
}

fn wait_unowned(buffer: &mut Buffer, device: Bdf) -> bool {
    group::wait_unowned(IOMMU.get(), buffer, device, Cap::at(NOTIFICATION), 2_000_000).is_ok()
}

fn driver_works(buffer: &mut Buffer) -> bool {
    matches!(
        EDU_DMA.get().ask::<_, edu::Reply>(buffer, &edu::Request::Copy { len: 256, seed: 0x42 }, &[], 0),
        Ok(edu::Reply::Copied { matched: true, .. })
    )
}

// ----- the cases -----

fn the_servers_start_healthy(buffer: &mut Buffer) -> Outcome {
    let start = stats(buffer);
    check!(start.is_some(), "the IOMMU server answers");
    check!(FIGURES.take(ACCOUNTING.get()), "the kernel's figures");
    for (slot, value) in BASELINE.iter().zip(start.unwrap_or_default()) {
        slot.store(value, Ordering::Relaxed);
    }
    check!(driver_works(buffer), "the well-behaved driver's DMA works");
    Ok(())
}

fn random_messages_get_error_codes_not_crashes(buffer: &mut Buffer) -> Outcome {
    let rounds = boot::parameter("rounds", 1000);
    let mut random = XorShift::new(0x9e37_79b9_7f4a_7c15);
    let (mut refused, mut answered) = (0u64, 0u64);
    for round in 0..rounds {
        let len = match random.below(16) {
            0 => random.below(MSG_MAX as u64 + 1),
            _ => random.below(64),
        } as usize;
        for byte in &mut buffer.message_mut()[..len] {
            *byte = random.next_u64() as u8;
        }
        // Some messages carry a capability from an arbitrary slot.
        let carried = [random.below(140) as u32];
        buffer.set_send_caps(if random.below(8) == 0 { &carried } else { &[] });
        let code = match round % 3 {
            0 => raw_call::<iommu::Reply>(IOMMU.get(), buffer, len).map(|reply| reply.refusal().map(|(code, _)| code)),
            1 => raw_call::<pci_api::Reply>(PCI.get(), buffer, len).map(|reply| reply.refusal().map(|(code, _)| code)),
            _ => raw_call::<edu::Reply>(EDU_DMA.get(), buffer, len).map(|reply| reply.refusal().map(|(code, _)| code)),
        };
        buffer.set_send_caps(&[]);
        match code {
            Ok(Some(_)) => refused += 1,
            Ok(None) => answered += 1,
            Err(code) => {
                defmt::error!("  round {=u64}: {=usize} bytes: the call itself failed: {}", round, len, code);
                check!(false, "every message gets a reply the client can decode");
            }
        }
    }
    check!(driver_works(buffer), "the driver still works");
    defmt::info!(
        "  {=u64} random messages: {=u64} refused with an error code, {=u64} valid by chance; the driver still works",
        rounds,
        refused,
        answered
    );
    Ok(())
}

fn truncated_requests_are_malformed(buffer: &mut Buffer) -> Outcome {
    let group = iommu::Request::Groups { group: 1, offset: 0 };
    let copy = edu::Request::Copy { len: 300, seed: 1 };
    let read = pci_api::Request::ConfigRead { device: STORM_DEVICE, offset: 0x40, width: 4 };
    let mut checked = 0;
    for which in 0..3 {
        let full = match which {
            0 => check_ok!(buffer.encode(&group)),
            1 => check_ok!(buffer.encode(&read)),
            _ => check_ok!(buffer.encode(&copy)),
        };
        for len in 0..full {
            let _ = match which {
                0 => buffer.encode(&group),
                1 => buffer.encode(&read),
                _ => buffer.encode(&copy),
            };
            let code = match which {
                0 => check_ok!(raw_call::<iommu::Reply>(IOMMU.get(), buffer, len)).refusal().map(|(code, _)| code),
                1 => check_ok!(raw_call::<pci_api::Reply>(PCI.get(), buffer, len)).refusal().map(|(code, _)| code),
                _ => check_ok!(raw_call::<edu::Reply>(EDU_DMA.get(), buffer, len)).refusal().map(|(code, _)| code),
            };
            check_eq!(code, Some(ErrorCode::Malformed), "a cut-off request is malformed");
            checked += 1;
        }
    }
    defmt::info!("  {=usize} truncated requests, each refused as malformed", checked);
    Ok(())
}

fn oversized_messages_are_refused_by_the_kernel(buffer: &mut Buffer) -> Outcome {
    for len in [MSG_MAX + 1, MSG_MAX + 4096, usize::MAX] {
        let result = IOMMU.get().call(buffer, len);
        check_eq!(result.map(|_| ()), Err(ErrorCode::TooLarge), "longer than a message");
    }
    check!(stats(buffer).is_some());
    Ok(())
}

fn bad_capabilities_in_messages_are_refused(buffer: &mut Buffer) -> Outcome {
    check_ok!(claim(buffer, QUOTA_DEVICE));
    let group = Cap::<Endpoint>::at(GROUP);
    let iommu::Reply::Ioas { ioas } = check_ok!(group.ask(buffer, &iommu::Request::IoasCreate, &[], 0)) else {
        userlib::fail!("the group capability creates an address space");
    };
    let map = iommu::Request::Map { ioas, iova: 0x10_0000, writable: true };
    // No frame, an empty slot, a notification instead of a frame, a
    // revoked frame, and the group capability itself.
    let empty = SCRATCH + 1;
    let revoked = check_ok!(Cap::<Frame>::at(FRAME).copy_to(SCRATCH, rights::WRITE | rights::GRANT));
    check_ok!(Cap::<Frame>::at(FRAME).revoke());
    let cases = [
        (&[][..], ErrorCode::InvalidArgument),
        (&[empty], ErrorCode::InvalidArgument),
        (&[NOTIFICATION], ErrorCode::WrongKind),
        (&[revoked.slot()], ErrorCode::InvalidArgument),
        (&[GROUP], ErrorCode::WrongKind),
    ];
    for (send, expected) in cases {
        let reply: iommu::Reply = check_ok!(group.ask(buffer, &map, send, 0));
        check_eq!(testkit::refusal(&reply), Some(expected), "no frame, no mapping, and the reason says why");
    }
    let _ = revoked.delete();
    // A task capability that is not the claimant's own.
    check_ok!(release_group(buffer));
    check!(wait_unowned(buffer, QUOTA_DEVICE));
    buffer.set_send_caps(&[NOTIFICATION]);
    buffer.set_window(GROUP, 1);
    let reply = IOMMU.get().call_with(buffer, &iommu::Request::ClaimGroup { device: QUOTA_DEVICE });
    buffer.set_send_caps(&[]);
    buffer.set_window(0, 0);
    let decoded = check_ok!(reply.and_then(|message| buffer.decode::<iommu::Reply>(message.len)));
    check_eq!(
        testkit::refusal(&decoded),
        Some(ErrorCode::PermissionDenied),
        "a claim needs the claimant's own task capability"
    );
    Ok(())
}

fn out_of_range_slots_and_iovas_are_refused(buffer: &mut Buffer) -> Outcome {
    for slot in [128, 4096, u32::MAX] {
        let result = Cap::<Endpoint>::at(slot).call(buffer, 0);
        check!(result.is_err(), "no capability at that slot");
        check!(Cap::<Frame>::at(slot).info().is_err());
        check!(Cap::<Frame>::at(FRAME).copy_to(slot, rights::SEND).is_err());
    }
    check_ok!(claim(buffer, QUOTA_DEVICE));
    let group = Cap::<Endpoint>::at(GROUP);
    let iommu::Reply::Ioas { ioas } = check_ok!(group.ask(buffer, &iommu::Request::IoasCreate, &[], 0)) else {
        userlib::fail!("the group capability creates an address space");
    };
    for iova in [0, 0x1001, 1 << 60, 0xffff_ffff_ffff_f000, 1 << 48] {
        let map = iommu::Request::Map { ioas, iova, writable: false };
        let reply: iommu::Reply = check_ok!(group.ask(buffer, &map, &[FRAME], 0));
        check!(testkit::refusal(&reply).is_some(), "page 0, unaligned and out-of-range IOVAs are refused");
    }
    for iova in [0x1000, 1 << 50, u64::MAX] {
        let reply: iommu::Reply = check_ok!(group.ask(buffer, &iommu::Request::Unmap { ioas, iova }, &[], 0));
        check!(testkit::refusal(&reply).is_some(), "nothing mapped there");
    }
    let reply: iommu::Reply = check_ok!(group.ask(buffer, &iommu::Request::Attach { ioas: Some(ioas + 7) }, &[], 0));
    check_eq!(testkit::refusal(&reply), Some(ErrorCode::NotFound));
    check_ok!(release_group(buffer));
    check!(wait_unowned(buffer, QUOTA_DEVICE));
    Ok(())
}

fn every_system_call_refuses_bad_arguments(_buffer: &mut Buffer) -> Outcome {
    use capabilities::abi::Syscall;
    // No value is a slot this task holds, so nothing is deleted or moved:
    // null, past the slot table, the top user page, non-canonical, the
    // kernel's direct map and image, and all ones.
    const BAD: [u64; 7] =
        [0, 0x1001, 0x7fff_ffff_f000, 1 << 47, 0xffff_8000_0000_0000, 0xffff_ffff_8010_0000, u64::MAX];
    let rounds = boot::parameter("rounds", 1000) * 2;
    let mut random = XorShift::new(0xdead_beef_cafe_f00d);
    let mut refused = 0u64;
    for _ in 0..rounds {
        let number = random.below(40);
        if number == Syscall::Exit as u64 {
            continue;
        }
        let args = [0; 6].map(|_: u64| BAD[random.below(BAD.len() as u64) as usize]);
        // Only the calls that take no capability may succeed: yield, the
        // clock, and a log write of nothing.
        let harmless = number == Syscall::Yield as u64
            || number == Syscall::Time as u64
            || (number == Syscall::LogWrite as u64 && args[1] == 0);
        match userlib::syscall::raw_number(number, args) {
            Err(_) => refused += 1,
            Ok(_) if !harmless => {
                defmt::error!("  call {=u64} with {:#x} succeeded", number, args);
                check!(false, "a call with no valid argument succeeded");
            }
            Ok(_) => {}
        }
    }
    for address in BAD {
        for len in [1, 64, 4096, u64::MAX] {
            let written = userlib::syscall::raw_number(Syscall::LogWrite as u64, [address, len, 0, 0, 0, 0]);
            check!(written.is_err(), "no log frame from memory the task does not have");
        }
    }
    for number in [40, 1000, u64::MAX] {
        check_eq!(userlib::syscall::raw_number(number, [0; 6]).map(|_| ()), Err(ErrorCode::NoSuchCall));
    }
    defmt::info!("  {=u64} system calls with bad arguments: {=u64} refused, the kernel still running", rounds, refused);
    Ok(())
}

fn every_quota_holds_and_comes_back(buffer: &mut Buffer) -> Outcome {
    check_ok!(claim(buffer, QUOTA_DEVICE));
    let group = Cap::<Endpoint>::at(GROUP);
    let mut spaces = heapless::Vec::<u16, 4>::new();
    for _ in 0..3 {
        match check_ok!(group.ask(buffer, &iommu::Request::IoasCreate, &[], 0)) {
            iommu::Reply::Ioas { ioas } => check!(spaces.push(ioas).is_ok()),
            reply => check_eq!(testkit::refusal(&reply), Some(ErrorCode::QuotaExceeded), "the third is past the quota"),
        }
    }
    check_eq!(spaces.len(), 2, "the policy's address-space quota");
    let ioas = spaces[0];
    let map = iommu::Request::Map { ioas, iova: 0x10_0000, writable: true };
    let reply: iommu::Reply = check_ok!(group.ask(buffer, &map, &[BIG_FRAME], 0));
    check_eq!(testkit::refusal(&reply), Some(ErrorCode::QuotaExceeded), "a frame larger than the mapping quota");
    let mut mapped = 0;
    for page in 0..MAPPING_QUOTA_PAGES + 4 {
        let map = iommu::Request::Map { ioas, iova: 0x10_0000 + page * 0x1000, writable: true };
        match check_ok!(group.ask(buffer, &map, &[FRAME], 0)) {
            iommu::Reply::Mapped { .. } => mapped += 1,
            reply => check_eq!(testkit::refusal(&reply), Some(ErrorCode::QuotaExceeded)),
        }
    }
    check_eq!(mapped, MAPPING_QUOTA_PAGES, "one page at a time, up to the quota");
    check!(claim(buffer, QUOTA_DEVICE).is_err(), "a group is claimed once");
    check_ok!(release_group(buffer));
    check!(wait_unowned(buffer, QUOTA_DEVICE));
    Ok(())
}

fn a_fault_storm_stays_bounded_and_counted(buffer: &mut Buffer) -> Outcome {
    let storm = boot::parameter("storm", 200);
    check_ok!(claim(buffer, STORM_DEVICE));
    let granted = check_ok!(pci_api::client::acquire(PCI.get(), buffer, STORM_DEVICE, WINDOW));
    let (Some(bar), Some(interrupt)) = (granted.bar(0), granted.interrupt()) else {
        check!(false, "BAR0 and an interrupt");
        return Ok(());
    };
    check!(pci_api::client::enable_bus_mastering(PCI.get(), buffer, STORM_DEVICE).is_ok(), "bus mastering on");
    let device = check_ok!(::edu::Edu::new(Cap::at(bar), Cap::at(interrupt), Cap::at(DONE), BAR_VIRT));
    let seen_before = faults_seen(buffer).unwrap_or(0);
    for round in 0..storm {
        // The group is blocked: every write faults. The IOVAs are the kernel
        // image's physical addresses, whose read-only part the kernel checks
        // when the system ends.
        check_ok!(device.dma(::edu::DEVICE_BUFFER, 0x10_0000 + (round % 64) * 0x1000, 8, true));
        if round % 50 == 49 {
            check!(driver_works(buffer), "other groups keep working during the storm");
        }
    }
    let mut records = 0u64;
    let mut dropped = 0u64;
    loop {
        let reply: iommu::Reply = check_ok!(Cap::at(GROUP).ask(buffer, &iommu::Request::Faults, &[], 0));
        let iommu::Reply::Faults { records: batch, remaining, dropped: lost } = reply else {
            check!(false, "the fault log");
            return Ok(());
        };
        records += batch.len() as u64;
        dropped += lost;
        check!(batch.iter().all(|fault| fault.source == STORM_DEVICE && fault.write));
        if remaining == 0 || batch.len() < FAULTS_PER_REPLY {
            break;
        }
    }
    check_eq!(records, storm.min(FAULT_LOG), "the log stays bounded");
    check_eq!(records + dropped, storm, "and counts exactly what it dropped");
    check_eq!(faults_seen(buffer).map(|seen| seen - seen_before), Some(storm), "the server saw every one");
    defmt::info!("  {=u64} faulting DMAs: {=u64} in the log, {=u64} counted as dropped", storm, records, dropped);
    device.close();
    check!(pci_api::client::release(PCI.get(), buffer, STORM_DEVICE).is_ok());
    check_ok!(release_group(buffer));
    check!(wait_unowned(buffer, STORM_DEVICE));
    Ok(())
}

fn owners_killed_at_random_points_give_everything_back(buffer: &mut Buffer) -> Outcome {
    let victims = [
        (GO_A.get(), VICTIM_A.get(), Bdf::at(1, 1, 0)),
        (GO_B.get(), VICTIM_B.get(), Bdf::at(0, 7, 0)),
        (GO_C.get(), VICTIM_C.get(), Bdf::at(0, 8, 0)),
    ];
    let mut random = XorShift::new(0x2545_f491_4f6c_dd1d);
    for (go, _, _) in victims {
        check_ok!(go.signal());
    }
    for (_, victim, device) in victims {
        // Anywhere from before its first claim to the middle of a DMA.
        let delay = 1_000 + random.below(400_000);
        let _ = Cap::<Notification>::at(NOTIFICATION).wait(0, delay);
        check_ok!(victim.kill());
        defmt::info!("  killed the owner of {} after {=u64} us", device, delay);
    }
    for (_, _, device) in victims {
        check!(wait_unowned(buffer, device), "each victim's group is reclaimed");
    }
    // What they held (address spaces, mappings, table pages) is checked
    // by the next case: the server's counters are back to their start.
    Ok(())
}

fn the_servers_still_serve_and_leaked_nothing(buffer: &mut Buffer) -> Outcome {
    let baseline = [0, 1, 2].map(|index| BASELINE[index].load(Ordering::Relaxed));
    check_eq!(stats(buffer), Some(baseline), "mappings, table pages and domains back where they started");
    // Every figure as at the start, but for two differences, exactly:
    // the victims and the accomplice (which exits once the kernel cases
    // are done) are dead by design, and the kernel freed all they held;
    // this task keeps its BAR mapping's page table.
    for _ in 0..1000 {
        if check_ok!(ACCOMPLICE.get().state()) != objects::TaskState::Alive {
            break;
        }
        let _ = Cap::<Notification>::at(NOTIFICATION).wait(0, 1_000);
    }
    let mut dead = [0; 4];
    for (index, task) in dead.iter_mut().zip([VICTIM_A.get(), VICTIM_B.get(), VICTIM_C.get(), ACCOMPLICE.get()]) {
        *index = check_ok!(task.info()).extent as usize;
    }
    let this = check_ok!(own::TASK.info()).extent as usize;
    let Some(start) = FIGURES.get() else { userlib::fail!("the first case took the kernel's figures") };
    let expected = start.after_deaths(&dead).with_pages_kept(this, BAR_TABLE_PAGES);
    check!(
        testkit::figures_are(ACCOUNTING.get(), &expected),
        "every frame, pin, capability and object is back, but the dead tasks' and one page table"
    );
    check!(driver_works(buffer));
    let devices = PCI.get().ask::<_, pci_api::Reply>(buffer, &pci_api::Request::Devices { index: 0 }, &[], 0);
    check!(matches!(devices, Ok(pci_api::Reply::Device { .. })), "the PCI server answers");
    Ok(())
}
