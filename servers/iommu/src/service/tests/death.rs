//! An owner's death: its frames are released only once its devices are cut off and the unit has forgotten them.

use super::*;
use crate::unit::fake::Event;

/// An invalidation the unit carried out, whichever way it was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    /// Context-cache entries: all, a domain's, or one source's in a domain.
    Context { domain: Option<u16>, source: Option<u16> },
    /// IOTLB entries: all, a domain's, or a domain's `2^order` pages from `address`.
    Iotlb { domain: Option<u16>, pages: Option<(u64, u32)> },
    /// A wait descriptor: everything queued before it is complete.
    Wait,
    /// Anything else (interrupt entries).
    Other,
}

impl Done {
    /// Reads the queued descriptor or the register command the unit took.
    fn of(event: &Event) -> Self {
        let (kind, granularity, domain, source, address, order) = match *event {
            Event::Queued(descriptor) => {
                let (low, high) = (descriptor.low, descriptor.high);
                let kind = descriptor.kind();
                (kind, low >> 4 & 3, low >> 16 & 0xffff, low >> 32 & 0xffff, high & !0xfff, (high & 0x3f) as u32)
            }
            Event::ContextRegister(command) => (1, command >> 61 & 3, command & 0xffff, command >> 16 & 0xffff, 0, 0),
            Event::IotlbRegister { address, command } => {
                (2, command >> 60 & 3, command >> 32 & 0xffff, 0, address & !0xfff, (address & 0x3f) as u32)
            }
            _ => return Done::Other,
        };
        let domain = (granularity >= 2).then_some(domain as u16);
        match kind {
            1 => Done::Context { domain, source: (granularity == 3).then_some(source as u16) },
            2 => Done::Iotlb { domain, pages: (granularity == 3).then_some((address, order)) },
            5 => Done::Wait,
            _ => Done::Other,
        }
    }

    /// Whether this forgets the context entry of `source` tagged `domain`.
    fn forgets_context(self, source: u16, domain: u16) -> bool {
        matches!(self, Done::Context { domain: d, source: s } if d.is_none_or(|d| d == domain) && s.is_none_or(|s| s == source))
    }

    /// Whether this forgets every translation of `domain` in `[iova, iova + pages pages)`.
    fn forgets_translations(self, domain: u16, iova: u64, pages: u64) -> bool {
        match self {
            Done::Iotlb { domain: d, pages: covered } if d.is_none_or(|d| d == domain) => {
                covered.is_none_or(|(start, order)| start <= iova && iova + pages * 0x1000 <= start + (0x1000 << order))
            }
            _ => false,
        }
    }
}

/// A user on 00:04.0 with three mappings (one of two pages) in its
/// attached address space, and a driver with one on 00:03.0: the pin
/// handle, IOVA and pages of each of the user's, and the driver's pin.
fn owner_with_mappings(rig: &mut Rig) -> (Vec<(u64, u64, u64)>, u64) {
    let handle = rig.claim_kernel(bdf(0, 3)).expect("unowned");
    assert!(matches!(
        rig.with_frame(handle, Request::DmaMap { writable: true, mask_bits: 32 }, 1),
        Reply::Mapped { .. }
    ));
    let driver_pin = rig.k.next_pin;
    let group_cap = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    let Reply::Ioas { ioas } = rig.call(group_cap, Request::IoasCreate, &[]) else { panic!("an address space") };
    assert_eq!(rig.call(group_cap, Request::Attach { ioas: Some(ioas) }, &[]), Reply::Done);
    let mut mappings = Vec::new();
    for (iova, pages) in [(0x10_0000, 1), (0x20_0000, 2), (0x4000_0000, 1)] {
        let reply = rig.with_frame(group_cap, Request::Map { ioas, iova, writable: true }, pages);
        assert_eq!(reply, Reply::Mapped { iova });
        mappings.push((rig.k.next_pin, iova, pages));
    }
    (mappings, driver_pin)
}

/// Kills the user and checks that each of its pins was released only
/// after the unit had forgotten 00:04.0's context entry and, after that,
/// every translation of the pin's pages; a queued invalidation counts
/// once a wait descriptor after it ran.
fn death_releases_pins_after_the_unit_forgot_them(rig: &mut Rig, queued: bool) {
    let (mappings, driver_pin) = owner_with_mappings(rig);
    let source = bdf(0, 4).requester_id();
    let domain = rig.domain_of(bdf(0, 4)).expect("attached to the user's address space");
    let memory = rig.unit().memory.clone();
    let start = memory.borrow().invalidations.len();
    rig.k.unit = Some(memory.clone());
    rig.service.task_died(&mut rig.k, USER);
    let done: Vec<Done> = memory.borrow().invalidations.iter().map(Done::of).collect();
    let unpinned: Vec<u64> = rig.k.unpins.iter().map(|(pin, _)| *pin).collect();
    let mut expected: Vec<u64> = mappings.iter().map(|(pin, _, _)| *pin).collect();
    expected.sort_unstable();
    let mut sorted = unpinned.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected, "every pin of the dead owner is released, none of the driver's");
    assert!(rig.k.pins.contains_key(&driver_pin), "the driver's frame stays mapped");
    for &(pin, carried_out) in &rig.k.unpins {
        let (_, iova, pages) = mappings.iter().copied().find(|(p, _, _)| *p == pin).expect("one of the owner's");
        let before = &done[start..carried_out];
        let cut_off = before
            .iter()
            .position(|d| d.forgets_context(source, domain))
            .unwrap_or_else(|| panic!("pin {pin} released before 00:04.0's context entry was invalidated: {before:?}"));
        let flushed = before[cut_off..]
            .iter()
            .position(|d| d.forgets_translations(domain, iova, pages))
            .map(|at| cut_off + at)
            .unwrap_or_else(|| panic!("pin {pin} ({iova:#x}) released before its IOTLB entries went: {before:?}"));
        if queued {
            assert!(before[flushed..].contains(&Done::Wait), "pin {pin} released before the invalidation completed");
        }
    }
    assert_eq!(rig.domain_of(bdf(0, 4)), None, "blocked");
    assert_eq!(rig.k.reclaims, 1, "and the PCI server is asked to quiesce it");
    assert!(rig.unit().violations.is_empty(), "{:?}", rig.unit().violations);
}

#[test]
fn a_dead_owners_frames_are_released_only_after_its_devices_are_cut_off_and_the_iotlb_flushed() {
    for cap in [QEMU_CAP, QEMU_CAP_CACHING] {
        death_releases_pins_after_the_unit_forgot_them(&mut Rig::new(cap), true);
    }
    // Register invalidation: no interrupt remapping, which the policy waives.
    let settings = IommuConfig { assignment_without_interrupt_remapping: true, ..self::config() };
    let mut rig = Rig::around(one_unit(QEMU_CAP, QEMU_ECAP, false, settings));
    let report = Request::ReportTopology { functions: topology().into_iter().collect(), last: true };
    assert_eq!(rig.call(policy(PCI, &[Operation::ReportTopology]), report, &[]), Reply::Done);
    death_releases_pins_after_the_unit_forgot_them(&mut rig, false);
}
