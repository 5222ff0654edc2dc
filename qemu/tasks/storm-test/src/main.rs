//! Concurrent storms, run in QEMU: four groups' devices faulting at once, and an MSI flood beside other groups.
//!
//! The task owns four groups (00:04.0, 00:06.0, 00:07.0, and 01:01.0's
//! behind the PCIe-to-PCI bridge) and leaves them blocked. Each round it
//! starts a write on all four devices back to back, so QEMU's edu runs the
//! four transfers in the same virtual millisecond and the four faults
//! reach the unit together; QEMU 7.2's unit has one fault recording
//! register, so the first is recorded and the others overflow it
//! (FSTS.PFO). The IOMMU server must count every overflow, and the
//! trusted driver (edu-dma, 00:03.0) must complete a DMA round trip in the
//! middle of it. The MSI cases (`flood`) come after: one device's
//! messages counted and timed, then a flood by another task (`flooder`)
//! while other groups' drivers do DMA round trips. The `rounds` and
//! `messages` parameters size it (the soak setting multiplies them).
#![no_std]
#![no_main]

mod flood;

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use edu::{DEVICE_BUFFER, Edu};
use edu_api as edu_protocol;
use iommu_api as iommu;
use iommu_api::FAULTS_PER_REPLY;
use iommu_api::client::group;
use userlib::testkit::prelude::*;

userlib::cap_slot!(IOMMU: Endpoint = "iommu");
userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::cap_slot!(EDU_DMA: Endpoint = "edu-dma");
userlib::cap_slot!(FLOODER: Endpoint = "flooder");
userlib::cap_slot!(STOP: Notification = "flood-stop");
userlib::entry!(main);

/// The storm's devices, each alone in its group but 01:01.0, whose group
/// is its PCIe-to-PCI bridge's (no DMA driver is bound there).
const STORM: [Bdf; 4] = [Bdf::at(0, 4, 0), Bdf::at(0, 6, 0), Bdf::at(0, 7, 0), Bdf::at(1, 1, 0)];
/// The requester id each one's DMA carries: 01:01.0's is its bridge's
/// alias, 01:00.0. Four different ids, so no fault collapses into another.
const SOURCES: [Bdf; 4] = [STORM[0], STORM[1], STORM[2], Bdf::from_devfn(1, 0)];
/// Devices in the storm.
const DEVICES: u64 = STORM.len() as u64;
/// Slots: each device's grant window (four), group capabilities, the
/// notifications their completions are bound to, then `flood`'s.
const WINDOW: u32 = 64;
const GROUPS: u32 = 80;
const DONE: u32 = 84;
const RAISED: u32 = 88;
const FRAME: u32 = 89;
/// Where device `n`'s BAR0 (1 MiB) is mapped.
const BAR_VIRT: u64 = 0x2000_0000;
const BAR_SPAN: u64 = 0x10_0000;
/// An IOVA nothing is mapped at: the groups are blocked anyway.
const BLOCKED_IOVA: u64 = 0x10_0000;

/// Each device's BAR0 and interrupt slots, from its grant.
static GRANTS: [[AtomicU32; 2]; 4] = [const { [AtomicU32::new(0), AtomicU32::new(0)] }; 4];
/// Faults the IOMMU server saw in the storm.
static STORM_SEEN: AtomicU64 = AtomicU64::new(0);

fn main() -> u64 {
    let made = (0..DEVICES as u32).all(|n| objects::create_notification(DONE + n).is_ok())
        && objects::create_notification(RAISED).is_ok()
        && objects::alloc_frame(FRAME, 1).is_ok();
    if !made {
        return testkit::setup_failed("no notifications or frame (the policy must allow six objects)");
    }
    testkit::run(userlib::cases![
        four_groups_faulting_at_once_overflow_the_unit_and_every_overflow_is_counted,
        the_unit_records_again_after_the_storm_and_every_log_adds_up,
        flood::every_msi_of_a_device_is_counted_and_costs_the_kernel_little,
        flood::during_an_msi_flood_other_groups_round_trips_stay_within_a_time_slice,
        flood::the_flood_is_counted_to_the_last_message
    ])
}

// ----- helpers -----

/// The IOMMU server's fault figures: faults seen and overflows of the
/// unit's records, since boot (`stats` drains the unit first).
fn figures(buffer: &mut Buffer) -> Option<(u64, u64)> {
    let stats = iommu::client::stats(IOMMU.get(), buffer).ok()?;
    Some((stats.faults, stats.fault_overflows))
}

/// The trusted driver's DMA round trip; true if the bytes came back.
fn trusted_copy(buffer: &mut Buffer, seed: u8) -> bool {
    let copy = edu_protocol::Request::Copy { len: 256, seed };
    matches!(
        EDU_DMA.get().ask::<_, edu_protocol::Reply>(buffer, &copy, &[], 0),
        Ok(edu_protocol::Reply::Copied { matched: true, .. })
    )
}

/// Claims storm device `n`'s group (left blocked: no address space) and
/// acquires the device with its MSI, bus mastering on.
fn set_up(buffer: &mut Buffer, n: usize) -> Result<(), ErrorCode> {
    let device = STORM[n];
    group::claim(IOMMU.get(), buffer, device, GROUPS + n as u32).map_err(|refused| refused.code)?;
    let window = WINDOW + 4 * n as u32;
    let granted = pci_api::client::acquire(PCI.get(), buffer, device, window).map_err(|refused| refused.code)?;
    let (Some(bar), Some(interrupt)) = (granted.bar(0), granted.interrupt()) else { return Err(ErrorCode::WrongKind) };
    pci_api::client::enable_bus_mastering(PCI.get(), buffer, device).map_err(|refused| refused.code)?;
    GRANTS[n][0].store(bar, Ordering::Relaxed);
    GRANTS[n][1].store(interrupt, Ordering::Relaxed);
    Ok(())
}

/// Storm device `n`, its registers mapped and its completion bound to its
/// own notification.
fn open(n: usize) -> Result<Edu, ErrorCode> {
    let [bar, interrupt] = [0, 1].map(|at| GRANTS[n][at].load(Ordering::Relaxed));
    Edu::new(Cap::at(bar), Cap::at(interrupt), Cap::at(DONE + n as u32), BAR_VIRT + n as u64 * BAR_SPAN)
}

/// Runs `case` with every storm device open, and closes them whatever its
/// outcome, so a failed case leaves the next ones a clean start.
fn with_storm_devices(case: impl FnOnce(&[Edu; 4]) -> Outcome) -> Outcome {
    match [0, 1, 2, 3].map(open) {
        [Ok(a), Ok(b), Ok(c), Ok(d)] => {
            let devices = [a, b, c, d];
            let outcome = case(&devices);
            devices.into_iter().for_each(Edu::close);
            outcome
        }
        opened => {
            for result in opened {
                match result {
                    Ok(device) => device.close(),
                    Err(code) => defmt::error!("  a storm device cannot be opened: {}", code),
                }
            }
            Err(testkit::Failure { file: file!(), line: line!() })
        }
    }
}

/// Storm device `n`'s whole fault log: records kept and dropped, and
/// whether every record is a write by the device's requester id.
fn log(buffer: &mut Buffer, n: usize) -> Option<(u64, u64, bool)> {
    let (mut records, mut dropped, mut theirs) = (0, 0, true);
    loop {
        let reply = Cap::<Endpoint>::at(GROUPS + n as u32).ask(buffer, &iommu::Request::Faults, &[], 0).ok()?;
        let iommu::Reply::Faults { records: batch, remaining, dropped: lost } = reply else { return None };
        records += batch.len() as u64;
        dropped += lost;
        theirs &= batch.iter().all(|fault| fault.source == SOURCES[n] && fault.write);
        if remaining == 0 || batch.len() < FAULTS_PER_REPLY {
            return Some((records, dropped, theirs));
        }
    }
}

// ----- the fault storm -----

fn four_groups_faulting_at_once_overflow_the_unit_and_every_overflow_is_counted(buffer: &mut Buffer) -> Outcome {
    let rounds = boot::parameter("rounds", 10);
    for n in 0..STORM.len() {
        check_ok!(set_up(buffer, n));
    }
    with_storm_devices(|devices| storm(buffer, devices, rounds))
}

/// `rounds` rounds of the storm on `devices`.
fn storm(buffer: &mut Buffer, devices: &[Edu; 4], rounds: u64) -> Outcome {
    let (mut seen, mut overflows, mut overflowed_rounds) = (0, 0, 0);
    for round in 0..rounds {
        let Some(before) = figures(buffer) else { userlib::fail!("the IOMMU server's stats") };
        // Back to back: QEMU's edu runs a transfer 100 ms of virtual time
        // after its start, rounded to the millisecond, so all four run in
        // one pass of QEMU's timers and fault before the server can drain.
        // The first started is the first to fault: each round another.
        for step in 0..STORM.len() {
            let device = &devices[(step + round as usize) % STORM.len()];
            check_ok!(device.start_notified(DEVICE_BUFFER, BLOCKED_IOVA + (round % 16) * 0x1000, 8, true));
        }
        // The trusted driver's first transfer starts while those four are
        // pending, and its second runs after them.
        check!(trusted_copy(buffer, round as u8), "the trusted driver's DMA completes during the storm");
        for device in devices {
            check_ok!(device.finish());
        }
        let Some(after) = figures(buffer) else { userlib::fail!("the IOMMU server's stats") };
        let (round_seen, round_overflows) = (after.0.saturating_sub(before.0), after.1.saturating_sub(before.1));
        // Exact, whatever the timing: the unit starts each round drained, so
        // the first fault is recorded; every fault not recorded was lost to
        // an overflow, and every overflow lost at least one of this round's.
        check!(round_seen >= 1, "the first fault of a round finds the record free");
        check!(round_seen + round_overflows <= DEVICES, "each overflow hid at least one fault");
        check!(round_seen == DEVICES || round_overflows >= 1, "no fault goes missing without an overflow counted");
        seen += round_seen;
        overflows += round_overflows;
        overflowed_rounds += u64::from(round_overflows > 0);
    }
    // Timing decides how many rounds overflow (all four faults in one
    // virtual millisecond: the usual case, one fault seen and one overflow
    // a round); that none would is not credible and means the storm did
    // not storm.
    check!(overflowed_rounds >= 1, "the storm overflowed the unit's records");
    STORM_SEEN.store(seen, Ordering::Relaxed);
    // This task knows how many faults it caused; the server cannot: the
    // unit keeps no trace of a lost fault but the overflow.
    defmt::info!(
        "  {=u64} rounds of {=u64} faults at once: {=u64} seen, {=u64} lost, {=u64} overflows counted (in {=u64} rounds)",
        rounds,
        DEVICES,
        seen,
        rounds * DEVICES - seen,
        overflows,
        overflowed_rounds
    );
    Ok(())
}

fn the_unit_records_again_after_the_storm_and_every_log_adds_up(buffer: &mut Buffer) -> Outcome {
    with_storm_devices(|devices| lone_fault(buffer, devices))
}

/// One fault alone, and then every group's log.
fn lone_fault(buffer: &mut Buffer, devices: &[Edu; 4]) -> Outcome {
    let Some(before) = figures(buffer) else { userlib::fail!("the IOMMU server's stats") };
    check_ok!(devices[1].start_notified(DEVICE_BUFFER, BLOCKED_IOVA, 8, true));
    check_ok!(devices[1].finish());
    let Some(after) = figures(buffer) else { userlib::fail!("the IOMMU server's stats") };
    let counted = (after.0.saturating_sub(before.0), after.1.saturating_sub(before.1));
    check_eq!(counted, (1, 0), "a lone fault is recorded, and no overflow was left set");
    let mut logged = 0;
    for (n, device) in STORM.iter().enumerate() {
        let Some((records, dropped, theirs)) = log(buffer, n) else { userlib::fail!("a group's fault log") };
        check!(theirs, "each group's log holds only its device's writes");
        defmt::info!("  {}: {=u64} faults in its log, {=u64} dropped from it", device, records, dropped);
        logged += records + dropped;
    }
    check_eq!(logged, STORM_SEEN.load(Ordering::Relaxed) + 1, "the logs hold (or count) every fault the server saw");
    check!(trusted_copy(buffer, 0x77), "the trusted driver's DMA completes after the storm");
    Ok(())
}
