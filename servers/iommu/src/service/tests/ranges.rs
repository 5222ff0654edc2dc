//! Range requests: many frames mapped by one request, a range unmapped by one (issue 20).

use super::*;
use crate::unit::fake::Event;

/// IOTLB invalidation descriptors the unit has taken from its queue.
fn iotlb_descriptors(rig: &mut Rig) -> usize {
    let events = &rig.unit().events;
    events.iter().filter(|event| matches!(event, Event::Queued(d) if d.kind() == 2)).count()
}

/// A user with an address space of its own, attached to 00:04.0's group.
fn user_space(rig: &mut Rig) -> (u64, u16) {
    let cap = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    let ioas = ioas_of(rig.call(cap, Request::IoasCreate, &[]));
    assert_eq!(rig.call(cap, Request::Attach { ioas: Some(ioas) }, &[]), Reply::Done);
    (cap, ioas)
}

/// Sends frames of `pages` pages each, in slots from 91, with `request`.
fn with_frames(rig: &mut Rig, badge: u64, request: Request, pages: &[u64]) -> Reply {
    let slots: Vec<u32> = (91..).take(pages.len()).collect();
    for (&slot, &count) in slots.iter().zip(pages) {
        rig.k.frames.insert(slot, count);
    }
    rig.call(badge, request, &slots)
}

#[test]
fn frames_map_back_to_back_and_one_invalidation_unmaps_them_before_any_pin_goes() {
    let mut rig = Rig::new(QEMU_CAP);
    let (cap, ioas) = user_space(&mut rig);
    let pages_before = rig.service.hardware().pages.live();
    let reply = with_frames(&mut rig, cap, Request::MapRange { ioas, iova: 0x10_0000, writable: true }, &[1, 2, 1]);
    assert_eq!(reply, Reply::MappedRange { mapped: 3, pages: 4, refused: None });
    let mut placed: Vec<(u64, u64)> = rig.service.domains.mappings().iter().map(|m| (m.iova, m.pages)).collect();
    placed.sort_unstable();
    assert_eq!(placed, [(0x10_0000, 1), (0x10_1000, 2), (0x10_3000, 1)], "back to back, in the order sent");
    let memory = rig.unit().memory.clone();
    let start = memory.borrow().invalidations.len();
    rig.k.unit = Some(memory.clone());
    let before = iotlb_descriptors(&mut rig);
    let reply = rig.call(cap, Request::UnmapRange { ioas, iova: 0x10_0000, pages: 4 }, &[]);
    assert_eq!(reply, Reply::UnmappedRange { mappings: 3, pages: 4 });
    assert_eq!(iotlb_descriptors(&mut rig) - before, 1, "one page-selective invalidation for the whole range");
    assert!(rig.k.pins.is_empty(), "every pin released");
    assert_eq!(rig.k.unpins.len(), 3);
    assert!(rig.k.unpins.iter().all(|&(_, done)| done > start), "each after the invalidation: {:?}", rig.k.unpins);
    assert_eq!(rig.service.hardware().pages.live(), pages_before, "and the emptied tables");
    let again = rig.call(cap, Request::UnmapRange { ioas, iova: 0x10_0000, pages: 4 }, &[]);
    assert_eq!(refusal(&again).0, ErrorCode::NotMapped, "once");
    rig.check_invariant();
}

#[test]
fn a_range_stopped_by_the_quota_keeps_its_leading_frames_and_pins_nothing_of_the_refused() {
    let mut rig = Rig::new(QEMU_CAP);
    let (cap, ioas) = user_space(&mut rig);
    // The quota is 64 pages: the third frame would make 70; the fourth,
    // which would fit, is never tried.
    let frames = [30, 30, 10, 1];
    let reply = with_frames(&mut rig, cap, Request::MapRange { ioas, iova: 0x10_0000, writable: true }, &frames);
    assert_eq!(reply, Reply::MappedRange { mapped: 2, pages: 60, refused: Some(ErrorCode::QuotaExceeded) });
    assert_eq!(rig.k.pins.len(), 2, "neither the refused frame nor the one after it is pinned");
    assert_eq!(rig.k.pins.values().sum::<u64>(), 60);
    assert_eq!(rig.service.domains.pages_of(domains::MappingOwner::Ioas(ioas)), 60);
    rig.check_invariant();
}

#[test]
fn a_range_stopped_by_table_pages_keeps_its_leading_frames_and_nothing_of_the_refused() {
    let mut rig = Rig::new(QEMU_CAP);
    let (cap, ioas) = user_space(&mut rig);
    let first = rig.with_frame(cap, Request::Map { ioas, iova: 0x1f_0000, writable: true }, 1);
    assert_eq!(first, Reply::Mapped { iova: 0x1f_0000 });
    // No table page left: the first frame fits the existing leaf table,
    // the second crosses into the next 2 MiB, which needs another.
    let pages = &mut rig.service.hardware().pages;
    pages.budget = pages.pages.len();
    let reply = with_frames(&mut rig, cap, Request::MapRange { ioas, iova: 0x1f_1000, writable: true }, &[14, 2]);
    assert_eq!(reply, Reply::MappedRange { mapped: 1, pages: 14, refused: Some(ErrorCode::OutOfMemory) });
    assert_eq!(rig.k.pins.len(), 2, "the single map and the leading frame");
    assert_eq!(rig.k.pins.values().sum::<u64>(), 15);
    assert_eq!(rig.service.domains.pages_of(domains::MappingOwner::Ioas(ioas)), 15);
    rig.check_invariant();
}

#[test]
fn a_range_that_cuts_a_mapping_is_refused_and_changes_nothing() {
    let mut rig = Rig::new(QEMU_CAP);
    let (cap, ioas) = user_space(&mut rig);
    let reply = with_frames(&mut rig, cap, Request::MapRange { ioas, iova: 0x10_0000, writable: false }, &[2, 2]);
    assert_eq!(reply, Reply::MappedRange { mapped: 2, pages: 4, refused: None });
    let (live, events) = (rig.service.hardware().pages.live(), rig.unit().events.len());
    for (iova, pages) in [(0x10_1000, 2), (0x10_0000, 3), (0xf_f000, 2)] {
        let cut = rig.call(cap, Request::UnmapRange { ioas, iova, pages }, &[]);
        assert_eq!(refusal(&cut).0, ErrorCode::InvalidArgument, "{iova:#x}+{pages}");
    }
    assert_eq!(rig.k.pins.len(), 2, "no pin released");
    assert_eq!(rig.service.domains.mapping_count(), 2, "no mapping forgotten");
    assert_eq!(rig.unit().events.len(), events, "no entry cleared, nothing invalidated");
    assert_eq!(rig.service.hardware().pages.live(), live);
    let reply = rig.call(cap, Request::UnmapRange { ioas, iova: 0x10_0000, pages: 2 }, &[]);
    assert_eq!(reply, Reply::UnmappedRange { mappings: 1, pages: 2 }, "a range holding one mapping wholly");
    assert_eq!(rig.k.pins.len(), 1);
    rig.check_invariant();
}

#[test]
fn hostile_ranges_are_refused_with_typed_errors() {
    let mut settings = config();
    settings.assignments[1].task = INTRUDER;
    let mut rig = Rig::with(QEMU_CAP, settings, topology(), heapless::Vec::new());
    let (cap, ioas) = user_space(&mut rig);
    let reply = with_frames(&mut rig, cap, Request::MapRange { ioas, iova: 0x10_0000, writable: true }, &[1]);
    assert_eq!(reply, Reply::MappedRange { mapped: 1, pages: 1, refused: None });
    let top: u64 = !0xfff;
    // Zero pages, past 2^64, unaligned, overflowing, past the 39-bit width.
    for (iova, pages) in [(0x10_0000, 0), (top, 2), (0x10_0800, 1), (0, u64::MAX), (0x10_0000, 1 << 40)] {
        let reply = rig.call(cap, Request::UnmapRange { ioas, iova, pages }, &[]);
        assert_eq!(refusal(&reply).0, ErrorCode::InvalidArgument, "{iova:#x}+{pages}");
    }
    let unaligned = with_frames(&mut rig, cap, Request::MapRange { ioas, iova: 0x20_0800, writable: true }, &[1]);
    assert_eq!(refusal(&unaligned).0, ErrorCode::InvalidArgument);
    let no_frames = rig.call(cap, Request::MapRange { ioas, iova: 0x20_0000, writable: true }, &[]);
    assert_eq!(refusal(&no_frames).0, ErrorCode::InvalidArgument);
    // The frame after one ending at the top of the address space has
    // nowhere to go; the one before it is refused by the window.
    let past = with_frames(&mut rig, cap, Request::MapRange { ioas, iova: top, writable: true }, &[1, 1]);
    assert!(matches!(past, Reply::MappedRange { mapped: 0, pages: 0, refused: Some(_) }), "{past:?}");
    let stranger = rig.claim_group(INTRUDER, bdf(1, 2)).expect("assigned to the intruder");
    let theirs = rig.call(stranger, Request::UnmapRange { ioas, iova: 0x10_0000, pages: 1 }, &[]);
    assert_eq!(refusal(&theirs).0, ErrorCode::NotFound, "another task's space");
    let theirs = with_frames(&mut rig, stranger, Request::MapRange { ioas, iova: 0x30_0000, writable: true }, &[1]);
    assert_eq!(refusal(&theirs).0, ErrorCode::NotFound);
    assert_eq!(rig.k.pins.len(), 1, "only the first frame stays pinned");
    rig.check_invariant();
}
