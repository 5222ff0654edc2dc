//! Blocked DMA, each case showing the bytes it was aimed at unchanged as well as the fault in its owner's log.

use edu_api as edu;
use iommu_api as iommu;
use iommu_api::OwnerReport;
use userlib::testkit::prelude::*;

use super::{
    BAR_VIRT, DONE, EDU_DMA, EDU_USER, GROUP, KERNEL_IMAGE, PCI, SPARE, THIS_TASK, TRUSTED, USER, WINDOW, ask_edu,
    ask_iommu, blocked_write, canary, claim, edu_faults, owner, release_group, wait_unowned,
};

pub(super) fn dma_to_an_unmapped_iova_is_blocked_and_reported(buffer: &mut Buffer) -> Outcome {
    // Copies through the mapping first, so the unit's IOTLB holds it.
    let copied = check_ok!(ask_edu(EDU_DMA.get(), buffer, &edu::Request::Copy { len: 64, seed: 2 }));
    check!(matches!(copied, edu::Reply::Copied { matched: true, .. }));
    let _ = edu_faults(EDU_DMA.get(), buffer);
    let seed = canary::CANARY;
    check_eq!(check_ok!(ask_edu(EDU_DMA.get(), buffer, &edu::Request::FillBuffer { seed })), edu::Reply::Done);
    let edu::Reply::Buffer { iova } = check_ok!(ask_edu(EDU_DMA.get(), buffer, &edu::Request::Unmap)) else {
        check!(false, "the buffer was mapped");
        return Ok(());
    };
    let reply = check_ok!(ask_edu(EDU_DMA.get(), buffer, &edu::Request::DmaAt { iova, to_device: false }));
    check_eq!(reply, edu::Reply::Done, "the device finishes the blocked DMA");
    let checked = check_ok!(ask_edu(EDU_DMA.get(), buffer, &edu::Request::CheckBuffer { seed }));
    check_eq!(checked, edu::Reply::Checked { changed: 0 }, "the buffer once at that IOVA is untouched");
    let faults = edu_faults(EDU_DMA.get(), buffer).unwrap_or_default();
    for fault in &faults {
        defmt::info!(
            "  fault: {} {=u64:#x} write {=bool} reason {=u8}",
            fault.source,
            fault.address,
            fault.write,
            fault.reason
        );
    }
    check!(blocked_write(&faults, TRUSTED, iova), "the write to the old IOVA is in the fault log, with the device");
    let remapped = check_ok!(ask_edu(EDU_DMA.get(), buffer, &edu::Request::Map));
    check!(matches!(remapped, edu::Reply::Buffer { .. }));
    let copied = check_ok!(ask_edu(EDU_DMA.get(), buffer, &edu::Request::Copy { len: 512, seed: 9 }));
    check!(matches!(copied, edu::Reply::Copied { matched: true, .. }), "mapped again, DMA works again");
    Ok(())
}

pub(super) fn a_device_in_a_blocked_group_faults(buffer: &mut Buffer) -> Outcome {
    let group = check_ok!(claim(buffer, SPARE));
    check_eq!(owner(buffer, SPARE), Some(OwnerReport::User { task: THIS_TASK }));
    let granted = check_ok!(pci_api::client::acquire(PCI.get(), buffer, SPARE, WINDOW));
    check_eq!(granted.grant.group, group);
    let (Some(bar), Some(interrupt)) = (granted.bar(0), granted.interrupt()) else {
        check!(false, "the grant has BAR0 and an interrupt");
        return Ok(());
    };
    check!(pci_api::client::enable_bus_mastering(PCI.get(), buffer, SPARE).is_ok(), "bus mastering on");
    let device = check_ok!(::edu::Edu::new(Cap::at(bar), Cap::at(interrupt), Cap::at(DONE), BAR_VIRT));
    // No address space is attached: the group is blocked, so this write
    // must not reach memory at any address, another task's frame neither.
    let target = check_ok!(canary::other_tasks_frame(buffer));
    let moved = device.dma(::edu::DEVICE_BUFFER, target, 64, true);
    device.close();
    check_ok!(moved);
    check_eq!(check_ok!(canary::other_tasks_frame_changed(buffer)), 0, "the frame there is untouched");
    let reply = check_ok!(ask_iommu(Cap::at(GROUP), buffer, &iommu::Request::Faults));
    let faults = match &reply {
        iommu::Reply::Faults { records, .. } => records.clone(),
        _ => Default::default(),
    };
    check!(blocked_write(&faults, SPARE, target), "the blocked write is in this group's fault log");
    let released = pci_api::client::release(PCI.get(), buffer, SPARE);
    check!(released.is_ok());
    check_ok!(release_group(buffer));
    check!(wait_unowned(buffer, SPARE), "quiesced and back to the default domain");
    Ok(())
}

pub(super) fn user_dma_outside_its_mappings_is_blocked_and_in_its_fault_log(buffer: &mut Buffer) -> Outcome {
    let edu::Reply::Buffer { iova: trusted_iova } = check_ok!(ask_edu(EDU_DMA.get(), buffer, &edu::Request::Map))
    else {
        userlib::fail!("the trusted driver maps its buffer");
    };
    let _ = edu_faults(EDU_USER.get(), buffer);
    let seed = canary::CANARY;
    check_eq!(check_ok!(ask_edu(EDU_DMA.get(), buffer, &edu::Request::FillBuffer { seed })), edu::Reply::Done);
    // An unmapped IOVA, the kernel image's physical address (the kernel
    // checks its image when the system ends), the address the trusted
    // driver's buffer has in its own domain, plain RAM, and another
    // task's frame.
    let targets = [0x20_0000, KERNEL_IMAGE, trusted_iova, 0x0c00_0000, check_ok!(canary::other_tasks_frame(buffer))];
    for iova in targets {
        let reply = check_ok!(ask_edu(EDU_USER.get(), buffer, &edu::Request::DmaAt { iova, to_device: false }));
        check_eq!(reply, edu::Reply::Done);
    }
    let faults = edu_faults(EDU_USER.get(), buffer).unwrap_or_default();
    for iova in targets {
        check!(blocked_write(&faults, USER, iova), "each write is blocked and in the owner's fault log");
    }
    let trusted = check_ok!(ask_edu(EDU_DMA.get(), buffer, &edu::Request::CheckBuffer { seed }));
    check_eq!(trusted, edu::Reply::Checked { changed: 0 }, "the trusted driver's buffer is untouched");
    check_eq!(check_ok!(canary::other_tasks_frame_changed(buffer)), 0, "so is the other task's frame");
    let copied = check_ok!(ask_edu(EDU_DMA.get(), buffer, &edu::Request::Copy { len: 64, seed: 1 }));
    check!(matches!(copied, edu::Reply::Copied { matched: true, .. }), "the trusted driver still works");
    Ok(())
}
