//! Fault storms through the service: several devices at once, the unit's overflows counted in `stats`.

use super::*;
use crate::unit::fake::Arrival;

/// The requester ids of 00:03.0, 00:04.0 and the alias 01:00.0 that the
/// edus behind the PCIe-to-PCI bridge use.
const SOURCES: [u16; 3] = [0x0018, 0x0020, 0x0100];

fn stats(rig: &mut Rig) -> (u64, u64) {
    match rig.call(policy(USER, &[Operation::Stats]), Request::Stats, &[]) {
        Reply::Stats { faults, fault_overflows, .. } => (faults, fault_overflows),
        reply => panic!("{reply:?}"),
    }
}

fn log(rig: &mut Rig, group_cap: u64) -> (usize, u64) {
    match rig.call(group_cap, Request::Faults, &[]) {
        Reply::Faults { records, dropped, .. } => (records.len(), dropped),
        reply => panic!("{reply:?}"),
    }
}

#[test]
fn faults_of_several_groups_at_once_overflow_the_unit_and_stats_count_it() {
    let mut rig = Rig::new(QEMU_CAP);
    let user = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    let behind_bridge = rig.claim_group(USER, bdf(1, 2)).expect("assigned");
    for source in SOURCES {
        rig.unit().fault(source, 0x10_0000);
    }
    assert_eq!(rig.unit().outcomes.lost, 2);
    assert_eq!(stats(&mut rig), (1, 1), "stats drains first: one fault seen, one overflow that lost the others");
    assert_eq!(rig.unit().fsts & 3, 0, "PFO cleared");
    assert_eq!(log(&mut rig, user), (0, 0), "00:03.0's fault was the one recorded");
    assert_eq!(log(&mut rig, behind_bridge), (0, 0), "a lost fault is in no log");
    rig.unit().fault(SOURCES[1], 0x10_0000);
    assert_eq!(log(&mut rig, user), (1, 0), "recording resumed");
    assert_eq!(stats(&mut rig), (2, 1));
}

#[test]
fn an_overflow_during_a_drain_is_counted_and_recording_resumes() {
    let mut rig = Rig::new(QEMU_CAP);
    let user = rig.claim_group(USER, bdf(0, 4)).expect("assigned");
    rig.unit().fault(SOURCES[1], 0x10_0000);
    rig.unit().arrivals.push_back(Arrival { after: 0x228, source: SOURCES[2], address: 0x10_0000 });
    let drain = rig.service.drain_faults(0);
    assert_eq!((drain.records, drain.overflows, drain.unfinished), (1, 1, false));
    assert_eq!(stats(&mut rig), (1, 1));
    rig.unit().fault(SOURCES[2], 0x10_0000);
    rig.unit().fault(SOURCES[1], 0x20_0000);
    assert_eq!(stats(&mut rig), (2, 2), "the bridge's fault recorded, 00:04.0's lost to a second overflow");
    assert_eq!(log(&mut rig, user), (1, 0));
}
