//! A user's address spaces: their usable ranges, and destroying one (issue 21).

use super::*;

#[test]
fn an_address_space_reports_its_window_less_the_interrupt_window_in_pages() {
    let mut rig = Rig::new(QEMU_CAP);
    let cap = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    let ioas = ioas_of(rig.call(cap, Request::IoasCreate, &[]));
    let Reply::Ranges { ranges, more } = rig.call(cap, Request::IoasRanges { ioas, from: 0 }, &[]) else {
        panic!("ranges")
    };
    assert!(!more);
    let (first, last) = (ranges[0], ranges[ranges.len() - 1]);
    assert_eq!(first, (0x1000, 0xfedf_ffff), "page 0 and the interrupt window are left out");
    assert_eq!(ranges[1].0, 0xfef0_0000);
    assert_eq!(last.1 & 0xfff, 0xfff, "the window ends at a page's last byte");
    let Reply::Ranges { ranges: rest, .. } = rig.call(cap, Request::IoasRanges { ioas, from: 0xff00_0000 }, &[]) else {
        panic!("ranges")
    };
    assert_eq!(rest[0].0, 0xff00_0000, "a page starts where asked");
    let other = rig.claim_group(USER, bdf(1, 2)).expect("assigned");
    let refused = rig.call(other, Request::IoasRanges { ioas: ioas + 1, from: 0 }, &[]);
    assert_eq!(refusal(&refused).0, ErrorCode::NotFound);
}

#[test]
fn a_space_is_destroyed_with_its_mappings_only_once_no_group_is_attached() {
    let mut rig = Rig::new(QEMU_CAP);
    let cap = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    let pages_before = rig.service.hardware().pages.live();
    let ioas = ioas_of(rig.call(cap, Request::IoasCreate, &[]));
    assert_eq!(rig.call(cap, Request::Attach { ioas: Some(ioas) }, &[]), Reply::Done);
    let mapped = rig.with_frame(cap, Request::Map { ioas, iova: 0x10_0000, writable: true }, 1);
    assert_eq!(mapped, Reply::Mapped { iova: 0x10_0000 });
    let busy = rig.call(cap, Request::IoasDestroy { ioas }, &[]);
    let (code, reason) = refusal(&busy);
    assert_eq!(code, ErrorCode::Busy);
    assert!(reason.contains("is attached to address space"), "{reason}");
    assert_eq!(rig.call(cap, Request::Attach { ioas: None }, &[]), Reply::Done);
    let pins = rig.k.pins.len();
    assert_eq!(rig.call(cap, Request::IoasDestroy { ioas }, &[]), Reply::Done);
    assert_eq!(rig.k.pins.len(), pins - 1, "its mapping's pin is released");
    assert_eq!(rig.service.hardware().pages.live(), pages_before, "and every table page");
    let gone = rig.call(cap, Request::IoasRanges { ioas, from: 0 }, &[]);
    assert_eq!(refusal(&gone).0, ErrorCode::NotFound);
    assert_eq!(refusal(&rig.call(cap, Request::IoasDestroy { ioas }, &[])).0, ErrorCode::NotFound, "once");
    let again = ioas_of(rig.call(cap, Request::IoasCreate, &[]));
    assert_ne!(again, ioas, "ids go round");
    rig.check_invariant();
}

#[test]
fn another_tasks_space_is_neither_listed_nor_destroyed() {
    let mut settings = config();
    settings.assignments[1].task = INTRUDER;
    let mut rig = Rig::with(QEMU_CAP, settings, topology(), heapless::Vec::new());
    let owner = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    let ioas = ioas_of(rig.call(owner, Request::IoasCreate, &[]));
    let stranger = rig.claim_group(INTRUDER, bdf(1, 2)).expect("assigned to the intruder");
    for request in [Request::IoasRanges { ioas, from: 0 }, Request::IoasDestroy { ioas }] {
        assert_eq!(refusal(&rig.call(stranger, request, &[])).0, ErrorCode::NotFound);
    }
    assert!(matches!(rig.call(owner, Request::IoasRanges { ioas, from: 0 }, &[]), Reply::Ranges { .. }), "still there");
}

#[test]
fn a_tasks_usage_counts_its_spaces_pins_and_table_pages_and_nothing_of_others() {
    let mut rig = Rig::new(QEMU_CAP);
    let stats = policy(INTRUDER, &[Operation::Stats]);
    let usage = |rig: &mut Rig, task: u16| match rig.call(stats, Request::Usage { task }, &[]) {
        Reply::Usage { address_spaces, mapped_pages, table_pages, dma_handles, dma_pages, .. } => {
            (address_spaces, mapped_pages, table_pages, dma_handles, dma_pages)
        }
        other => panic!("usage: {other:?}"),
    };
    assert_eq!(usage(&mut rig, USER), (0, 0, 0, 0, 0));
    let cap = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    let ioas = ioas_of(rig.call(cap, Request::IoasCreate, &[]));
    assert_eq!(
        rig.with_frame(cap, Request::Map { ioas, iova: 0x10_0000, writable: true }, 3),
        Reply::Mapped { iova: 0x10_0000 }
    );
    let (spaces, mapped, tables, handles, _) = usage(&mut rig, USER);
    assert_eq!((spaces, mapped, handles), (1, 3, 0));
    assert!(tables >= 3, "a table per level below the root, charged to the user: {tables}");
    let handle = rig.claim_kernel(bdf(1, 2)).expect("unowned");
    let mapped = rig.with_frame(handle, Request::DmaMap { writable: true, mask_bits: 32 }, 2);
    assert!(matches!(mapped, Reply::Mapped { .. }), "{mapped:?}");
    assert_eq!(usage(&mut rig, DRIVER).3, 1, "the driver's handle");
    assert_eq!(usage(&mut rig, DRIVER).4, 2, "and its two pages");
    assert_eq!(usage(&mut rig, USER).3, 0, "not the user's");
    assert_eq!(refusal(&rig.call(stats, Request::Usage { task: 40 }, &[])).0, ErrorCode::NotFound);
    let no_right = policy(INTRUDER, &[Operation::Owner]);
    assert_eq!(refusal(&rig.call(no_right, Request::Usage { task: USER }, &[])).0, ErrorCode::PermissionDenied);
}
