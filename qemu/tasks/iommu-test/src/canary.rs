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

use capabilities::ErrorCode;
use capabilities::abi::PAGE_SIZE;
use edu_api as edu;
use iommu_api as iommu;
use iommu_api::{Fault, OwnerReport};
use userlib::cap::{Cap, Frame, Notification, own};
use userlib::ipc::Buffer;
use userlib::mmio::Mapping;
use userlib::testkit::{self, Failure, Outcome};
use userlib::{check, check_eq, check_ok, objects, syscall};

use super::{
    BAR_VIRT, DONE, EDU_USER, EDU_USER_TASK, GROUP, PCI, PROBE_BYTES, SLEEP, SPARE, USER, WINDOW, ask_edu, ask_iommu,
    blocked_write, claim, edu_faults, owner, release_group, stats, wait_unowned,
};

userlib::cap_slot!(FORGER: Endpoint = "forger");
userlib::cap_slot!(EDU_USER_KILL: Task = "edu-user-task");

/// The forger's operations (qemu/tasks/irq-forger).
const FORGE_FRAME: u64 = 6;
const FORGE_FRAME_DIFFERS: u64 = 7;
const FORGE_WHERE: u64 = 8;
/// Every byte of the forger's frame, and of frames this task fills to
/// catch a write.
pub(super) const CANARY: u8 = 0xc3;
/// A frame whose physical address this task learns, and where it is mapped.
const PROBE: u32 = 77;
const PROBE_VIRT: u64 = 0x2a00_0000;
/// Slots for frames taken while looking for one that came back, and
/// where they are mapped.
const HUNT: core::ops::Range<u32> = 80..128;
const HUNT_VIRT: u64 = 0x2b00_0000;
/// Where 00:06.0's address space maps the frame it unmaps and frees.
const OLD_IOVA: u64 = 0x9000;
/// Round trips (a read and a write each) through a mapping before it
/// changes, so the unit holds the translation in its IOTLB.
const WARM_ROUNDS: u8 = 3;
/// QEMU's edu runs a transfer this long after it starts (virtual µs).
const EDU_DELAY_US: u64 = 100_000;

fn forge(buffer: &mut Buffer, op: u64, a: u64, send: &[u32]) -> Result<u64, ErrorCode> {
    let [status, value]: [u64; 2] = FORGER.get().ask(buffer, &[op, a, 0, 0], send, 0)?;
    match status {
        0 => Ok(value),
        code => Err(ErrorCode::from_code(code).unwrap_or(ErrorCode::Malformed)),
    }
}

/// The forger's frame, every byte [`CANARY`] again: its physical address.
pub(super) fn other_tasks_frame(buffer: &mut Buffer) -> Result<u64, ErrorCode> {
    forge(buffer, FORGE_FRAME, u64::from(CANARY), &[])
}

/// How many bytes of the forger's frame are no longer [`CANARY`].
pub(super) fn other_tasks_frame_changed(buffer: &mut Buffer) -> Result<u64, ErrorCode> {
    forge(buffer, FORGE_FRAME_DIFFERS, u64::from(CANARY), &[])
}

/// Where frame capability `slot` of this task is.
fn physical(buffer: &mut Buffer, slot: u32) -> Result<u64, ErrorCode> {
    forge(buffer, FORGE_WHERE, 0, &[slot])
}

/// Byte `at` of warm-up round `round`'s pattern.
fn warm_pattern(round: u8, at: u64) -> u8 {
    (at as u8).wrapping_mul(7).wrapping_add(round.wrapping_mul(0x35))
}

fn fill(memory: &Mapping<Frame>, len: u64, value: &dyn Fn(u64) -> u8) -> bool {
    (0..len).all(|at| memory.write8(at, value(at)).is_some())
}

fn holds(memory: &Mapping<Frame>, len: u64, value: &dyn Fn(u64) -> u8) -> bool {
    (0..len).all(|at| memory.read8(at) == Some(value(at)))
}

/// Frames taken one at a time, each mapped, until one lies at a wanted
/// physical address: a task allocating after a frame was freed.
struct Hunt {
    taken: heapless::Vec<(u32, Mapping<Frame>), { HUNT.end as usize - HUNT.start as usize }>,
    found: Option<usize>,
}

impl Hunt {
    /// Takes frames until one is at `wanted` or the slots run out.
    fn until(buffer: &mut Buffer, wanted: u64) -> Result<Self, Failure> {
        let mut hunt = Self { taken: heapless::Vec::new(), found: None };
        for slot in HUNT {
            let frame = check_ok!(objects::alloc_frame(slot, 1));
            let at = check_ok!(physical(buffer, slot));
            let virt = HUNT_VIRT + u64::from(slot - HUNT.start) * PAGE_SIZE;
            let memory = check_ok!(Mapping::map(own::SPACE, frame, virt, true));
            // There is a slot per entry.
            let _ = hunt.taken.push((slot, memory));
            if at == wanted {
                hunt.found = Some(hunt.taken.len() - 1);
                break;
            }
        }
        Ok(hunt)
    }

    /// The frame at the wanted address, if it came back.
    fn found(&self) -> Option<&Mapping<Frame>> {
        self.found.and_then(|index| self.taken.get(index)).map(|(_, memory)| memory)
    }

    /// Every frame taken.
    fn frames(&self) -> impl Iterator<Item = &Mapping<Frame>> {
        self.taken.iter().map(|(_, memory)| memory)
    }

    /// Unmaps and deletes every frame.
    fn release(self) -> Outcome {
        for (slot, memory) in self.taken {
            check_ok!(memory.unmap());
            check_ok!(Cap::<Frame>::at(slot).delete());
        }
        Ok(())
    }
}

/// A request on the group capability in [`GROUP`] that must be done.
fn ask_group(buffer: &mut Buffer, request: &iommu::Request, frames: &[u32]) -> Result<iommu::Reply, Failure> {
    let reply: iommu::Reply = check_ok!(Cap::at(GROUP).ask(buffer, request, frames, 0));
    if testkit::refusal(&reply).is_some() {
        userlib::fail!("the group capability's request is done");
    }
    Ok(reply)
}

/// The faults the group in [`GROUP`] logged since the last look.
fn group_faults(buffer: &mut Buffer) -> heapless::Vec<Fault, 8> {
    match ask_iommu(Cap::at(GROUP), buffer, &iommu::Request::Faults) {
        Ok(iommu::Reply::Faults { records, .. }) => records,
        _ => heapless::Vec::new(),
    }
}

/// 00:06.0's group claimed, the device acquired, mastering the bus.
fn take_spare(buffer: &mut Buffer) -> Result<::edu::Edu, Failure> {
    check_ok!(claim(buffer, SPARE));
    let granted = match pci_api::client::acquire(PCI.get(), buffer, SPARE, WINDOW) {
        Ok(granted) => granted,
        Err(refused) => {
            defmt::error!("  acquire refused ({}): {=str}", refused.code, refused.reason.as_str());
            userlib::fail!();
        }
    };
    let (Some(bar), Some(interrupt)) = (granted.bar(0), granted.interrupt()) else {
        userlib::fail!("the grant has BAR0 and an interrupt");
    };
    check!(pci_api::client::enable_bus_mastering(PCI.get(), buffer, SPARE).is_ok(), "bus mastering on");
    Ok(check_ok!(::edu::Edu::new(Cap::at(bar), Cap::at(interrupt), Cap::at(DONE), BAR_VIRT)))
}

/// The user path of threat 4 with a frame reused: this task maps a frame
/// for its own device (00:06.0), which reads and writes it through that
/// IOVA round after round (the unit's IOTLB holds the translation), then
/// unmaps it and frees it, and takes frames until the same one comes
/// back. The device's write to the old IOVA is blocked, in the group's
/// fault log, and leaves the frame as this task filled it.
pub(super) fn a_frame_unmapped_freed_and_taken_again_is_out_of_its_old_iovas_reach(buffer: &mut Buffer) -> Outcome {
    let device = take_spare(buffer)?;
    let iommu::Reply::Ioas { ioas } = ask_group(buffer, &iommu::Request::IoasCreate, &[])? else {
        userlib::fail!("an address space");
    };
    let frame = check_ok!(objects::alloc_frame(PROBE, 1));
    let physical = check_ok!(physical(buffer, PROBE));
    let map = iommu::Request::Map { ioas, iova: OLD_IOVA, writable: true };
    check!(matches!(ask_group(buffer, &map, &[PROBE])?, iommu::Reply::Mapped { .. }));
    check_eq!(ask_group(buffer, &iommu::Request::Attach { ioas: Some(ioas) }, &[])?, iommu::Reply::Done);
    let memory = check_ok!(Mapping::map(own::SPACE, frame, PROBE_VIRT, true));
    for round in 0..WARM_ROUNDS {
        let pattern = |at| warm_pattern(round, at);
        check!(fill(&memory, PROBE_BYTES, &pattern));
        check_ok!(device.dma(OLD_IOVA, ::edu::DEVICE_BUFFER, PROBE_BYTES, false));
        check!(fill(&memory, PROBE_BYTES, &|_| 0));
        check_ok!(device.dma(::edu::DEVICE_BUFFER, OLD_IOVA, PROBE_BYTES, true));
        check!(holds(&memory, PROBE_BYTES, &pattern), "the device read the frame and wrote it back");
    }
    let unmap = iommu::Request::Unmap { ioas, iova: OLD_IOVA };
    check_eq!(ask_group(buffer, &unmap, &[])?, iommu::Reply::Done);
    check_ok!(memory.unmap());
    check_ok!(Cap::<Frame>::at(PROBE).delete());
    let hunt = Hunt::until(buffer, physical)?;
    let Some(again) = hunt.found() else {
        userlib::fail!("the freed frame comes back to the next allocations");
    };
    let taken = hunt.taken.len();
    defmt::info!("  frame {=u64:#x} unmapped, freed, and back as frame {=usize} taken", physical, taken);
    check!(fill(again, PAGE_SIZE, &|_| CANARY));
    let _ = group_faults(buffer);
    check_ok!(device.dma(::edu::DEVICE_BUFFER, OLD_IOVA, PROBE_BYTES, true));
    check!(holds(again, PAGE_SIZE, &|_| CANARY), "the frame taken again is as this task filled it");
    check!(blocked_write(&group_faults(buffer), SPARE, OLD_IOVA), "the write to the old IOVA is blocked and logged");
    hunt.release()?;
    device.close();
    check!(pci_api::client::release(PCI.get(), buffer, SPARE).is_ok());
    check_ok!(release_group(buffer));
    check!(wait_unowned(buffer, SPARE), "quiesced and back to the default domain");
    Ok(())
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
    let faults_before = check_ok!(stats(buffer).map(|s| s.3).ok_or(ErrorCode::Malformed));
    let started = syscall::now();
    check_eq!(check_ok!(ask_edu(EDU_USER.get(), buffer, &edu::Request::Start { iova })), edu::Reply::Done);
    check_ok!(EDU_USER_KILL.get().kill());
    let hunt = Hunt::until(buffer, physical)?;
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
        hunt.taken.len(),
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
    hunt.release()?;
    Ok(InFlight { faults_before })
}

impl InFlight {
    /// The transfer faulted at most once (blocked by the unit while the
    /// group was blocked), or not at all (dropped by the device: the PCI
    /// server had turned its bus mastering off).
    pub(super) fn faulted_at_most_once(self, buffer: &mut Buffer) -> Outcome {
        let now = check_ok!(stats(buffer).map(|s| s.3).ok_or(ErrorCode::Malformed));
        let faults = now.saturating_sub(self.faults_before);
        match faults {
            0 => defmt::info!("  the transfer never reached the IOMMU: bus mastering was off by then"),
            _ => defmt::info!("  the transfer was blocked by the IOMMU: {=u64} fault", faults),
        }
        check!(faults <= 1, "the transfer was the only DMA meanwhile");
        Ok(())
    }
}
