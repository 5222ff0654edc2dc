//! MSI-X: entries programmed through the server's own table mapping, masked, and freed before the quiesce.

use capabilities::ErrorCode;
use iommu_api as iommu;
use pci_api::{Reply, Request};

use super::*;

/// Physical address of byte `at` of the NVMe-like function's table entry `entry`.
fn entry_at(entry: u64, at: u64) -> u64 {
    NVME_BAR + NVME_MSIX_TABLE + 16 * entry + at
}

/// The NVMe-like function probed by its DMA-capable driver, with remapping on.
fn probed() -> Rig {
    let mut rig = Rig::new();
    rig.world.borrow_mut().iommu.remapping = true;
    let answer = rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    assert!(matches!(answer.reply, Reply::Granted(_)), "{:?}", answer.reply);
    rig
}

fn vectors(rig: &mut Rig, first: u16, count: u8) -> Answer {
    rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &Request::MsixVectors { device: bdf(at::NVME), first, count })
}

fn word(rig: &Rig, address: u64) -> Option<u32> {
    rig.world.borrow().kernel.table_memory.get(&address).copied()
}

#[test]
fn entries_get_remapped_messages_for_the_holder_and_the_rest_stay_masked() {
    let mut rig = probed();
    rig.take_journal();
    let answer = vectors(&mut rig, 1, 2);
    let Reply::Vectors(given) = &answer.reply else { panic!("{:?}", answer.reply) };
    assert_eq!((given.len(), answer.caps.len()), (2, 2), "one interrupt capability per entry");
    // The MSI vector was given up: MSI off, its entry freed (the model
    // hands its number out again); two MSI-X entries remain, the holder's.
    assert_eq!(rig.read16(at::NVME, 0x42) & 1, 0, "MSI off");
    let entries = rig.world.borrow().iommu.entries.clone();
    let expected: Vec<_> =
        given.iter().enumerate().map(|(i, &v)| (i as u16 + 1, bdf(at::NVME), task::DMA_DRIVER, u32::from(v))).collect();
    assert_eq!(entries, expected);
    for (entry, handle) in [(1, 1u64), (2, 2)] {
        assert_eq!(word(&rig, entry_at(entry, 0)), Some(0xfee0_0018 | (handle << 5) as u32), "remappable format");
        assert_eq!((word(&rig, entry_at(entry, 4)), word(&rig, entry_at(entry, 8))), (Some(0), Some(0)));
        assert_eq!(word(&rig, entry_at(entry, 12)), Some(0), "unmasked");
    }
    for entry in [0, 3] {
        assert_eq!(word(&rig, entry_at(entry, 12)), Some(1), "entry {entry} was never asked for: masked");
        assert_eq!(word(&rig, entry_at(entry, 0)), None);
    }
    let control = rig.read16(at::NVME, 0x62);
    assert_eq!(control & 0xc000, 0x8000, "MSI-X on, function mask off");
    assert_eq!(rig.world.borrow().kernel.tables.get(&4), Some(&(NVME_BAR + NVME_MSIX_TABLE, 1)));
    // Every entry was masked before the first message was written.
    let journal = rig.take_journal();
    let first_message = journal.iter().position(|e| *e == Effect::Table(entry_at(1, 0), 0xfee0_0038)).unwrap();
    let last_mask = journal.iter().rposition(|e| matches!(e, Effect::Table(at, 1) if *at == entry_at(3, 12))).unwrap();
    assert!(last_mask < first_message, "{journal:?}");
    // A second request adds to them.
    let answer = vectors(&mut rig, 0, 1);
    assert!(matches!(answer.reply, Reply::Vectors(ref v) if v.len() == 1), "{:?}", answer.reply);
    assert_eq!(word(&rig, entry_at(0, 12)), Some(0));
}

#[test]
fn requests_beyond_the_table_the_page_or_the_quota_and_repeats_are_refused() {
    let mut rig = probed();
    let before = rig.live();
    let cases = [
        (Request::MsixVectors { device: bdf(at::NVME), first: 0, count: 0 }, ErrorCode::InvalidArgument, "1 to 4"),
        (Request::MsixVectors { device: bdf(at::NVME), first: 0, count: 5 }, ErrorCode::InvalidArgument, "1 to 4"),
        (Request::MsixVectors { device: bdf(at::NVME), first: 3, count: 2 }, ErrorCode::InvalidArgument, "table has 4"),
        (Request::MsixVectors { device: bdf(at::EDU), first: 0, count: 1 }, ErrorCode::PermissionDenied, "held by"),
    ];
    for (request, code, words) in cases {
        let (got, reason) = refusal(&rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &request));
        assert_eq!(got, code, "{request:?}: {reason}");
        assert!(reason.contains(words), "{reason}");
    }
    assert_eq!(rig.live(), before);
    assert!(rig.world.borrow().kernel.tables.is_empty(), "nothing mapped for refused requests");
    let answer = vectors(&mut rig, 0, 2);
    assert!(matches!(answer.reply, Reply::Vectors(_)));
    let (code, reason) = refusal(&vectors(&mut rig, 1, 1));
    assert_eq!(code, ErrorCode::Busy, "{reason}");
    // The IOMMU server's per-device quota refuses the next; nothing of the refused request is left.
    let live = rig.live();
    rig.world.borrow_mut().iommu.refuse_interrupts = Some(ErrorCode::QuotaExceeded);
    let (code, _) = refusal(&vectors(&mut rig, 2, 2));
    assert_eq!(code, ErrorCode::QuotaExceeded);
    assert_eq!(rig.live(), live);
    assert_eq!(word(&rig, entry_at(2, 12)), Some(1), "still masked");
    // The edu has no MSI-X.
    rig.world.borrow_mut().iommu.refuse_interrupts = None;
    let probe = rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    assert!(matches!(probe.reply, Reply::Granted(_)));
    let edu = Request::MsixVectors { device: bdf(at::EDU), first: 0, count: 1 };
    let (code, reason) = refusal(&rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &edu));
    assert_eq!(code, ErrorCode::NotFound, "{reason}");
}

#[test]
fn a_table_the_server_cannot_map_refuses_and_leaves_nothing_behind() {
    let mut rig = probed();
    rig.world.borrow_mut().kernel.table_failure = Some(ErrorCode::QuotaExceeded);
    let (code, reason) = refusal(&vectors(&mut rig, 0, 1));
    assert_eq!(code, ErrorCode::QuotaExceeded);
    assert!(reason.contains("cannot be mapped by the server"), "{reason}");
    assert_eq!(rig.read16(at::NVME, 0x62) & 0x8000, 0, "MSI-X stays off");
    // The holder gave up its MSI for nothing, but is left consistent: a
    // second request works and release gives everything back once.
    assert!(matches!(vectors(&mut rig, 0, 1).reply, Reply::Vectors(_)));
    let release = Request::Release { device: bdf(at::NVME) };
    assert_eq!(rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &release).reply, Reply::Done);
    assert!(rig.world.borrow().iommu.entries.is_empty());
    assert!(rig.world.borrow().kernel.tables.is_empty());
}

#[test]
fn the_holder_masks_and_unmasks_only_its_own_entries() {
    let mut rig = probed();
    vectors(&mut rig, 1, 1);
    let mask = |entry, masked| Request::MsixMask { device: bdf(at::NVME), entry, masked };
    assert_eq!(rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &mask(1, true)).reply, Reply::Done);
    assert_eq!(word(&rig, entry_at(1, 12)), Some(1));
    assert_eq!(rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &mask(1, false)).reply, Reply::Done);
    assert_eq!(word(&rig, entry_at(1, 12)), Some(0));
    let (code, reason) = refusal(&rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &mask(2, false)));
    assert_eq!(code, ErrorCode::NotFound, "{reason}");
    assert_eq!(word(&rig, entry_at(2, 12)), Some(1), "an entry never given stays masked");
    let (code, _) = refusal(&rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &mask(1, false)));
    assert_eq!(code, ErrorCode::PermissionDenied, "only the holder");
}

#[test]
fn take_back_frees_every_msix_entry_before_the_quiesce() {
    for died in [false, true] {
        let mut rig = probed();
        let before_vectors = rig.live();
        let answer = vectors(&mut rig, 0, 3);
        let slots = answer.caps.clone();
        rig.take_journal();
        if died {
            rig.event(crate::driver_core::death_bit(task::DMA_DRIVER).unwrap());
        } else {
            let release = Request::Release { device: bdf(at::NVME) };
            assert_eq!(rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &release).reply, Reply::Done);
        }
        let journal = rig.take_journal();
        let position = |wanted: &dyn Fn(&Effect) -> bool| journal.iter().position(wanted).expect("happened");
        let quiesced = position(&|e| matches!(e, Effect::Command(b, c) if *b == bdf(at::NVME) && c & 0x4 == 0));
        for (entry, slot) in slots.iter().enumerate() {
            let masked = position(&|e| *e == Effect::Table(entry_at(entry as u64, 12), 1));
            let freed = position(&|e| {
                *e == Effect::Iommu(iommu::Request::FreeInterrupt { device: bdf(at::NVME), entry: entry as u16 + 1 })
            });
            let revoked = position(&|e| *e == Effect::Revoke(*slot));
            assert!(masked < freed && freed < revoked && revoked < quiesced, "entry {entry}: {journal:?}");
        }
        assert!(rig.world.borrow().iommu.entries.is_empty());
        assert!(rig.world.borrow().kernel.tables.is_empty(), "the table is unmapped");
        assert_eq!(rig.read16(at::NVME, 0x62) & 0x8000, 0, "MSI-X off");
        // Everything but the MSI vector (given up) is back.
        let live = rig.live();
        assert!(live.is_subset(&before_vectors), "{live:?} {before_vectors:?}");
        // The next holder starts again from a table of masked entries.
        rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
        assert!(matches!(vectors(&mut rig, 0, 1).reply, Reply::Vectors(_)));
    }
}

#[test]
fn a_holders_reset_writes_its_entries_and_masks_again() {
    let mut rig = probed();
    {
        let mut world = rig.world.borrow_mut();
        world.flr = Some((bdf(at::NVME), NVME_PCIE + 8));
        world.reset_clears = vec![(bdf(at::NVME), 0x62)];
    }
    vectors(&mut rig, 1, 2);
    let mask = Request::MsixMask { device: bdf(at::NVME), entry: 2, masked: true };
    assert_eq!(rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &mask).reply, Reply::Done);
    let message = word(&rig, entry_at(1, 0)).unwrap();
    // What the reset clears, as a device's table would be.
    rig.world.borrow_mut().kernel.table_memory.clear();
    let reset = Request::ConfigWrite { device: bdf(at::NVME), offset: NVME_PCIE + 8, width: 2, value: 0x8000 };
    assert_eq!(rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &reset).reply, Reply::Done);
    assert_eq!(rig.world.borrow().resets, [bdf(at::NVME)]);
    assert_eq!(rig.read16(at::NVME, 0x62) & 0xc000, 0x8000, "MSI-X on again, function mask off");
    assert_eq!(word(&rig, entry_at(1, 0)), Some(message), "the holder's message");
    let controls: Vec<_> = (0..4).map(|entry| word(&rig, entry_at(entry, 12))).collect();
    assert_eq!(controls, [Some(1), Some(0), Some(1), Some(1)], "entry 1 on, entry 2 as the holder masked it");
}
