//! A user's address spaces: shared by two of its groups, their usable ranges, a map outside them refused, destroyed once detached.

use capabilities::pci::Bdf;
use capabilities::protocol::Refused;
use iommu_api as iommu;
use iommu_api::client::group;
use userlib::cap::{Cap, Endpoint, Frame, own};
use userlib::ipc::Buffer;
use userlib::mmio::Mapping;
use userlib::testkit::{self, Failure, Outcome};
use userlib::{check, check_eq, check_ok, objects};

use super::{
    BAR_VIRT, BEHIND_A, DONE, FRAME, GROUP, IOMMU, PCI, PROBE_BYTES, SPARE, THIS_TASK, WINDOW, ask_iommu, claim,
    release_group, wait_unowned,
};

/// The interrupt window, which no address space may hand a device.
const INTERRUPT_WINDOW: (u64, u64) = (0xfee0_0000, 0xfeef_ffff);

pub fn an_address_space_reports_its_usable_ranges_and_goes_once_detached(buffer: &mut Buffer) -> Outcome {
    check_ok!(claim(buffer, SPARE));
    let group = Cap::at(GROUP);
    let iommu::Reply::Ioas { ioas } = check_ok!(ask_iommu(group, buffer, &iommu::Request::IoasCreate)) else {
        userlib::fail!("no address space");
    };
    let reply = check_ok!(ask_iommu(group, buffer, &iommu::Request::IoasRanges { ioas, from: 0 }));
    let iommu::Reply::Ranges { ranges, .. } = reply else { userlib::fail!("no ranges") };
    check!(!ranges.is_empty());
    check_eq!(ranges[0].0, 0x1000, "page 0 is never handed out");
    let outside = |&(first, last): &(u64, u64)| last < INTERRUPT_WINDOW.0 || first > INTERRUPT_WINDOW.1;
    check!(ranges.iter().all(outside), "no range reaches into the interrupt window");
    defmt::info!("address space {=u16}: {=usize} usable ranges from {=u64:#x}", ioas, ranges.len(), ranges[0].0);
    check_eq!(check_ok!(ask_iommu(group, buffer, &iommu::Request::Attach { ioas: Some(ioas) })), iommu::Reply::Done);
    let into_the_window = iommu::Request::Map { ioas, iova: INTERRUPT_WINDOW.0, writable: true };
    let refused = check_ok!(group.ask::<_, iommu::Reply>(buffer, &into_the_window, &[FRAME], 0));
    check!(testkit::refusal(&refused).is_some(), "a map outside the usable ranges is refused");
    let map = iommu::Request::Map { ioas, iova: 0x5000, writable: true };
    let mapped = check_ok!(group.ask::<_, iommu::Reply>(buffer, &map, &[FRAME], 0));
    check_eq!(mapped, iommu::Reply::Mapped { iova: 0x5000 });
    let usage = check_ok!(ask_iommu(IOMMU.get(), buffer, &iommu::Request::Usage { task: THIS_TASK }));
    let iommu::Reply::Usage { address_spaces, mapped_pages, table_pages, .. } = usage else {
        userlib::fail!("no usage")
    };
    check_eq!((address_spaces, mapped_pages), (1, 1), "its one space and the page mapped in it");
    check!(table_pages > 0, "the space's tables are charged to this task");
    let busy = check_ok!(ask_iommu(group, buffer, &iommu::Request::IoasDestroy { ioas }));
    check_eq!(testkit::refusal(&busy), Some(capabilities::ErrorCode::Busy), "attached: it stays");
    check_eq!(check_ok!(ask_iommu(group, buffer, &iommu::Request::Attach { ioas: None })), iommu::Reply::Done);
    check_eq!(check_ok!(ask_iommu(group, buffer, &iommu::Request::IoasDestroy { ioas })), iommu::Reply::Done);
    let gone = check_ok!(ask_iommu(group, buffer, &iommu::Request::IoasRanges { ioas, from: 0 }));
    check_eq!(testkit::refusal(&gone), Some(capabilities::ErrorCode::NotFound), "destroyed");
    check_ok!(release_group(buffer));
    check!(wait_unowned(buffer, SPARE));
    Ok(())
}

/// Slots and addresses for a second device: 01:01.0, behind the bridge,
/// in a group of its own (the bridge and 01:02.0 are held by no-DMA
/// drivers) that this task may own beside 00:06.0's.
const SECOND_GROUP: u32 = 78;
const SHARED_FRAME: u32 = 79;
const SECOND_WINDOW: u32 = 120;
const SECOND_BAR_VIRT: u64 = 0x2a00_0000;
const SHARED_VIRT: u64 = 0x2a10_0000;
/// Where the shared page is mapped in the one address space.
const SHARED_IOVA: u64 = 0x8000;

/// Acquires `device`, whose group this task owns, turns its bus mastering
/// on and maps its registers at `virt`, its interrupt on `DONE`.
fn take(buffer: &mut Buffer, device: Bdf, window: u32, virt: u64) -> Result<::edu::Edu, Failure> {
    let granted = check_ok!(pci_api::client::acquire(PCI.get(), buffer, device, window).map_err(Refused::logged));
    let (Some(bar), Some(interrupt)) = (granted.bar(0), granted.interrupt()) else {
        userlib::fail!("the grant has BAR0 and an interrupt");
    };
    check_ok!(pci_api::client::enable_bus_mastering(PCI.get(), buffer, device).map_err(Refused::logged));
    Ok(check_ok!(::edu::Edu::new(Cap::at(bar), Cap::at(interrupt), Cap::at(DONE), virt)))
}

/// `device` reads the shared page into its buffer, the page is cleared,
/// and `device` writes its buffer back: the page must hold the pattern.
fn round_trip(device: &::edu::Edu, page: &Mapping<Frame>, seed: u8) -> Outcome {
    let pattern = |i: u64| (i as u8).wrapping_mul(31) ^ seed;
    for i in 0..PROBE_BYTES {
        check_eq!(page.write8(i, pattern(i)), Some(()));
    }
    check_eq!(page.write_back(0, PROBE_BYTES), Some(()));
    check_ok!(device.dma(SHARED_IOVA, ::edu::DEVICE_BUFFER, PROBE_BYTES, false));
    for i in 0..PROBE_BYTES {
        check_eq!(page.write8(i, 0), Some(()));
    }
    check_eq!(page.write_back(0, PROBE_BYTES), Some(()));
    check_ok!(device.dma(::edu::DEVICE_BUFFER, SHARED_IOVA, PROBE_BYTES, true));
    for i in 0..PROBE_BYTES {
        check_eq!(page.read8(i), Some(pattern(i)), "the device's write came back through the shared space");
    }
    Ok(())
}

pub fn two_groups_share_one_address_space_and_both_dma_through_it(buffer: &mut Buffer) -> Outcome {
    check_ok!(claim(buffer, SPARE));
    check_ok!(group::claim(IOMMU.get(), buffer, BEHIND_A, SECOND_GROUP).map_err(Refused::logged));
    let (first, second) = (Cap::<Endpoint>::at(GROUP), Cap::<Endpoint>::at(SECOND_GROUP));
    let outcome = shared(buffer, first, second);
    // Whatever the case came to, both groups go back.
    let _ = pci_api::client::release(PCI.get(), buffer, SPARE);
    let _ = pci_api::client::release(PCI.get(), buffer, BEHIND_A);
    let _ = Cap::<Frame>::at(SHARED_FRAME).delete();
    check_ok!(release_group(buffer));
    check_ok!(group::release(second, buffer).map_err(Refused::logged));
    check!(wait_unowned(buffer, SPARE) && wait_unowned(buffer, BEHIND_A), "both groups reclaimed");
    outcome
}

fn shared(buffer: &mut Buffer, first: Cap<Endpoint>, second: Cap<Endpoint>) -> Outcome {
    let iommu::Reply::Ioas { ioas } = check_ok!(ask_iommu(first, buffer, &iommu::Request::IoasCreate)) else {
        userlib::fail!("no address space");
    };
    for group in [first, second] {
        check_eq!(
            check_ok!(ask_iommu(group, buffer, &iommu::Request::Attach { ioas: Some(ioas) })),
            iommu::Reply::Done
        );
    }
    let frame = check_ok!(objects::alloc_frame(SHARED_FRAME, 1));
    let page = check_ok!(Mapping::map(own::SPACE, frame, SHARED_VIRT, true));
    // One map, through the first group's capability, serves both groups.
    let map = iommu::Request::Map { ioas, iova: SHARED_IOVA, writable: true };
    check_eq!(
        check_ok!(first.ask::<_, iommu::Reply>(buffer, &map, &[SHARED_FRAME], 0)),
        iommu::Reply::Mapped { iova: SHARED_IOVA }
    );
    let one = take(buffer, SPARE, WINDOW, BAR_VIRT)?;
    let other = take(buffer, BEHIND_A, SECOND_WINDOW, SECOND_BAR_VIRT)?;
    let outcome = round_trip(&one, &page, 0x11).and_then(|()| round_trip(&other, &page, 0x77));
    one.close();
    other.close();
    check_ok!(page.unmap());
    outcome
}
