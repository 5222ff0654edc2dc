//! The MSI cases: one device's messages counted and timed, then a flood beside other groups' drivers.
//!
//! All times are QEMU's virtual time: the machine counts instructions
//! (`-icount shift=0`, one nanosecond each) and skips idle time, so a
//! starved task shows as virtual time the flooder's instructions took,
//! whatever the host's load.

use capabilities::abi::ipc::NONBLOCK;
use userlib::testkit::prelude::*;

use super::*;

/// Where storm device 00:06.0's registers are mapped for the count.
const RAW_VIRT: u64 = 0x3000_0000;
/// The user driver's buffer: mapped here, and at this IOVA in 00:04.0's
/// address space; the bytes go out from its start and come back here.
const FRAME_VIRT: u64 = 0x3100_0000;
const USER_IOVA: u64 = 0x20_0000;
const RETURN_OFFSET: u64 = 0x800;
const LEN: u64 = 256;
/// An edu transfer ends 100 ms of virtual time after its start, in whole
/// milliseconds: at most 101 ms.
const DMA_US: u64 = 101_000;
/// The kernel's time slice (`kernel::QUANTUM_US`): a task woken at the
/// flooder's priority waits at most this long for the flooder's turn to end.
const SLICE_US: u64 = 10_000;
/// What the kernel, the IPC and the drivers add to a round trip (measured
/// well under 1 ms without a flood).
const SLACK_US: u64 = 2_000;
/// Most a message may cost the kernel (measured about 2 µs: entry, count,
/// signal, end of interrupt, back to the task).
const MSI_COST_BOUND_NS: u64 = 20_000;
/// Fewest messages a flood across the round trips must have raised for
/// them to have run during it.
const MIN_FLOOD: u64 = 10_000;

/// The flood's messages: writes to the raise register, arrivals the kernel
/// counted.
static FLOOD: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

fn grants(n: usize) -> [u32; 2] {
    [0, 1].map(|at| GRANTS[n][at].load(Ordering::Relaxed))
}

pub(super) fn every_msi_of_a_device_is_counted_and_costs_the_kernel_little(_buffer: &mut Buffer) -> Outcome {
    let messages = boot::parameter("messages", 1000);
    let [bar, interrupt] = grants(1);
    let registers = check_ok!(Mapping::map(own::SPACE, Cap::<DeviceMemory>::at(bar), RAW_VIRT, true));
    let interrupt = Cap::<Interrupt>::at(interrupt);
    let raised = Cap::<Notification>::at(RAISED);
    check_ok!(interrupt.bind(raised, 1));
    let start = syscall::now();
    for n in 0..messages {
        check!(registers.write32(edu::reg::LIVENESS, n as u32).is_some());
    }
    let quiet = syscall::now().saturating_sub(start);
    let start = syscall::now();
    for _ in 0..messages {
        check!(registers.write32(edu::reg::INTERRUPT_RAISE, 1).is_some());
    }
    let loud = syscall::now().saturating_sub(start);
    // Exact: QEMU delivers the message of a write before the next
    // instruction (with instruction counting an MMIO access ends its
    // block, and pending interrupts are taken between blocks), so none
    // merges with the next in the local APIC.
    check_eq!(u64::from(check_ok!(interrupt.acknowledge())), messages, "the kernel counted every message");
    check_eq!(raised.wait(NONBLOCK, 0), Ok(1), "and woke the task's notification once: the bits coalesce");
    let status = registers.read32(edu::reg::INTERRUPT_STATUS).unwrap_or(0);
    check!(registers.write32(edu::reg::INTERRUPT_ACK, status).is_some());
    let cost = loud.saturating_sub(quiet) * 1000 / messages.max(1);
    defmt::info!(
        "  {=u64} MSIs counted; {=u64} us for the writes that raise them, {=u64} us for as many quiet writes: {=u64} ns a message",
        messages,
        loud,
        quiet,
        cost
    );
    check!(cost <= MSI_COST_BOUND_NS, "a message costs the kernel little");
    check_ok!(registers.unmap());
    Ok(())
}

/// The test task as the user-assigned driver of 00:04.0: its group (left
/// blocked by the storm) attached to an address space of its own with
/// its buffer mapped.
struct UserDriver {
    edu: Edu,
    memory: Mapping<Frame>,
}

impl UserDriver {
    fn attach(buffer: &mut Buffer) -> Result<Self, ErrorCode> {
        let group = Cap::<Endpoint>::at(GROUPS);
        let ask = |buffer: &mut Buffer, request: &iommu::Request, caps: &[u32]| {
            group.ask::<_, iommu::Reply>(buffer, request, caps, 0)
        };
        let iommu::Reply::Ioas { ioas } = ask(buffer, &iommu::Request::IoasCreate, &[])? else {
            return Err(ErrorCode::Malformed);
        };
        let iommu::Reply::Done = ask(buffer, &iommu::Request::Attach { ioas: Some(ioas) }, &[])? else {
            return Err(ErrorCode::Malformed);
        };
        let map = iommu::Request::Map { ioas, iova: USER_IOVA, writable: true };
        let iommu::Reply::Mapped { .. } = ask(buffer, &map, &[FRAME])? else { return Err(ErrorCode::Malformed) };
        let memory = Mapping::map(own::SPACE, Cap::<Frame>::at(FRAME), FRAME_VIRT, true)?;
        Ok(Self { edu: open(0)?, memory })
    }

    /// A pattern to the device and back; the longer transfer's time, and
    /// whether the bytes came back.
    fn round_trip(&self, seed: u8) -> Result<(u64, bool), ErrorCode> {
        let pattern = |at: u64| (at as u8).wrapping_mul(7).wrapping_add(seed);
        for at in 0..LEN {
            self.memory.write8(at, pattern(at)).ok_or(ErrorCode::InvalidArgument)?;
            self.memory.write8(RETURN_OFFSET + at, 0).ok_or(ErrorCode::InvalidArgument)?;
        }
        let start = syscall::now();
        self.edu.dma(USER_IOVA, DEVICE_BUFFER, LEN, false)?;
        let middle = syscall::now();
        self.edu.dma(DEVICE_BUFFER, USER_IOVA + RETURN_OFFSET, LEN, true)?;
        let end = syscall::now();
        let matched = (0..LEN).all(|at| self.memory.read8(RETURN_OFFSET + at) == Some(pattern(at)));
        Ok(((middle - start).max(end - middle), matched))
    }
}

/// The slowest user transfer and the slowest trusted round trip of
/// `rounds` of each; fails the case if bytes do not come back.
fn round_trips(buffer: &mut Buffer, user: &UserDriver, rounds: u64) -> Result<(u64, u64), testkit::Failure> {
    let (mut user_worst, mut trusted_worst) = (0, 0);
    for round in 0..rounds {
        let (took, matched) = check_ok!(user.round_trip(round as u8));
        check!(matched, "the user driver's bytes came back");
        user_worst = user_worst.max(took);
        let start = syscall::now();
        check!(trusted_copy(buffer, round as u8), "the trusted driver's bytes came back");
        trusted_worst = trusted_worst.max(syscall::now() - start);
    }
    Ok((user_worst, trusted_worst))
}

pub(super) fn during_an_msi_flood_other_groups_round_trips_stay_within_a_time_slice(buffer: &mut Buffer) -> Outcome {
    let rounds = boot::parameter("flood-rounds", 2);
    let user = check_ok!(UserDriver::attach(buffer));
    let calm = round_trips(buffer, &user, 1)?;
    let [status, ..]: [u64; 5] = check_ok!(FLOODER.get().ask(buffer, &1u64, &[], 0));
    check_eq!(status, 0, "the flooder set its device up");
    let from = syscall::now();
    let flooded = round_trips(buffer, &user, rounds);
    let to = syscall::now();
    check_ok!(STOP.get().signal());
    let flooded = flooded?;
    let [status, writes, arrivals, start, end]: [u64; 5] = check_ok!(FLOODER.get().ask(buffer, &2u64, &[], 0));
    check_eq!(status, 0);
    check!(start <= from && end >= to, "the flood ran throughout");
    check!(writes >= MIN_FLOOD, "and raised many messages meanwhile");
    FLOOD[0].store(writes, Ordering::Relaxed);
    FLOOD[1].store(arrivals, Ordering::Relaxed);
    defmt::info!(
        "  slowest user transfer {=u64} us calm, {=u64} us flooded; trusted round trip {=u64} us calm, {=u64} us flooded; {=u64} MSIs in {=u64} us",
        calm.0,
        flooded.0,
        calm.1,
        flooded.1,
        writes,
        end - start
    );
    // The user driver runs at the flooder's priority: woken, it waits at
    // most for the flooder's time slice to end. The trusted driver
    // preempts the flooder; only its caller, this task, waits for a slice.
    check!(flooded.0 <= DMA_US + SLICE_US + SLACK_US, "the user driver's DMA waits at most a time slice");
    check!(flooded.1 <= 2 * DMA_US + SLICE_US + SLACK_US, "the trusted driver's round trip waits at most a time slice");
    user.edu.close();
    check_ok!(user.memory.unmap());
    Ok(())
}

pub(super) fn the_flood_is_counted_to_the_last_message(_buffer: &mut Buffer) -> Outcome {
    let [writes, arrivals] = [0, 1].map(|at| FLOOD[at].load(Ordering::Relaxed));
    check!(writes > 0, "the flood ran");
    // Exact for the reason the count of one device's messages is.
    check_eq!(arrivals, writes, "the kernel delivered and counted every message of the flood");
    Ok(())
}
