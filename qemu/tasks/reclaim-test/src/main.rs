//! Test task for reclaiming a group larger than one reclaim page, run in QEMU on machine `bridge-20`.
//!
//! The policy (`qemu/policies/reclaim.toml`) gives this task the whole
//! group of the PCIe-to-PCI bridge at 00:04.0 (the bridge and the twenty
//! edus behind it), binds the bridge to `bridge` without DMA, and makes
//! this task the PCI administrator, which binds the idle trusted driver
//! `edu-dma` after the group is given back. The PCI server learns a
//! reclaimed group's members from the IOMMU server a page at a time: the
//! devices held here sit on both sides of the sixteenth member.
#![no_std]
#![no_main]

use edu_api as edu;
use iommu_api as iommu;
use iommu_api::OwnerReport;
use iommu_api::client::group;
use userlib::testkit::prelude::*;

userlib::cap_slot!(IOMMU: Endpoint = "iommu");
userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::cap_slot!(EDU_DMA: Endpoint = "edu-dma");
userlib::cap_slot!(ACCOUNTING: Control = "accounting");
userlib::entry!(main);

/// Task indices, in the policy's declaration order.
const EDU_DMA_TASK: u16 = 2;
const BRIDGE_TASK: u16 = 3;
const THIS_TASK: u16 = 4;

const BRIDGE: Bdf = Bdf::at(0, 4, 0);
/// The edus behind the bridge: 01:01.0 to 01:14.0.
const EDUS: u8 = 20;
/// Devices this task holds: the group's second member, and its
/// twentieth and twenty-first (past the first page of sixteen).
const HELD: [Bdf; 3] = [behind(1), behind(19), behind(20)];
/// Slots: a grant window (four slots) per held device, the group
/// capability, a notification to sleep on.
const WINDOWS: [u32; 3] = [64, 68, 72];
const GROUP: u32 = 76;
const SLEEP: u32 = 77;

/// The kernel's figures before the claim.
static FIGURES: testkit::Baseline = testkit::Baseline::new();

const fn behind(slot: u8) -> Bdf {
    Bdf::from_devfn(1, slot << 3)
}

fn main() -> u64 {
    if objects::create_notification(SLEEP).is_err() {
        return testkit::setup_failed("no notification (the policy must allow one object)");
    }
    testkit::run(userlib::cases![
        the_group_holds_the_bridge_and_twenty_edus,
        the_user_owns_the_group_and_holds_devices_past_the_sixteenth,
        releasing_the_group_takes_back_every_device_the_user_held,
        a_dma_driver_bound_there_afterwards_works_while_the_users_devices_stay_quiesced
    ])
}

fn ask_pci(buffer: &mut Buffer, request: &pci_api::Request) -> Result<pci_api::Reply, ErrorCode> {
    PCI.get().ask(buffer, request, &[], 0)
}

fn ask_edu(buffer: &mut Buffer, request: &edu::Request) -> Result<edu::Reply, ErrorCode> {
    EDU_DMA.get().ask(buffer, request, &[], 0)
}

fn owner(buffer: &mut Buffer, device: Bdf) -> Option<OwnerReport> {
    group::owner(IOMMU.get(), buffer, device).ok()
}

/// The holder the PCI server reports for `device` (`None` if not listed).
fn holder(buffer: &mut Buffer, device: Bdf) -> Option<Option<u16>> {
    for index in 0..256u16 {
        match ask_pci(buffer, &pci_api::Request::Devices { index }) {
            Ok(pci_api::Reply::Device { device: found, holder, .. }) if found == device => return Some(holder),
            Ok(pci_api::Reply::Device { .. }) => {}
            _ => return None,
        }
    }
    None
}

fn the_group_holds_the_bridge_and_twenty_edus(buffer: &mut Buffer) -> Outcome {
    let mut members = None;
    for number in 0..64 {
        match IOMMU.get().ask(buffer, &iommu::Request::Groups { group: number, offset: 0 }, &[], 0) {
            Ok(iommu::Reply::GroupInfo { members: found, .. }) if found.contains(&BRIDGE) => {
                members = Some(found);
                break;
            }
            Ok(iommu::Reply::GroupInfo { .. }) => {}
            _ => break,
        }
    }
    let Some(members) = members else {
        check!(false, "the bridge is in a group");
        return Ok(());
    };
    check_eq!(members.len(), 1 + usize::from(EDUS), "the bridge and every edu behind it");
    check_eq!(members.last(), Some(&behind(EDUS)));
    check_eq!(holder(buffer, BRIDGE), Some(Some(BRIDGE_TASK)), "the bridge driver holds the bridge");
    check!(FIGURES.take(ACCOUNTING.get()), "the kernel's figures before the claim");
    Ok(())
}

fn the_user_owns_the_group_and_holds_devices_past_the_sixteenth(buffer: &mut Buffer) -> Outcome {
    check_ok!(group::claim(IOMMU.get(), buffer, HELD[0], GROUP).map_err(Refused::logged));
    for device in [BRIDGE, behind(1), behind(16), behind(17), behind(EDUS)] {
        check_eq!(owner(buffer, device), Some(OwnerReport::User { task: THIS_TASK }), "every member is ours");
    }
    for (device, window) in HELD.iter().zip(WINDOWS) {
        let granted = match pci_api::client::acquire(PCI.get(), buffer, *device, window) {
            Ok(granted) => granted,
            Err(refused) => {
                defmt::error!("  acquire {} refused ({}): {=str}", device, refused.code, refused.reason.as_str());
                return Err(testkit::Failure { file: file!(), line: line!() });
            }
        };
        check!(granted.bar(0) == Some(window), "BAR0 comes first in the window");
        check!(Cap::<DeviceMemory>::at(window).info().is_ok(), "this task holds the BAR");
        // Left mastering the bus, as a user could leave it.
        check_ok!(pci_api::client::enable_bus_mastering(PCI.get(), buffer, *device).map_err(Refused::logged));
        check_eq!(holder(buffer, *device), Some(Some(THIS_TASK)));
    }
    Ok(())
}

fn releasing_the_group_takes_back_every_device_the_user_held(buffer: &mut Buffer) -> Outcome {
    // The devices are not released first: the reclaim must take them.
    check_ok!(group::release(Cap::at(GROUP), buffer).map_err(Refused::logged));
    let unowned = group::wait_unowned(IOMMU.get(), buffer, BRIDGE, Cap::at(SLEEP), 2_000_000);
    check!(unowned.is_ok(), "the group is quiesced and back to its default domain");
    for (device, window) in HELD.iter().zip(WINDOWS) {
        check_eq!(holder(buffer, *device), Some(None), "the reclaim took the device back");
        check_eq!(
            Cap::<DeviceMemory>::at(window).info().err(),
            Some(ErrorCode::InvalidCapability),
            "and revoked its BAR"
        );
    }
    check_eq!(holder(buffer, BRIDGE), Some(Some(BRIDGE_TASK)), "the bridge driver keeps the bridge");
    let Some(start) = FIGURES.get() else { userlib::fail!("the first case took the kernel's figures") };
    check!(testkit::figures_are(ACCOUNTING.get(), &start), "every capability, pin and page came back");
    Ok(())
}

fn a_dma_driver_bound_there_afterwards_works_while_the_users_devices_stay_quiesced(buffer: &mut Buffer) -> Outcome {
    let last = HELD[2];
    let bind = pci_api::Request::Bind { device: last, driver: EDU_DMA_TASK };
    check_eq!(check_ok!(ask_pci(buffer, &bind)), pci_api::Reply::Done);
    let adopted = check_ok!(ask_edu(buffer, &edu::Request::Adopt { device: last }));
    if let edu::Reply::Refused { code, reason } = &adopted {
        defmt::error!("  adopt refused ({}): {=str}", code, reason.as_str());
    }
    check!(matches!(adopted, edu::Reply::Adopted { .. }), "the trusted driver takes the user's last device");
    check_eq!(owner(buffer, BRIDGE), Some(OwnerReport::Kernel { drivers: 1 }), "the group is the kernel's");
    let copied = check_ok!(ask_edu(buffer, &edu::Request::Copy { len: 256, seed: 0x21 }));
    check!(matches!(copied, edu::Reply::Copied { matched: true, .. }), "its DMA through the default domain works");
    for device in [HELD[0], HELD[1]] {
        check_eq!(holder(buffer, device), Some(None), "the user's other devices stay with nobody");
        let again = pci_api::client::acquire(PCI.get(), buffer, device, WINDOWS[0]).err().map(|refused| refused.code);
        check_eq!(again, Some(ErrorCode::PermissionDenied), "and are not the user's any more");
    }
    check_eq!(check_ok!(ask_edu(buffer, &edu::Request::Release)), edu::Reply::Done);
    check_eq!(check_ok!(ask_pci(buffer, &pci_api::Request::Unbind { device: last })), pci_api::Reply::Done);
    check_eq!(owner(buffer, BRIDGE), Some(OwnerReport::Unowned));
    Ok(())
}
