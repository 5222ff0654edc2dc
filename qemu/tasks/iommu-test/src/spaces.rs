//! A user's address space reports the addresses its devices may be given, refuses a map outside them, and goes when asked once no group uses it.

use iommu_api as iommu;
use userlib::cap::Cap;
use userlib::ipc::Buffer;
use userlib::testkit::{self, Outcome};
use userlib::{check, check_eq, check_ok};

use super::{FRAME, GROUP, SPARE, ask_iommu, claim, release_group, wait_unowned};

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
