//! Test task for whole-group assignment and isolation assertions, run in QEMU on machine `groups`.
//!
//! The policy (`qemu/policies/groups-scenario.toml`) asserts that the
//! multifunction edu pair at 00:07 isolates its functions, binds the
//! trusted driver `edu-dma` to 00:07.1, lets `edu-user` own 00:07.0, and
//! gives this task the whole group of the PCIe-to-PCI bridge at 00:05.0
//! by naming one device behind it.
#![no_std]
#![no_main]

use edu_api as edu;
use iommu_api as iommu;
use iommu_api::OwnerReport;
use userlib::testkit::prelude::*;

userlib::cap_slot!(IOMMU: Endpoint = "iommu");
userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::cap_slot!(EDU_DMA: Endpoint = "edu-dma");
userlib::cap_slot!(EDU_USER: Endpoint = "edu-user");
userlib::entry!(main);

const PAIR_USER: Bdf = Bdf::at(0, 7, 0);
const PAIR_DRIVER: Bdf = Bdf::at(0, 7, 1);
const BRIDGE: Bdf = Bdf::at(0, 5, 0);
const BEHIND: [Bdf; 2] = [Bdf::at(1, 1, 0), Bdf::at(1, 2, 0)];
/// This task's index (the policy's declaration order).
const THIS_TASK: u16 = 4;
/// Slots: two grant windows, a group capability, the buffer frame and a
/// completion notification per device.
const WINDOWS: [u32; 2] = [64, 68];
const GROUP: u32 = 72;
const FRAME: u32 = 73;
const DONE: [u32; 2] = [74, 75];
const BAR_VIRT: [u64; 2] = [0x2000_0000, 0x2100_0000];
const BUFFER_VIRT: u64 = 0x3000_0000;
const BUFFER_IOVA: u64 = 0x10_0000;

fn main() -> u64 {
    let made = objects::alloc_frame(FRAME, 1).is_ok()
        && objects::create_notification(DONE[0]).is_ok()
        && objects::create_notification(DONE[1]).is_ok();
    if !made {
        return testkit::setup_failed("no frame or notifications (the policy must allow three objects)");
    }
    testkit::run(userlib::cases![
        the_assertion_splits_the_pair_and_explains_itself,
        a_trusted_driver_and_a_user_task_each_drive_one_function,
        a_whole_group_behind_a_bridge_is_owned_and_both_edus_driven
    ])
}

/// The group holding `device`, with its members and reasons.
fn group_of(buffer: &mut Buffer, device: Bdf) -> Option<(u16, heapless::Vec<Bdf, 32>, heapless::String<400>)> {
    for group in 0..64 {
        match IOMMU.get().ask(buffer, &iommu::Request::Groups { group, offset: 0 }, &[], 0) {
            Ok(iommu::Reply::GroupInfo { members, reasons, .. }) if members.contains(&device) => {
                return Some((group, members, reasons));
            }
            Ok(iommu::Reply::GroupInfo { .. }) => {}
            _ => return None,
        }
    }
    None
}

fn owner(buffer: &mut Buffer, device: Bdf) -> Option<OwnerReport> {
    iommu_api::client::group::owner(IOMMU.get(), buffer, device).ok()
}

fn copied(reply: Result<edu::Reply, ErrorCode>) -> bool {
    matches!(reply, Ok(edu::Reply::Copied { matched: true, .. }))
}

fn the_assertion_splits_the_pair_and_explains_itself(buffer: &mut Buffer) -> Outcome {
    let user_side = group_of(buffer, PAIR_USER);
    let driver_side = group_of(buffer, PAIR_DRIVER);
    let (Some((a, members, reasons)), Some((b, _, _))) = (user_side, driver_side) else {
        check!(false, "both functions are in some group");
        return Ok(());
    };
    check!(a != b, "the assertion splits the pair");
    check_eq!(members.as_slice(), &[PAIR_USER][..]);
    defmt::info!("  group {=u16}: {=str}", a, reasons.as_str());
    check!(reasons.contains("the policy asserts (`edu-pair`) that 00:07.0, 00:07.1 are isolated"), "and says why");
    let bridge = group_of(buffer, BRIDGE).map(|(_, members, _)| members).unwrap_or_default();
    check_eq!(bridge.as_slice(), &[BRIDGE, BEHIND[0], BEHIND[1]][..], "and splits nothing else");
    Ok(())
}

fn a_trusted_driver_and_a_user_task_each_drive_one_function(buffer: &mut Buffer) -> Outcome {
    check!(copied(EDU_DMA.get().ask(buffer, &edu::Request::Copy { len: 1024, seed: 4 }, &[], 0)), "edu-dma on 00:07.1");
    let adopted =
        check_ok!(EDU_USER.get().ask::<_, edu::Reply>(buffer, &edu::Request::Adopt { device: PAIR_USER }, &[], 0));
    check!(matches!(adopted, edu::Reply::Adopted { .. }), "edu-user owns 00:07.0's group");
    check!(
        copied(EDU_USER.get().ask(buffer, &edu::Request::Copy { len: 1024, seed: 5 }, &[], 0)),
        "edu-user on 00:07.0"
    );
    check!(copied(EDU_DMA.get().ask(buffer, &edu::Request::Copy { len: 64, seed: 6 }, &[], 0)), "still, the driver");
    Ok(())
}

fn a_whole_group_behind_a_bridge_is_owned_and_both_edus_driven(buffer: &mut Buffer) -> Outcome {
    let claimed = check_ok!(IOMMU.get().ask::<_, iommu::Reply>(
        buffer,
        &iommu::Request::ClaimGroup { device: BEHIND[0] },
        &[own::TASK.slot()],
        GROUP
    ));
    check!(matches!(claimed, iommu::Reply::Group { .. }), "naming one device claims the group");
    for device in [BRIDGE, BEHIND[0], BEHIND[1]] {
        check_eq!(owner(buffer, device), Some(OwnerReport::User { task: THIS_TASK }), "every member is ours");
    }
    let group = Cap::<Endpoint>::at(GROUP);
    let iommu::Reply::Ioas { ioas } =
        check_ok!(group.ask::<_, iommu::Reply>(buffer, &iommu::Request::IoasCreate, &[], 0))
    else {
        userlib::fail!("the group capability creates an address space");
    };
    let attached =
        check_ok!(group.ask::<_, iommu::Reply>(buffer, &iommu::Request::Attach { ioas: Some(ioas) }, &[], 0));
    check_eq!(attached, iommu::Reply::Done);
    let map = iommu::Request::Map { ioas, iova: BUFFER_IOVA, writable: true };
    let mapped = check_ok!(group.ask::<_, iommu::Reply>(buffer, &map, &[FRAME], 0));
    check!(matches!(mapped, iommu::Reply::Mapped { .. }));
    let memory = check_ok!(Mapping::map(own::SPACE, Cap::<Frame>::at(FRAME), BUFFER_VIRT, true));
    for (n, device) in BEHIND.iter().enumerate() {
        let granted = match pci_api::client::acquire(PCI.get(), buffer, *device, WINDOWS[n]) {
            Ok(granted) => granted,
            Err(refused) => {
                defmt::error!("  acquire {} refused ({}): {=str}", device, refused.code, refused.reason.as_str());
                return Err(testkit::Failure { file: file!(), line: line!() });
            }
        };
        let (Some(bar), Some(interrupt)) = (granted.bar(0), granted.interrupt()) else {
            check!(false, "BAR0 and an interrupt");
            return Ok(());
        };
        check!(pci_api::client::enable_bus_mastering(PCI.get(), buffer, *device).is_ok(), "bus mastering on");
        let engine = check_ok!(::edu::Edu::new(Cap::at(bar), Cap::at(interrupt), Cap::at(DONE[n]), BAR_VIRT[n]));
        let out = n as u64 * 256;
        let back = 2048 + out;
        for at in 0..256 {
            check!(memory.write8(out + at, (at as u8) ^ (0x5a + n as u8)).is_some());
            check!(memory.write8(back + at, 0).is_some());
        }
        let moved = engine
            .dma(BUFFER_IOVA + out, ::edu::DEVICE_BUFFER, 256, false)
            .and_then(|()| engine.dma(::edu::DEVICE_BUFFER, BUFFER_IOVA + back, 256, true));
        engine.close();
        check_ok!(moved);
        let intact = (0..256).all(|at| memory.read8(back + at) == Some((at as u8) ^ (0x5a + n as u8)));
        check!(intact, "each edu of the group moved its bytes through the task's own address space");
        defmt::info!("  {} copied 256 bytes through IOVA {=u64:#x}", device, BUFFER_IOVA + out);
    }
    Ok(())
}
