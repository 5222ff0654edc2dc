//! Memory canaries: the bytes a blocked DMA was aimed at are shown unchanged, not only its fault logged.
//!
//! Some targets are not this task's to read, or not to know the address
//! of: another task's frame (the trusted helper `irq-forger` keeps one
//! filled with [`CANARY`] and says where it is and whether it changed), a
//! frame freed and taken again (the forger says where a frame is, so this
//! task knows it got the same one back), and a trusted driver's buffer
//! (the edu servers fill and check their own: `fill-buffer`,
//! `check-buffer`). The kernel image is checked by the kernel itself
//! when the system ends; the scenario requires its "kernel image
//! unchanged since boot".

use capabilities::abi::PAGE_SIZE;
use edu_api as edu;
use forger_api::Op;
use iommu_api::OwnerReport;
use userlib::testkit::prelude::*;

use super::{EDU_USER, EDU_USER_TASK, PROBE_BYTES, SLEEP, USER, ask_edu, edu_faults, owner, stats};

userlib::cap_slot!(FORGER: Endpoint = "forger");
userlib::cap_slot!(EDU_USER_KILL: Task = "edu-user-task");

/// Every byte of the forger's frame, and of frames this task fills to
/// catch a write.
pub(super) const CANARY: u8 = 0xc3;
/// Slots for frames taken while looking for one that came back, and
/// where they are mapped.
const HUNT: core::ops::Range<u32> = 80..128;
const HUNT_VIRT: u64 = 0x2b00_0000;
/// The frame this task lends the owner it kills, and where it is mapped:
/// in the same 2 MiB as the hunt's, so one page table serves both.
const PROBE: u32 = 77;
const PROBE_VIRT: u64 = HUNT_VIRT + 0x10_0000;
/// Round trips (a read and a write each) through a mapping before it
/// changes, so the unit holds the translation in its IOTLB.
const WARM_ROUNDS: u8 = 3;
/// QEMU's edu runs a transfer this long after it starts (virtual µs).
const EDU_DELAY_US: u64 = 100_000;

fn forge(buffer: &mut Buffer, op: Op, a: u64, send: &[u32]) -> Result<u64, ErrorCode> {
    forger_api::client::call(FORGER.get(), buffer, op, [a, 0, 0], send)
}

/// The forger's frame, every byte [`CANARY`] again: its physical address.
pub(super) fn other_tasks_frame(buffer: &mut Buffer) -> Result<u64, ErrorCode> {
    forge(buffer, Op::FillFrame, u64::from(CANARY), &[])
}

/// How many bytes of the forger's frame are no longer [`CANARY`].
pub(super) fn other_tasks_frame_changed(buffer: &mut Buffer) -> Result<u64, ErrorCode> {
    forge(buffer, Op::FrameDiffers, u64::from(CANARY), &[])
}

/// Where frame capability `slot` of this task is.
pub(super) fn physical(buffer: &mut Buffer, slot: u32) -> Result<u64, ErrorCode> {
    forge(buffer, Op::WhereIs, 0, &[slot])
}

/// Byte `at` of warm-up round `round`'s pattern.
fn warm_pattern(round: u8, at: u64) -> u8 {
    (at as u8).wrapping_mul(7).wrapping_add(round.wrapping_mul(0x35))
}

/// Writes `value(at)` at each of the first `len` bytes.
pub(super) fn fill(memory: &Mapping<Frame>, len: u64, value: &dyn Fn(u64) -> u8) -> bool {
    (0..len).all(|at| memory.write8(at, value(at)).is_some())
}

/// Whether each of the first `len` bytes is `value(at)`.
pub(super) fn holds(memory: &Mapping<Frame>, len: u64, value: &dyn Fn(u64) -> u8) -> bool {
    (0..len).all(|at| memory.read8(at) == Some(value(at)))
}

/// Maps a frame where [`Hunt`] and the owner-killed case map theirs and
/// gives it back, so the page table they need exists (the kernel keeps
/// it with this task's address space) before the kernel's figures are
/// taken.
pub(super) fn make_page_table() -> Result<(), ErrorCode> {
    let frame = objects::alloc_frame(PROBE, 1)?;
    let mapped = Mapping::map(own::SPACE, frame, PROBE_VIRT, true).and_then(Mapping::unmap);
    frame.delete().and(mapped)
}

/// Frames taken one at a time, each mapped, until one lies at a wanted
/// physical address: a task allocating after a frame was freed.
pub(super) struct Hunt {
    taken: heapless::Vec<(u32, Mapping<Frame>), { HUNT.end as usize - HUNT.start as usize }>,
    found: Option<usize>,
}

impl Hunt {
    /// Takes frames until one is at `wanted` or the slots run out, runs
    /// `then` on them, and gives every frame back whatever came of it.
    pub(super) fn with(buffer: &mut Buffer, wanted: u64, then: impl FnOnce(&mut Buffer, &Hunt) -> Outcome) -> Outcome {
        let mut hunt = Self { taken: heapless::Vec::new(), found: None };
        let outcome = hunt.take_until(buffer, wanted).and_then(|()| then(buffer, &hunt));
        outcome.and(hunt.release())
    }

    fn take_until(&mut self, buffer: &mut Buffer, wanted: u64) -> Outcome {
        for slot in HUNT {
            let frame = check_ok!(objects::alloc_frame(slot, 1));
            let virt = HUNT_VIRT + u64::from(slot - HUNT.start) * PAGE_SIZE;
            let memory = Mapping::map(own::SPACE, frame, virt, true);
            let at = physical(buffer, slot);
            let Ok(memory) = memory else {
                let _ = Cap::<Frame>::at(slot).delete();
                userlib::fail!("the frame taken is mapped");
            };
            // There is a slot per entry.
            let _ = self.taken.push((slot, memory));
            if check_ok!(at) == wanted {
                self.found = Some(self.taken.len() - 1);
                break;
            }
        }
        Ok(())
    }

    /// The frame at the wanted address, if it came back.
    pub(super) fn found(&self) -> Option<&Mapping<Frame>> {
        self.found.and_then(|index| self.taken.get(index)).map(|(_, memory)| memory)
    }

    /// How many frames were taken.
    pub(super) fn taken(&self) -> usize {
        self.taken.len()
    }

    /// Every frame taken.
    fn frames(&self) -> impl Iterator<Item = &Mapping<Frame>> {
        self.taken.iter().map(|(_, memory)| memory)
    }

    /// Unmaps and deletes every frame.
    fn release(self) -> Outcome {
        let mut released = true;
        for (slot, memory) in self.taken {
            released &= memory.unmap().is_ok() && Cap::<Frame>::at(slot).delete().is_ok();
        }
        check!(released, "every frame taken is given back");
        Ok(())
    }
}

/// A transfer left in flight by an owner killed at once: what the next
/// allocations show, and the fault the transfer made, if any.
pub(super) struct InFlight {
    /// The server's fault count when the transfer started.
    faults_before: u64,
}

/// This task lends edu-user a frame, has its device read and write it
/// through its IOVA round after round, and deletes its own capability:
/// only edu-user's mapping keeps the frame. edu-user starts its device
/// writing there (QEMU runs the transfer 100 ms later) and is killed at
/// once. This task then takes frames until the dead owner's comes back,
/// which happens only once edu-user's group is no longer its, fills it
/// and every other frame it took before the transfer can run, and finds
/// them all as it filled them once the transfer is over.
pub(super) fn kill_the_owner_mid_transfer(buffer: &mut Buffer) -> Result<InFlight, Failure> {
    let frame = check_ok!(objects::alloc_frame(PROBE, 1));
    let physical = check_ok!(physical(buffer, PROBE));
    let memory = check_ok!(Mapping::map(own::SPACE, frame, PROBE_VIRT, true));
    let reply: edu::Reply = check_ok!(EDU_USER.get().ask(buffer, &edu::Request::MapLent, &[PROBE], 0));
    let edu::Reply::Buffer { iova } = reply else {
        testkit::refusal(&reply);
        userlib::fail!("edu-user maps the frame");
    };
    for round in 0..WARM_ROUNDS {
        let pattern = |at| warm_pattern(round, at);
        check!(fill(&memory, PROBE_BYTES, &pattern));
        check_eq!(
            check_ok!(ask_edu(EDU_USER.get(), buffer, &edu::Request::DmaAt { iova, to_device: true })),
            edu::Reply::Done
        );
        check!(fill(&memory, PROBE_BYTES, &|_| 0));
        check_eq!(
            check_ok!(ask_edu(EDU_USER.get(), buffer, &edu::Request::DmaAt { iova, to_device: false })),
            edu::Reply::Done
        );
        check!(holds(&memory, PROBE_BYTES, &pattern), "edu-user's device read the frame and wrote it back");
    }
    check_ok!(memory.unmap());
    check_ok!(Cap::<Frame>::at(PROBE).delete());
    let _ = edu_faults(EDU_USER.get(), buffer);
    let faults_before = check_ok!(stats(buffer).map(|s| s.faults).ok_or(ErrorCode::Malformed));
    let started = syscall::now();
    check_eq!(check_ok!(ask_edu(EDU_USER.get(), buffer, &edu::Request::Start { iova })), edu::Reply::Done);
    check_ok!(EDU_USER_KILL.get().kill());
    Hunt::with(buffer, physical, |buffer, hunt| {
        let Some(again) = hunt.found() else {
            userlib::fail!("the dead owner's frame comes back to the next allocations");
        };
        check!(
            owner(buffer, USER) != Some(OwnerReport::User { task: EDU_USER_TASK }),
            "the frame came back only once edu-user's group was no longer its"
        );
        check!(fill(again, PAGE_SIZE, &|_| CANARY));
        let filled = syscall::now().saturating_sub(started);
        defmt::info!(
            "  the dead owner's frame {=u64:#x} back as frame {=usize} taken, filled {=u64} us after its transfer started",
            physical,
            hunt.taken(),
            filled
        );
        check!(filled < EDU_DELAY_US, "before the transfer could run");
        for memory in hunt.frames() {
            check!(fill(memory, PAGE_SIZE, &|_| CANARY));
        }
        let _ = Cap::<Notification>::at(SLEEP).wait(0, 3 * EDU_DELAY_US);
        for memory in hunt.frames() {
            check!(holds(memory, PAGE_SIZE, &|_| CANARY), "no frame taken after the death was written");
        }
        Ok(())
    })?;
    Ok(InFlight { faults_before })
}

impl InFlight {
    /// The transfer faulted at most once (blocked by the unit while the
    /// group was blocked), or not at all (dropped by the device: the PCI
    /// server had turned its bus mastering off).
    pub(super) fn faulted_at_most_once(self, buffer: &mut Buffer) -> Outcome {
        let now = check_ok!(stats(buffer).map(|s| s.faults).ok_or(ErrorCode::Malformed));
        let faults = now.saturating_sub(self.faults_before);
        match faults {
            0 => defmt::info!("  the transfer never reached the IOMMU: bus mastering was off by then"),
            _ => defmt::info!("  the transfer was blocked by the IOMMU: {=u64} fault", faults),
        }
        check!(faults <= 1, "the transfer was the only DMA meanwhile");
        Ok(())
    }
}
