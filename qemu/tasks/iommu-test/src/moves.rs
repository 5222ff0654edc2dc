//! A user's claim, detach and unmap take effect at once, whatever the unit has cached.
//!
//! QEMU's intel-iommu caches context entries and translations (its IOTLB
//! is looked up before the tables), as hardware does, so each case first
//! has the device use a translation, then changes it and points the
//! device at the same IOVA: only the invalidation that goes with the
//! change keeps the write out of the frame. The device is 00:06.0, in a
//! group of its own that this task claims.

use iommu_api as iommu;
use iommu_api::Fault;
use userlib::testkit::prelude::*;

use super::canary::{self, Hunt, fill, holds};
use super::{
    BAR_VIRT, DONE, GROUP, PCI, PROBE_BYTES, SPARE, WINDOW, blocked_write, claim, release_group, wait_unowned,
};

/// The frame the device writes, and where this task maps it to look.
const TARGET: u32 = 76;
const TARGET_VIRT: u64 = 0x2900_0000;
/// The IOVA the frame is mapped at in the address space.
const TARGET_IOVA: u64 = 0x7000;
/// The frames mapped either side of [`TARGET`] by one range request (in
/// the hunt's slots, which are free outside a hunt).
const BEFORE: u32 = 126;
const AFTER: u32 = 127;
/// The VT-d fault reason of a requester whose context entry is not
/// present: the unit found no domain for it at all.
const NO_CONTEXT_ENTRY: u8 = 2;

/// 00:06.0 claimed, held and mastering the bus, its registers mapped.
struct Spare {
    device: ::edu::Edu,
}

impl Spare {
    /// Claims 00:06.0's group, acquires the device and turns bus mastering on.
    fn take(buffer: &mut Buffer) -> Result<Self, Failure> {
        check_ok!(claim(buffer, SPARE));
        let granted = check_ok!(pci_api::client::acquire(PCI.get(), buffer, SPARE, WINDOW));
        let (Some(bar), Some(interrupt)) = (granted.bar(0), granted.interrupt()) else {
            userlib::fail!("the grant has BAR0 and an interrupt");
        };
        check!(pci_api::client::enable_bus_mastering(PCI.get(), buffer, SPARE).is_ok(), "bus mastering on");
        let device = check_ok!(::edu::Edu::new(Cap::at(bar), Cap::at(interrupt), Cap::at(DONE), BAR_VIRT));
        Ok(Self { device })
    }

    /// The device writes its buffer's first bytes to `iova`.
    fn write_to(&self, iova: u64) -> Outcome {
        check_ok!(self.device.dma(::edu::DEVICE_BUFFER, iova, PROBE_BYTES, true));
        Ok(())
    }

    /// The device reads `iova` into its buffer.
    fn read_from(&self, iova: u64) -> Outcome {
        check_ok!(self.device.dma(iova, ::edu::DEVICE_BUFFER, PROBE_BYTES, false));
        Ok(())
    }

    /// Gives the device and the group back (which takes the address
    /// space with it), deletes the frame if there is one (which unmaps it
    /// from this task too) and waits for the reclaim.
    fn give_back(self, buffer: &mut Buffer) -> Outcome {
        self.device.close();
        let _ = Cap::<Frame>::at(TARGET).delete();
        check!(pci_api::client::release(PCI.get(), buffer, SPARE).is_ok());
        check_ok!(release_group(buffer));
        check!(wait_unowned(buffer, SPARE), "quiesced and back to the default domain");
        Ok(())
    }
}

/// Runs `case` with 00:06.0 taken, and gives it back whatever the case
/// came to, so that a failure leaves nothing behind for the next case.
fn with_spare(buffer: &mut Buffer, case: fn(&mut Buffer, &Spare) -> Outcome) -> Outcome {
    let spare = Spare::take(buffer)?;
    let outcome = case(buffer, &spare);
    let given_back = spare.give_back(buffer);
    outcome.and(given_back)
}

/// Asks the group capability; a refusal fails the case, reason logged.
fn ask(buffer: &mut Buffer, request: &iommu::Request, frames: &[u32]) -> Result<iommu::Reply, Failure> {
    let reply: iommu::Reply = check_ok!(Cap::at(GROUP).ask(buffer, request, frames, 0));
    check!(testkit::refusal(&reply).is_none(), "the group capability's request is done");
    Ok(reply)
}

/// Every fault the group logged since the last look.
fn faults(buffer: &mut Buffer) -> heapless::Vec<Fault, 8> {
    match Cap::at(GROUP).ask(buffer, &iommu::Request::Faults, &[], 0) {
        Ok(iommu::Reply::Faults { records, .. }) => records,
        _ => heapless::Vec::new(),
    }
}

/// The byte the warm-up writes at `offset`.
fn pattern(offset: u64) -> u8 {
    (offset as u8).wrapping_mul(13).wrapping_add(0x5a)
}

/// A fresh frame mapped into this task, mapped at [`TARGET_IOVA`] in a new
/// address space the group is attached to, and used by the device both
/// ways: the unit has the translation cached. Returns the frame's mapping
/// and the address space.
fn warm_up(buffer: &mut Buffer, spare: &Spare) -> Result<(Mapping<Frame>, u16), Failure> {
    let frame = check_ok!(objects::alloc_frame(TARGET, 1));
    let memory = check_ok!(Mapping::map(own::SPACE, frame, TARGET_VIRT, true));
    let iommu::Reply::Ioas { ioas } = ask(buffer, &iommu::Request::IoasCreate, &[])? else {
        userlib::fail!("an address space");
    };
    let map = iommu::Request::Map { ioas, iova: TARGET_IOVA, writable: true };
    check!(matches!(ask(buffer, &map, &[TARGET])?, iommu::Reply::Mapped { .. }));
    check_eq!(ask(buffer, &iommu::Request::Attach { ioas: Some(ioas) }, &[])?, iommu::Reply::Done);
    check!(fill(&memory, PROBE_BYTES, &pattern));
    spare.read_from(TARGET_IOVA)?;
    check!(fill(&memory, PROBE_BYTES, &|_| 0));
    spare.write_to(TARGET_IOVA)?;
    check!(
        holds(&memory, PROBE_BYTES, &pattern),
        "the device read the frame and wrote it back through the translation"
    );
    Ok((memory, ioas))
}

/// The device writes to [`TARGET_IOVA`] again, which must now be blocked:
/// in the group's fault log, and the frame as this task left it.
fn write_is_blocked(buffer: &mut Buffer, spare: &Spare, memory: &Mapping<Frame>) -> Outcome {
    check!(fill(memory, PROBE_BYTES, &|_| 0xee));
    let _ = faults(buffer);
    spare.write_to(TARGET_IOVA)?;
    check!(holds(memory, PROBE_BYTES, &|_| 0xee), "the frame is as this task left it");
    check!(blocked_write(&faults(buffer), SPARE, TARGET_IOVA), "the write is blocked and in the fault log");
    Ok(())
}

/// A claimed group is blocked before it is the user's: its devices reach
/// no domain at all (the unit finds no context entry), not even the
/// group's default domain, until the owner attaches an address space.
pub(super) fn a_claimed_group_reaches_no_domain_until_attached(buffer: &mut Buffer) -> Outcome {
    with_spare(buffer, |buffer, spare| {
        let _ = faults(buffer);
        spare.write_to(TARGET_IOVA)?;
        let logged = faults(buffer);
        for fault in &logged {
            let (address, write, reason) = (fault.address, fault.write, fault.reason);
            defmt::info!("  fault: {} {=u64:#x} write {=bool} reason {=u8}", fault.source, address, write, reason);
        }
        check!(blocked_write(&logged, SPARE, TARGET_IOVA), "the write is blocked and in the fault log");
        check!(
            logged.iter().all(|fault| fault.reason == NO_CONTEXT_ENTRY),
            "blocked by a missing context entry, not by the default domain's tables"
        );
        Ok(())
    })
}

/// Detaching moves the group to blocking: the device's next write to the
/// IOVA it just used is blocked, though the unit had the old context
/// entry and translation cached.
pub(super) fn a_detached_group_no_longer_reaches_its_address_space(buffer: &mut Buffer) -> Outcome {
    with_spare(buffer, |buffer, spare| {
        let (memory, _) = warm_up(buffer, spare)?;
        check_eq!(ask(buffer, &iommu::Request::Attach { ioas: None }, &[])?, iommu::Reply::Done);
        write_is_blocked(buffer, spare, &memory)
    })
}

/// A user's unmap takes the IOVA from its device at once: the unit had
/// the translation cached, and the write after the unmap is blocked.
pub(super) fn a_users_unmap_takes_the_iova_from_its_device_at_once(buffer: &mut Buffer) -> Outcome {
    with_spare(buffer, |buffer, spare| {
        let (memory, ioas) = warm_up(buffer, spare)?;
        let unmap = iommu::Request::Unmap { ioas, iova: TARGET_IOVA };
        check_eq!(ask(buffer, &unmap, &[])?, iommu::Reply::Done);
        write_is_blocked(buffer, spare, &memory)?;
        let again: iommu::Reply = check_ok!(Cap::at(GROUP).ask(buffer, &unmap, &[], 0));
        check_eq!(again.refusal().map(|(code, _)| code), Some(ErrorCode::NotMapped), "nothing is left mapped there");
        Ok(())
    })
}

/// The same with the frame reused: after the unmap this task frees the
/// frame and takes frames until the same one is back (the forger says
/// where each is), so the old IOVA's cached translation now points at
/// memory allocated anew. The write there is blocked and leaves it as
/// this task filled it.
pub(super) fn a_frame_unmapped_freed_and_taken_again_is_out_of_its_old_iovas_reach(buffer: &mut Buffer) -> Outcome {
    with_spare(buffer, |buffer, spare| {
        let (memory, ioas) = warm_up(buffer, spare)?;
        check_eq!(ask(buffer, &iommu::Request::Unmap { ioas, iova: TARGET_IOVA }, &[])?, iommu::Reply::Done);
        // Unmapped, the frame is no longer pinned, so the forger may pin it
        // to say where it is.
        let physical = check_ok!(canary::physical(buffer, TARGET));
        check_ok!(memory.unmap());
        check_ok!(Cap::<Frame>::at(TARGET).delete());
        Hunt::with(buffer, physical, |buffer, hunt| {
            let Some(again) = hunt.found() else {
                userlib::fail!("the freed frame comes back to the next allocations");
            };
            defmt::info!("  frame {=u64:#x} unmapped, freed, and back as frame {=usize} taken", physical, hunt.taken());
            write_is_blocked(buffer, spare, again)
        })
    })
}

/// Three frames mapped by one `MapRange`, the middle one [`TARGET`] at
/// [`TARGET_IOVA`], which the device reads and writes; one `UnmapRange`
/// takes all three, and the device's next write to the middle is blocked.
pub(super) fn one_range_request_maps_three_frames_and_one_unmaps_them(buffer: &mut Buffer) -> Outcome {
    with_spare(buffer, |buffer, spare| {
        let outcome = range_round_trip(buffer, spare);
        let _ = Cap::<Frame>::at(BEFORE).delete();
        let _ = Cap::<Frame>::at(AFTER).delete();
        outcome
    })
}

fn range_round_trip(buffer: &mut Buffer, spare: &Spare) -> Outcome {
    check_ok!(objects::alloc_frame(BEFORE, 1));
    let frame = check_ok!(objects::alloc_frame(TARGET, 1));
    check_ok!(objects::alloc_frame(AFTER, 1));
    let memory = check_ok!(Mapping::map(own::SPACE, frame, TARGET_VIRT, true));
    let iommu::Reply::Ioas { ioas } = ask(buffer, &iommu::Request::IoasCreate, &[])? else {
        userlib::fail!("an address space");
    };
    let start = TARGET_IOVA - 0x1000;
    let map = iommu::Request::MapRange { ioas, iova: start, writable: true };
    let mapped = ask(buffer, &map, &[BEFORE, TARGET, AFTER])?;
    check_eq!(mapped, iommu::Reply::MappedRange { mapped: 3, pages: 3, refused: None }, "all three, back to back");
    check_eq!(ask(buffer, &iommu::Request::Attach { ioas: Some(ioas) }, &[])?, iommu::Reply::Done);
    check!(fill(&memory, PROBE_BYTES, &pattern));
    spare.read_from(TARGET_IOVA)?;
    check!(fill(&memory, PROBE_BYTES, &|_| 0));
    spare.write_to(TARGET_IOVA)?;
    check!(holds(&memory, PROBE_BYTES, &pattern), "the device read and wrote the middle frame");
    let unmap = iommu::Request::UnmapRange { ioas, iova: start, pages: 3 };
    check_eq!(ask(buffer, &unmap, &[])?, iommu::Reply::UnmappedRange { mappings: 3, pages: 3 });
    defmt::info!("range of 3 frames mapped and unmapped at IOVA {=u64:#x}", start);
    write_is_blocked(buffer, spare, &memory)?;
    check_ok!(memory.unmap());
    Ok(())
}
