//! Test task for the IOMMU server and DMA ownership, run in QEMU on machine `iommu`.
//!
//! The policy (`qemu/policies/iommu.toml`) binds edu 00:03.0 to the
//! trusted driver `edu-dma` with DMA, lets `edu-user` own 00:04.0's group,
//! binds the PCIe-to-PCI bridge 00:05.0 to `bridge` and 01:02.0 behind it
//! to `stub` (neither does DMA), and lets this task own the groups of
//! 01:01.0 and 00:06.0. This task is also the PCI administrator and can
//! bind `edu-spare`, a second trusted driver with no device, at run time.
//! Every request goes over IPC to the servers, as any task's would.
#![no_std]
#![no_main]

mod blocked;
mod canary;
mod moves;
mod spaces;

use capabilities::abi::rights;
use edu_api as edu;
use iommu_api as iommu;
use iommu_api::client::group;
use iommu_api::{Fault, Handle, OwnerReport};
use userlib::testkit::prelude::*;

userlib::cap_slot!(IOMMU: Endpoint = "iommu");
userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::cap_slot!(EDU_DMA: Endpoint = "edu-dma");
userlib::cap_slot!(EDU_SPARE: Endpoint = "edu-spare");
userlib::cap_slot!(EDU_USER: Endpoint = "edu-user");
userlib::cap_slot!(ACCOUNTING: Control = "accounting");
userlib::entry!(main);

/// Task indices, in the policy's declaration order.
const EDU_SPARE_TASK: u16 = 3;
const EDU_USER_TASK: u16 = 4;
const STUB_TASK: u16 = 6;
const THIS_TASK: u16 = 7;

/// The machine's devices.
const TRUSTED: Bdf = Bdf::at(0, 3, 0);
const USER: Bdf = Bdf::at(0, 4, 0);
const BRIDGE: Bdf = Bdf::at(0, 5, 0);
const BEHIND_A: Bdf = Bdf::at(1, 1, 0);
const BEHIND_B: Bdf = Bdf::at(1, 2, 0);
const SPARE: Bdf = Bdf::at(0, 6, 0);

/// Slots: a device grant's window (four), a group capability, a frame to
/// map, a notification to sleep on and one for edu completions.
const WINDOW: u32 = 64;
const GROUP: u32 = 70;
const FRAME: u32 = 71;
const SLEEP: u32 = 72;
const DONE: u32 = 73;
const FORGED: u32 = 74;
/// A frame this task lends to `edu-user` and takes back.
const LENT: u32 = 75;
/// Where this task maps the frame it lends.
const LENT_VIRT: u64 = 0x2800_0000;
/// Bytes an edu `DmaAt` moves.
const PROBE_BYTES: u64 = 64;
/// Where a device's BAR0 is mapped when this task drives it.
const BAR_VIRT: u64 = 0x2000_0000;
/// The physical address the kernel image is loaded at.
const KERNEL_IMAGE: u64 = 0x10_0000;
/// Cycles of each kind in the churn case.
const CYCLES: u32 = 1000;

fn main() -> u64 {
    if objects::alloc_frame(FRAME, 1).is_err()
        || objects::create_notification(SLEEP).is_err()
        || objects::create_notification(DONE).is_err()
    {
        return testkit::setup_failed("no frame or notifications (the policy must allow three objects)");
    }
    testkit::run(userlib::cases![
        translation_is_on_with_the_expected_groups,
        trusted_driver_dma_round_trip_moves_the_right_bytes,
        blocked::dma_to_an_unmapped_iova_is_blocked_and_reported,
        blocked::a_device_in_a_blocked_group_faults,
        a_new_holder_starts_with_bus_mastering_off_and_turns_it_on,
        moves::a_claimed_group_reaches_no_domain_until_attached,
        moves::a_detached_group_no_longer_reaches_its_address_space,
        moves::a_users_unmap_takes_the_iova_from_its_device_at_once,
        moves::a_frame_unmapped_freed_and_taken_again_is_out_of_its_old_iovas_reach,
        moves::one_range_request_maps_three_frames_and_one_unmaps_them,
        user_task_dma_to_its_mapped_iova_moves_the_right_bytes,
        blocked::user_dma_outside_its_mappings_is_blocked_and_in_its_fault_log,
        a_frame_its_lender_revokes_is_out_of_the_borrowers_device_reach,
        stub_and_bridge_drivers_do_not_stop_a_user_claim,
        dma_driver_bind_in_a_user_owned_group_is_busy,
        user_claim_in_a_group_with_a_dma_driver_is_busy,
        without_a_group_capability_nothing_maps_attaches_or_reads_faults,
        owner_killed_mid_transfer_returns_the_group_and_a_driver_binds,
        claim_and_bind_cycles_leave_no_trace,
        spaces::an_address_space_reports_its_usable_ranges_and_goes_once_detached,
        spaces::two_groups_share_one_address_space_and_both_dma_through_it
    ])
}

// ----- talking to the servers -----

fn ask_iommu(
    endpoint: Cap<Endpoint>,
    buffer: &mut Buffer,
    request: &iommu::Request,
) -> Result<iommu::Reply, ErrorCode> {
    endpoint.ask(buffer, request, &[], 0)
}

fn ask_pci(buffer: &mut Buffer, request: &pci_api::Request) -> Result<pci_api::Reply, ErrorCode> {
    PCI.get().ask(buffer, request, &[], 0)
}

fn ask_edu(endpoint: Cap<Endpoint>, buffer: &mut Buffer, request: &edu::Request) -> Result<edu::Reply, ErrorCode> {
    endpoint.ask(buffer, request, &[], 0)
}

/// Claims `device`'s group for this task; the group capability is in
/// slot [`GROUP`]. A refusal comes back as its code, reason logged.
fn claim(buffer: &mut Buffer, device: Bdf) -> Result<u16, ErrorCode> {
    group::claim(IOMMU.get(), buffer, device, GROUP).map_err(Refused::logged)
}

/// Releases the group capability in [`GROUP`] and deletes it.
fn release_group(buffer: &mut Buffer) -> Result<(), ErrorCode> {
    group::release(Cap::at(GROUP), buffer).map_err(Refused::logged)
}

/// Who owns `device`'s group.
fn owner(buffer: &mut Buffer, device: Bdf) -> Option<OwnerReport> {
    group::owner(IOMMU.get(), buffer, device).ok()
}

/// Waits (up to two seconds) until `device`'s group is unowned again: a
/// release hands it to the PCI server for quiescing first.
fn wait_unowned(buffer: &mut Buffer, device: Bdf) -> bool {
    group::wait_unowned(IOMMU.get(), buffer, device, Cap::at(SLEEP), 2_000_000).is_ok()
}

/// The server's counters.
fn stats(buffer: &mut Buffer) -> Option<iommu::client::Stats> {
    iommu::client::stats(IOMMU.get(), buffer).ok()
}

/// All faults an edu server's group has recorded.
fn edu_faults(endpoint: Cap<Endpoint>, buffer: &mut Buffer) -> Option<heapless::Vec<Fault, 8>> {
    match ask_edu(endpoint, buffer, &edu::Request::Faults) {
        Ok(edu::Reply::Faults { records, .. }) => Some(records),
        Ok(reply) => {
            testkit::refusal(&reply);
            None
        }
        Err(_) => None,
    }
}

/// Whether `faults` holds a write by `source` to the page of `address`.
fn blocked_write(faults: &[Fault], source: Bdf, address: u64) -> bool {
    faults.iter().any(|fault| fault.source == source && fault.address == address & !0xfff && fault.write)
}

fn bind(buffer: &mut Buffer, device: Bdf, driver: u16) -> Result<pci_api::Reply, ErrorCode> {
    ask_pci(buffer, &pci_api::Request::Bind { device, driver })
}

fn unbind(buffer: &mut Buffer, device: Bdf) -> Result<pci_api::Reply, ErrorCode> {
    ask_pci(buffer, &pci_api::Request::Unbind { device })
}

// ----- the cases -----

fn translation_is_on_with_the_expected_groups(buffer: &mut Buffer) -> Outcome {
    let members = |buffer: &mut Buffer, group: u16| match ask_iommu(
        IOMMU.get(),
        buffer,
        &iommu::Request::Groups { group, offset: 0 },
    ) {
        Ok(iommu::Reply::GroupInfo { members, .. }) => Some(members),
        _ => None,
    };
    let mut bridge_group = None;
    for group in 0..16 {
        let Some(members) = members(buffer, group) else { break };
        if members.contains(&BRIDGE) {
            bridge_group = Some(members);
        }
    }
    let bridge_group = bridge_group.unwrap_or_default();
    check_eq!(bridge_group.as_slice(), &[BRIDGE, BEHIND_A, BEHIND_B][..], "the bridge and both edus behind it");
    let trusted = owner(buffer, TRUSTED);
    check_eq!(trusted, Some(OwnerReport::Kernel { drivers: 1 }), "edu-dma claimed its group at probe");
    check_eq!(owner(buffer, SPARE), Some(OwnerReport::Unowned));
    Ok(())
}

fn trusted_driver_dma_round_trip_moves_the_right_bytes(buffer: &mut Buffer) -> Outcome {
    for (len, seed) in [(2048, 7), (1, 0xa5), (100, 3)] {
        match check_ok!(ask_edu(EDU_DMA.get(), buffer, &edu::Request::Copy { len, seed })) {
            edu::Reply::Copied { iova, matched } => {
                check!(matched, "the bytes came back");
                check!(iova < 1 << 28, "inside the edu's 28-bit DMA mask");
            }
            reply => {
                testkit::refusal(&reply);
                check!(false, "a copy");
            }
        }
    }
    Ok(())
}

fn a_new_holder_starts_with_bus_mastering_off_and_turns_it_on(buffer: &mut Buffer) -> Outcome {
    // 00:06.0 was driven (and left mastering the bus) by the previous case.
    check_ok!(claim(buffer, SPARE));
    let granted = check_ok!(pci_api::client::acquire(PCI.get(), buffer, SPARE, WINDOW));
    let command = pci_api::client::config_read(PCI.get(), buffer, SPARE, 0x04, 2).map_err(Refused::logged);
    check_eq!(check_ok!(command) & 0x4, 0, "the grant leaves bus mastering off");
    let (Some(bar), Some(interrupt)) = (granted.bar(0), granted.interrupt()) else {
        check!(false, "the grant has BAR0 and an interrupt");
        return Ok(());
    };
    let device = check_ok!(::edu::Edu::new(Cap::at(bar), Cap::at(interrupt), Cap::at(DONE), BAR_VIRT));
    // Without bus mastering the device's write never leaves it: no fault,
    // though the group is blocked. QEMU runs the transfer 100 ms after it
    // starts.
    check_ok!(device.start(::edu::DEVICE_BUFFER, 0x5000, 64, true));
    let _ = Cap::<userlib::cap::Notification>::at(SLEEP).wait(0, 300_000);
    let faults = |buffer: &mut Buffer| match ask_iommu(Cap::at(GROUP), buffer, &iommu::Request::Faults) {
        Ok(iommu::Reply::Faults { records, .. }) => records,
        _ => Default::default(),
    };
    check!(!blocked_write(&faults(buffer), SPARE, 0x5000), "no DMA before the holder turns bus mastering on");
    check!(pci_api::client::enable_bus_mastering(PCI.get(), buffer, SPARE).is_ok(), "a user may turn it on");
    let moved = device.dma(::edu::DEVICE_BUFFER, 0x6000, 64, true);
    device.close();
    check_ok!(moved);
    check!(blocked_write(&faults(buffer), SPARE, 0x6000), "then the device's write reaches the IOMMU");
    check!(pci_api::client::release(PCI.get(), buffer, SPARE).is_ok());
    check_ok!(release_group(buffer));
    check!(wait_unowned(buffer, SPARE), "quiesced and back to the default domain");
    Ok(())
}

fn user_task_dma_to_its_mapped_iova_moves_the_right_bytes(buffer: &mut Buffer) -> Outcome {
    let reply = check_ok!(ask_edu(EDU_USER.get(), buffer, &edu::Request::Adopt { device: USER }));
    check!(matches!(reply, edu::Reply::Adopted { .. }), "edu-user owns its group");
    check_eq!(owner(buffer, USER), Some(OwnerReport::User { task: EDU_USER_TASK }));
    let copied = check_ok!(ask_edu(EDU_USER.get(), buffer, &edu::Request::Copy { len: 2048, seed: 0x3c }));
    check!(matches!(copied, edu::Reply::Copied { matched: true, .. }), "its DMA through its own address space works");
    Ok(())
}

/// This task lends a frame to `edu-user`, which maps it for its device
/// (the IOMMU server pins it and deletes the capability it received, and
/// `edu-user` deletes its own); the device reads and writes it. Then this
/// task revokes the frame: the kernel revokes the pin, the IOMMU server
/// unmaps it, and the device's next write there is blocked, in
/// `edu-user`'s fault log, and leaves the frame as this task left it.
fn a_frame_its_lender_revokes_is_out_of_the_borrowers_device_reach(buffer: &mut Buffer) -> Outcome {
    use userlib::cap::{Frame, own};
    use userlib::mmio::Mapping;
    let frame = check_ok!(objects::alloc_frame(LENT, 1));
    let memory = check_ok!(Mapping::map(own::SPACE, frame, LENT_VIRT, true));
    let pattern = |at: u64| (at as u8).wrapping_mul(7).wrapping_add(0x11);
    let fill = |value: &dyn Fn(u64) -> u8| (0..PROBE_BYTES).all(|at| memory.write8(at, value(at)).is_some());
    let holds = |value: &dyn Fn(u64) -> u8| (0..PROBE_BYTES).all(|at| memory.read8(at) == Some(value(at)));
    check!(fill(&pattern));
    let before = stats(buffer).map(|s| s.mappings);
    let reply: edu::Reply = check_ok!(EDU_USER.get().ask(buffer, &edu::Request::MapLent, &[LENT], 0));
    let edu::Reply::Buffer { iova } = reply else {
        testkit::refusal(&reply);
        userlib::fail!("edu-user maps the lent frame");
    };
    let read = check_ok!(ask_edu(EDU_USER.get(), buffer, &edu::Request::DmaAt { iova, to_device: true }));
    check_eq!(read, edu::Reply::Done);
    check!(fill(&|_| 0));
    let written = check_ok!(ask_edu(EDU_USER.get(), buffer, &edu::Request::DmaAt { iova, to_device: false }));
    check_eq!(written, edu::Reply::Done);
    check!(holds(&pattern), "the borrower's device read the lent frame and wrote it back");
    check!(fill(&|_| 0xee));
    let _ = edu_faults(EDU_USER.get(), buffer);
    check_ok!(Cap::<Frame>::at(LENT).revoke());
    let blocked = check_ok!(ask_edu(EDU_USER.get(), buffer, &edu::Request::DmaAt { iova, to_device: false }));
    check_eq!(blocked, edu::Reply::Done, "the device finishes the blocked DMA");
    let faults = edu_faults(EDU_USER.get(), buffer).unwrap_or_default();
    check!(blocked_write(&faults, USER, iova), "the write to the revoked frame is in the borrower's fault log");
    check!(holds(&|_| 0xee), "the frame's bytes are as its lender left them");
    check_eq!(stats(buffer).map(|s| s.mappings), before, "the IOMMU server unmapped the revoked frame");
    check_ok!(memory.unmap());
    check_ok!(Cap::<Frame>::at(LENT).delete());
    Ok(())
}

fn stub_and_bridge_drivers_do_not_stop_a_user_claim(buffer: &mut Buffer) -> Outcome {
    let group = check_ok!(claim(buffer, BEHIND_A));
    for device in [BRIDGE, BEHIND_A, BEHIND_B] {
        check_eq!(owner(buffer, device), Some(OwnerReport::User { task: THIS_TASK }), "the whole group");
    }
    let granted = pci_api::client::acquire(PCI.get(), buffer, BEHIND_A, WINDOW);
    check!(granted.as_ref().is_ok_and(|granted| granted.grant.group == group));
    // The group stays claimed for the next case.
    Ok(())
}

fn dma_driver_bind_in_a_user_owned_group_is_busy(buffer: &mut Buffer) -> Outcome {
    check_eq!(owner(buffer, BEHIND_B), Some(OwnerReport::User { task: THIS_TASK }));
    check_eq!(check_ok!(unbind(buffer, BEHIND_B)), pci_api::Reply::Done, "the stub lets go");
    let reply = check_ok!(bind(buffer, BEHIND_B, EDU_SPARE_TASK));
    check_eq!(testkit::refusal(&reply), Some(ErrorCode::Busy), "no DMA driver in a user-owned group");
    check!(
        matches!(&reply, pci_api::Reply::Refused { reason, .. } if reason.contains("iommu-test")),
        "names the owner"
    );
    check_eq!(check_ok!(bind(buffer, BEHIND_B, STUB_TASK)), pci_api::Reply::Done, "a stub may bind");
    check!(stats(buffer).is_some(), "the IOMMU server keeps serving");
    check!(pci_api::client::release(PCI.get(), buffer, BEHIND_A).is_ok());
    check_ok!(release_group(buffer));
    check!(wait_unowned(buffer, BEHIND_A));
    Ok(())
}

fn user_claim_in_a_group_with_a_dma_driver_is_busy(buffer: &mut Buffer) -> Outcome {
    check_eq!(check_ok!(unbind(buffer, BEHIND_B)), pci_api::Reply::Done);
    check_eq!(check_ok!(bind(buffer, BEHIND_B, EDU_SPARE_TASK)), pci_api::Reply::Done);
    let adopted = check_ok!(ask_edu(EDU_SPARE.get(), buffer, &edu::Request::Adopt { device: BEHIND_B }));
    check!(matches!(adopted, edu::Reply::Adopted { .. }), "the trusted driver claims the group at probe");
    check_eq!(owner(buffer, BEHIND_A), Some(OwnerReport::Kernel { drivers: 1 }));
    let request = iommu::Request::ClaimGroup { device: BEHIND_A };
    let reply: iommu::Reply = check_ok!(IOMMU.get().ask(buffer, &request, &[own::TASK.slot()], GROUP));
    check_eq!(testkit::refusal(&reply), Some(ErrorCode::Busy), "no user claim beside a DMA driver");
    let names = |text: &str| matches!(&reply, iommu::Reply::Refused { reason, .. } if reason.contains(text));
    check!(names("edu-spare on 01:02.0"), "the refusal names the companion and its driver");
    check!(names("alias through PCIe-to-PCI bridge 00:05.0"), "and why they share a group");
    let copied = check_ok!(ask_edu(EDU_SPARE.get(), buffer, &edu::Request::Copy { len: 256, seed: 5 }));
    check!(matches!(copied, edu::Reply::Copied { matched: true, .. }), "behind the bridge, DMA works");
    check_eq!(check_ok!(ask_edu(EDU_SPARE.get(), buffer, &edu::Request::Release)), edu::Reply::Done);
    check_eq!(check_ok!(unbind(buffer, BEHIND_B)), pci_api::Reply::Done);
    check_eq!(owner(buffer, BEHIND_A), Some(OwnerReport::Unowned), "the last driver's release frees the group");
    check_eq!(check_ok!(bind(buffer, BEHIND_B, STUB_TASK)), pci_api::Reply::Done);
    Ok(())
}

fn without_a_group_capability_nothing_maps_attaches_or_reads_faults(buffer: &mut Buffer) -> Outcome {
    let policy = IOMMU.get();
    for request in [
        iommu::Request::IoasCreate,
        iommu::Request::Attach { ioas: Some(0) },
        iommu::Request::Faults,
        iommu::Request::DmaMap { writable: true, mask_bits: 32 },
    ] {
        let reply: iommu::Reply = check_ok!(policy.ask(buffer, &request, &[FRAME], 0));
        check_eq!(
            testkit::refusal(&reply),
            Some(ErrorCode::PermissionDenied),
            "the policy capability is no group capability"
        );
    }
    let forged = Handle::Group { group: 0, serial: 1 }.badge();
    check_eq!(
        policy.mint_to(FORGED, rights::SEND, forged).map(|_| ()),
        Err(ErrorCode::PermissionDenied),
        "no badge forgery"
    );
    check_ok!(claim(buffer, SPARE));
    check_ok!(release_group(buffer));
    // Keep a copy of the capability past the release: it must be dead.
    check_ok!(claim(buffer, SPARE));
    check_ok!(Cap::<Endpoint>::at(GROUP).copy_to(FORGED, rights::SEND | rights::GRANT));
    check_ok!(release_group(buffer));
    let stale = ask_iommu(Cap::at(FORGED), buffer, &iommu::Request::IoasCreate);
    check_eq!(stale.map(|_| ()), Err(ErrorCode::InvalidCapability), "a released group capability is revoked");
    check!(wait_unowned(buffer, SPARE));
    Ok(())
}

fn owner_killed_mid_transfer_returns_the_group_and_a_driver_binds(buffer: &mut Buffer) -> Outcome {
    // The figures are taken while nobody holds anything for edu-user:
    // it gives its group back first and adopts it again.
    check_eq!(check_ok!(ask_edu(EDU_USER.get(), buffer, &edu::Request::Release)), edu::Reply::Done);
    check!(wait_unowned(buffer, USER));
    check_ok!(canary::make_page_table());
    let start = check_ok!(ACCOUNTING.get().figures());
    let adopted = check_ok!(ask_edu(EDU_USER.get(), buffer, &edu::Request::Adopt { device: USER }));
    check!(matches!(adopted, edu::Reply::Adopted { .. }));
    check_eq!(owner(buffer, USER), Some(OwnerReport::User { task: EDU_USER_TASK }));
    let in_flight = canary::kill_the_owner_mid_transfer(buffer)?;
    check!(wait_unowned(buffer, USER), "the owner's death returns the group");
    in_flight.faulted_at_most_once(buffer)?;
    check_eq!(check_ok!(bind(buffer, USER, EDU_SPARE_TASK)), pci_api::Reply::Done);
    let adopted = check_ok!(ask_edu(EDU_SPARE.get(), buffer, &edu::Request::Adopt { device: USER }));
    check!(matches!(adopted, edu::Reply::Adopted { .. }), "a trusted driver takes the device");
    let copied = check_ok!(ask_edu(EDU_SPARE.get(), buffer, &edu::Request::Copy { len: 1024, seed: 0x77 }));
    check!(matches!(copied, edu::Reply::Copied { matched: true, .. }), "and its DMA works");
    check_eq!(check_ok!(ask_edu(EDU_SPARE.get(), buffer, &edu::Request::Release)), edu::Reply::Done);
    check_eq!(check_ok!(unbind(buffer, USER)), pci_api::Reply::Done);
    let expected = start.after_deaths(&[usize::from(EDU_USER_TASK)]);
    check!(testkit::figures_are(ACCOUNTING.get(), &expected), "all is back but what the dead owner held, all freed");
    Ok(())
}

fn claim_and_bind_cycles_leave_no_trace(buffer: &mut Buffer) -> Outcome {
    let before = stats(buffer);
    check!(before.is_some());
    let start = check_ok!(ACCOUNTING.get().figures());
    for cycle in 0..CYCLES {
        check_ok!(claim(buffer, SPARE));
        let ioas = match check_ok!(ask_iommu(Cap::at(GROUP), buffer, &iommu::Request::IoasCreate)) {
            iommu::Reply::Ioas { ioas } => ioas,
            reply => {
                testkit::refusal(&reply);
                check!(false, "an address space");
                return Ok(());
            }
        };
        let attach = iommu::Request::Attach { ioas: Some(ioas) };
        check_eq!(check_ok!(ask_iommu(Cap::at(GROUP), buffer, &attach)), iommu::Reply::Done);
        let map = iommu::Request::Map { ioas, iova: 0x4000 + u64::from(cycle % 16) * 0x1000, writable: cycle % 2 == 0 };
        let mapped = check_ok!(Cap::at(GROUP).ask::<_, iommu::Reply>(buffer, &map, &[FRAME], 0));
        check!(testkit::refusal(&mapped).is_none());
        if cycle % 2 == 0 {
            let iova = 0x4000 + u64::from(cycle % 16) * 0x1000;
            let unmap = iommu::Request::Unmap { ioas, iova };
            check_eq!(check_ok!(ask_iommu(Cap::at(GROUP), buffer, &unmap)), iommu::Reply::Done);
        }
        // Odd cycles leave the mapping for the release to tear down.
        check_ok!(release_group(buffer));
        check!(wait_unowned(buffer, SPARE));
    }
    check_eq!(stats(buffer).map(|s| s.held()), before.map(|s| s.held()), "claims and releases leak nothing");
    check!(testkit::figures_are(ACCOUNTING.get(), &start), "nor anything the kernel counts");
    for _ in 0..CYCLES {
        check_eq!(check_ok!(bind(buffer, SPARE, EDU_SPARE_TASK)), pci_api::Reply::Done);
        let adopted = check_ok!(ask_edu(EDU_SPARE.get(), buffer, &edu::Request::Adopt { device: SPARE }));
        check!(matches!(adopted, edu::Reply::Adopted { .. }));
        check_eq!(check_ok!(ask_edu(EDU_SPARE.get(), buffer, &edu::Request::Release)), edu::Reply::Done);
        check_eq!(check_ok!(unbind(buffer, SPARE)), pci_api::Reply::Done);
    }
    check_eq!(stats(buffer).map(|s| s.held()), before.map(|s| s.held()), "binds and unbinds leak nothing");
    check!(testkit::figures_are(ACCOUNTING.get(), &start), "nor anything the kernel counts");
    check_eq!(owner(buffer, SPARE), Some(OwnerReport::Unowned));
    Ok(())
}
