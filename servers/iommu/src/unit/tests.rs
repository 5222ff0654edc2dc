//! Unit sequences against the QEMU register model.

use super::fake::{Arrival, Event, FakeQueue, FakeUnit};
use super::*;
use crate::capability::AddressWidth;
use crate::context::{ContextTables, TranslatedContext};
use crate::domain::DomainId;
use crate::fault::{FaultAccess, FaultReason};
use crate::invalidation::{ContextScope, Descriptor, IotlbScope};
use crate::memory::TablePage;
use crate::pagetable::{Access, PageTableConfig, SecondLevelTable};
use crate::registers::frcd;
use crate::testing::FakePages;

const QEMU_CAP: u64 = 0x00d2_008c_2226_0206;
const QEMU_ECAP: u64 = 0xf0_0f4a;

fn queue_config() -> QueueConfig {
    QueueConfig { base: TablePage::new(0x8_0000).unwrap(), size_order: 0, status_address: 0x9_0000 }
}

/// A unit over the model of QEMU 7.2 with default options, brought up
/// with queued invalidation.
fn qemu_unit() -> RemappingUnit<FakeUnit, FakeQueue> {
    let fake = FakeUnit::new(QEMU_CAP, QEMU_ECAP);
    let queue = fake.queue_memory();
    let mut unit = RemappingUnit::new(fake, 4096).unwrap();
    unit.set_spin_limit(100);
    unit.bring_up(TablePage::new(0x7_0000).unwrap(), Some((queue, queue_config()))).unwrap();
    unit
}

fn violations(unit: &mut RemappingUnit<FakeUnit, FakeQueue>) -> Vec<String> {
    unit.registers().violations.clone()
}

#[test]
fn bring_up_follows_the_qemu_sequence() {
    let mut unit = qemu_unit();
    assert_eq!(unit.version(), (1, 0));
    let fake = unit.registers();
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
    let setup: Vec<Event> = fake.events.iter().filter(|event| !matches!(event, Event::Queued(_))).cloned().collect();
    assert_eq!(
        setup[..5],
        [
            Event::Write64(0x20, 0x7_0000),
            Event::Write32(0x18, 0x4000_0000),
            Event::Gcmd(0x4000_0000),
            Event::Write64(0x88, 0),
            Event::Write64(0x90, 0x8_0000),
        ]
    );
    assert_eq!(setup[5..7], [Event::Write32(0x18, 0x0400_0000), Event::Gcmd(0x0400_0000)]);
    let queued: Vec<Descriptor> = fake
        .events
        .iter()
        .filter_map(|event| if let Event::Queued(descriptor) = event { Some(*descriptor) } else { None })
        .collect();
    assert_eq!(queued.len(), 3);
    assert_eq!(queued[0], Descriptor::context(ContextScope::Global));
    assert_eq!(queued[1].low & 0xff, 0xd2, "global IOTLB with read and write draining");
    assert_eq!(queued[2].kind(), 5);
    assert!(!unit.translation_enabled(), "bring-up leaves translation off");
}

#[test]
fn translation_is_enabled_one_command_bit_at_a_time() {
    let mut unit = qemu_unit();
    unit.enable_translation().unwrap();
    assert!(unit.translation_enabled());
    assert_eq!(unit.registers().events.last(), Some(&Event::Gcmd(0x8400_0000)), "QIE kept, TE added");
    unit.set_root_table(TablePage::new(0x6_0000).unwrap()).unwrap();
    assert_eq!(unit.registers().events.last(), Some(&Event::Gcmd(0xc400_0000)), "SRTP with TE and QIE kept");
    unit.disable_translation().unwrap();
    assert_eq!(unit.registers().events.last(), Some(&Event::Gcmd(0x0400_0000)));
    assert!(violations(&mut unit).is_empty(), "{:?}", violations(&mut unit));
}

#[test]
fn queued_invalidations_and_wrap_around() {
    let mut unit = qemu_unit();
    let caps = *unit.capabilities();
    let domain = DomainId::new(5, &caps).unwrap();
    let page = IotlbScope::Pages { domain, address: 0x4000, order: 2, leaf_only: true };
    for _ in 0..300 {
        let mut invalidation = crate::invalidation::Invalidation::default();
        invalidation.iotlb.push(page).unwrap();
        unit.perform(&invalidation).unwrap();
    }
    let fake = unit.registers();
    let pages = fake.events.iter().filter(|event| matches!(event, Event::Queued(d) if d.kind() == 2)).count();
    assert_eq!(pages, 301, "300 page-selective plus the bring-up's global");
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
}

#[test]
fn the_head_is_read_back_only_after_a_submission_that_did_not_complete() {
    let mut unit = qemu_unit();
    let caps = *unit.capabilities();
    let domain = DomainId::new(5, &caps).unwrap();
    let page = IotlbScope::Pages { domain, address: 0x4000, order: 2, leaf_only: true };
    let reads = unit.registers().head_reads;
    for _ in 0..10 {
        unit.submit(&[Descriptor::iotlb(page, crate::invalidation::Drain::default())]).unwrap();
    }
    assert_eq!(unit.registers().head_reads, reads, "completed submissions leave the queue empty");
    assert!(unit.submit(&[Descriptor { low: 0xf, high: 0 }]).is_err());
    let reads = unit.registers().head_reads;
    unit.submit(&[]).unwrap();
    unit.submit(&[]).unwrap();
    assert_eq!(unit.registers().head_reads, reads, "a recovered queue completed its batch too");
    assert!(violations(&mut unit).is_empty(), "{:?}", violations(&mut unit));
}

#[test]
fn a_refused_descriptor_is_reported_and_the_queue_recovers() {
    let mut unit = qemu_unit();
    let bad = Descriptor { low: 0xf, high: 0 };
    assert_eq!(unit.submit(&[bad]), Err(UnitError::InvalidDescriptor { slot: 3 }));
    assert_eq!(unit.registers().fsts & crate::registers::fsts::IQE, 0);
    unit.invalidate_all().unwrap();
    assert!(violations(&mut unit).is_empty(), "{:?}", violations(&mut unit));
}

#[test]
fn register_invalidation_is_refused_while_queued_invalidation_is_on() {
    let mut unit = qemu_unit();
    assert_eq!(unit.invalidate_context_register(ContextScope::Global), Err(UnitError::QueuedInvalidationActive));
    assert_eq!(unit.invalidate_iotlb_register(IotlbScope::Global), Err(UnitError::QueuedInvalidationActive));
    let memory = unit.disable_queued_invalidation().unwrap();
    assert!(memory.is_some());
    unit.invalidate_context_register(ContextScope::Global).unwrap();
    assert!(violations(&mut unit).is_empty(), "{:?}", violations(&mut unit));
}

#[test]
fn units_without_queued_invalidation_use_registers() {
    let fake = FakeUnit::new(QEMU_CAP, QEMU_ECAP & !2);
    let mut unit: RemappingUnit<FakeUnit, NoQueue> = RemappingUnit::new(fake, 4096).unwrap();
    unit.bring_up(TablePage::new(0x7_0000).unwrap(), Some((NoQueue, queue_config()))).unwrap();
    assert!(!unit.queued_invalidation());
    let domain = DomainId::new(9, unit.capabilities()).unwrap();
    unit.invalidate_iotlb_register(IotlbScope::Pages { domain, address: 0x20_0000, order: 9, leaf_only: false })
        .unwrap();
    let fake = unit.registers();
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
    let register_events: Vec<&Event> = fake
        .events
        .iter()
        .filter(|event| matches!(event, Event::ContextRegister(_) | Event::IotlbRegister { .. }))
        .collect();
    assert_eq!(
        register_events,
        [
            &Event::ContextRegister(0xa000_0000_0000_0000),
            &Event::IotlbRegister { address: 0, command: 0x9003_0000_0000_0000 },
            &Event::IotlbRegister { address: 0x20_0009, command: 0xb003_0009_0000_0000 },
        ]
    );
    let iva_then_command = fake.events.iter().position(|event| *event == Event::Write64(0xf0, 0x20_0009)).unwrap();
    assert_eq!(fake.events[iva_then_command + 1], Event::Write64(0xf8, 0xb003_0009_0000_0000));
}

#[test]
fn write_buffer_flushes_only_on_rwbf_units() {
    let fake = FakeUnit::new(QEMU_CAP | 1 << 4, QEMU_ECAP & !2);
    let mut unit: RemappingUnit<FakeUnit, NoQueue> = RemappingUnit::new(fake, 4096).unwrap();
    unit.flush_write_buffer().unwrap();
    assert_eq!(unit.registers().events.last(), Some(&Event::Gcmd(0x0800_0000)));
    let mut plain = qemu_unit();
    let before = plain.registers().events.len();
    plain.flush_write_buffer().unwrap();
    assert_eq!(plain.registers().events.len(), before);
}

#[test]
fn protected_memory_regions_are_lifted_after_translation_is_on() {
    let fake = FakeUnit::new(QEMU_CAP | 1 << 5, QEMU_ECAP & !2);
    let mut unit: RemappingUnit<FakeUnit, NoQueue> = RemappingUnit::new(fake, 4096).unwrap();
    unit.enable_translation().unwrap();
    let events = &unit.registers().events;
    assert_eq!(events[events.len() - 2..], [Event::Gcmd(0x8000_0000), Event::Write32(0x64, 0)]);
    assert!(unit.registers().violations.is_empty());
}

#[test]
fn a_previous_owners_queue_is_turned_off_before_bring_up() {
    let mut fake = FakeUnit::new(QEMU_CAP, QEMU_ECAP);
    fake.gsts = crate::registers::gsts::QIES;
    let queue = fake.queue_memory();
    let mut unit = RemappingUnit::new(fake, 4096).unwrap();
    unit.bring_up(TablePage::new(0x7_0000).unwrap(), Some((queue, queue_config()))).unwrap();
    assert_eq!(unit.registers().events[1], Event::Gcmd(0));
    assert!(unit.registers().violations.is_empty(), "{:?}", unit.registers().violations);
}

#[test]
fn a_hung_unit_times_out() {
    let mut fake = FakeUnit::new(QEMU_CAP, QEMU_ECAP);
    fake.stuck = true;
    let mut unit: RemappingUnit<FakeUnit, NoQueue> = RemappingUnit::new(fake, 4096).unwrap();
    unit.set_spin_limit(10);
    assert_eq!(
        unit.set_root_table(TablePage::new(0x7000).unwrap()),
        Err(UnitError::Timeout { operation: "set the root table pointer" })
    );
}

#[test]
fn bad_capabilities_and_queue_configs_are_refused() {
    let fake = FakeUnit::new(QEMU_CAP, QEMU_ECAP);
    assert!(matches!(RemappingUnit::<_, NoQueue>::new(fake, 0x200), Err(UnitError::Capability(_))));
    let fake = FakeUnit::new(QEMU_CAP, QEMU_ECAP);
    let queue = fake.queue_memory();
    let mut unit = RemappingUnit::new(fake, 4096).unwrap();
    let mut config = queue_config();
    config.size_order = 8;
    assert_eq!(unit.enable_queued_invalidation(queue, config), Err(UnitError::QueueConfig));
    assert_eq!(unit.submit(&[]), Err(UnitError::Unsupported { feature: "queued invalidation enabled" }));
    let fake = FakeUnit::new(QEMU_CAP, QEMU_ECAP & !2);
    let queue = fake.queue_memory();
    let mut unit = RemappingUnit::new(fake, 4096).unwrap();
    assert_eq!(
        unit.enable_queued_invalidation(queue, queue_config()),
        Err(UnitError::Unsupported { feature: "queued invalidation" })
    );
}

#[test]
fn faults_are_decoded_and_cleared_with_the_right_widths() {
    let mut unit = qemu_unit();
    let high = frcd::F | frcd::T1 | 2 << 32 | 0x0018;
    unit.registers().inject_fault(0, 0x4000, high);
    unit.registers().fsts |= crate::registers::fsts::PFO;
    let mut seen = Vec::new();
    let drain = unit.drain_faults(|record| seen.push(record)).unwrap();
    assert_eq!(drain, FaultDrain { records: 1, overflows: 1, unfinished: false });
    assert_eq!(seen[0].reason, FaultReason::CONTEXT_NOT_PRESENT);
    assert_eq!(seen[0].access, FaultAccess::Read);
    assert_eq!(seen[0].source.source_id(), 0x0018);
    let fake = unit.registers();
    assert!(fake.events.contains(&Event::Write64(0x228, frcd::F)));
    assert!(fake.events.contains(&Event::Write32(0x34, 1)));
    assert_eq!(fake.fsts & 3, 0, "PFO and PPF clear");
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
    assert_eq!(unit.drain_faults(|_| panic!("no more faults")).unwrap(), FaultDrain::default());
}

#[test]
fn faults_of_several_devices_at_once_overflow_the_one_record_and_the_drain_says_so() {
    let mut unit = qemu_unit();
    for source in [0x0020, 0x0030, 0x0038, 0x0100] {
        unit.registers().fault(source, 0x10_0000);
    }
    let outcomes = unit.registers().outcomes;
    assert_eq!((outcomes.recorded, outcomes.lost, outcomes.events), (1, 3, 1), "QEMU 7.2 has one record");
    let mut seen = Vec::new();
    let drain = unit.drain_faults(|record| seen.push(record.source.source_id())).unwrap();
    assert_eq!((drain.records, drain.overflows), (1, 1));
    assert_eq!(seen, [0x0020]);
    assert_eq!(unit.registers().fsts & 3, 0, "PFO and PPF clear");
    unit.registers().fault(0x0038, 0x10_0000);
    assert_eq!(unit.registers().outcomes.events, 2, "recording resumes, with its event");
}

#[test]
fn an_overflow_while_the_records_are_drained_is_cleared_and_reported() {
    let mut unit = qemu_unit();
    unit.registers().fault(0x0020, 0x10_0000);
    // A second device faults just after the drain read the status (no
    // overflow yet) and before it cleared the one record: PFO is set.
    unit.registers().arrivals.push_back(Arrival { after: 0x228, source: 0x0030, address: 0x20_0000 });
    let drain = unit.drain_faults(|_| {}).unwrap();
    assert!(unit.registers().arrivals.is_empty());
    assert_eq!(unit.registers().outcomes.lost, 1);
    assert_eq!(drain, FaultDrain { records: 1, overflows: 1, unfinished: false }, "the lost fault is reported");
    assert_eq!(unit.registers().fsts & 3, 0, "PFO cleared: else nothing is ever recorded again, and no event says so");
    unit.registers().fault(0x0038, 0x10_0000);
    assert_eq!(unit.registers().outcomes.recorded, 2, "the next fault is recorded");
}

#[test]
fn a_device_faulting_as_fast_as_it_is_drained_keeps_the_server_a_bounded_time() {
    let mut unit = qemu_unit();
    unit.registers().fault(0x0020, 0x10_0000);
    // The device faults again at every access to its record: while it is
    // pending (collapsed) and as soon as it is cleared (recorded).
    for _ in 0..100 {
        unit.registers().arrivals.push_back(Arrival { after: 0x228, source: 0x0020, address: 0x10_0000 });
    }
    let drain = unit.drain_faults(|_| {}).unwrap();
    assert!(drain.unfinished, "faults still pending: the caller must come back");
    assert_eq!((drain.records, drain.overflows), (8, 0));
    assert_eq!(unit.registers().outcomes.collapsed, 8);
    assert_eq!(unit.registers().fsts & 2, 2, "one pending");
    unit.registers().arrivals.clear();
    let rest = unit.drain_faults(|_| {}).unwrap();
    assert_eq!(rest, FaultDrain { records: 1, overflows: 0, unfinished: false });
}

#[test]
fn a_status_that_stays_set_with_nothing_to_take_ends_the_drain() {
    let mut unit = qemu_unit();
    // PPF without a record: a unit in a state the specification rules out.
    unit.registers().fsts |= crate::registers::fsts::PPF;
    let drain = unit.drain_faults(|_| panic!("no record")).unwrap();
    assert_eq!(drain, FaultDrain { records: 0, overflows: 0, unfinished: false }, "no coming back for nothing");
}

#[test]
fn fault_event_interrupt_is_programmed_with_32_bit_writes() {
    let mut unit = qemu_unit();
    unit.configure_fault_event(MsiMessage { address: 0xfee0_0000, data: 0x41 });
    unit.mask_fault_event(true);
    let fake = unit.registers();
    let tail: Vec<&Event> = fake.events.iter().rev().take(5).collect();
    assert_eq!(
        tail,
        [
            &Event::Write32(0x38, 1 << 31),
            &Event::Write32(0x38, 0),
            &Event::Write32(0x44, 0),
            &Event::Write32(0x40, 0xfee0_0000),
            &Event::Write32(0x3c, 0x41),
        ]
    );
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
}

#[test]
fn tables_and_unit_together_in_caching_mode() {
    let fake = FakeUnit::new(QEMU_CAP | 1 << 7, QEMU_ECAP);
    let queue = fake.queue_memory();
    let mut unit = RemappingUnit::new(fake, 4096).unwrap();
    let caps = *unit.capabilities();
    let mut pages = FakePages::new(32);
    let mut contexts = ContextTables::new(&mut pages, &caps).unwrap();
    unit.bring_up(contexts.root(), Some((queue, queue_config()))).unwrap();
    let config = PageTableConfig::new(&caps, AddressWidth::Bits39, 39).unwrap();
    let mut table = SecondLevelTable::new(&mut pages, config).unwrap();
    let domain = DomainId::new(1, &caps).unwrap();
    let context = TranslatedContext {
        page_table: table.root(),
        width: AddressWidth::Bits39,
        domain,
        fault_processing_disable: false,
    };
    unit.perform(&contexts.install(&mut pages, 0x0018, context).unwrap()).unwrap();
    let mapped = table.map(&mut pages, 0x10_0000, 0x20_0000, 4, Access::READ_WRITE).unwrap();
    unit.perform(&crate::invalidation::policy::mapped(&caps, domain, mapped.range)).unwrap();
    unit.enable_translation().unwrap();
    let unmapped = table.unmap(&mut pages, 0x10_0000, 4).unwrap();
    let range = crate::range::IovaRange { start: 0x10_0000, pages: 4 };
    unit.perform(&crate::invalidation::policy::unmapped(&caps, domain, range, !unmapped.unlinked.is_empty())).unwrap();
    unit.perform(&contexts.clear(&mut pages, 0x0018)).unwrap();
    let fake = unit.registers();
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
    let kinds: Vec<u8> = fake
        .events
        .iter()
        .filter_map(|event| if let Event::Queued(descriptor) = event { Some(descriptor.kind()) } else { None })
        .collect();
    // bring-up: context, IOTLB, wait; install: context, IOTLB, wait; map:
    // IOTLB, wait; unmap: IOTLB, wait; clear: context, IOTLB, wait.
    assert_eq!(kinds, [1, 2, 5, 1, 2, 5, 2, 5, 2, 5, 1, 2, 5]);
}
