//! Page-table tests: QEMU's configuration, superpages, errors, and a model.

use std::collections::BTreeMap;

use xorshift::XorShift;

use super::*;
use crate::capability::{AddressWidth, Capabilities};
use crate::range::IovaRange;
use crate::testing::FakePages;

/// QEMU 7.2's default unit: 39-bit, 2 MiB and 1 GiB pages, not coherent.
fn qemu() -> Capabilities {
    Capabilities::decode(0x00d2_008c_2226_0206, 0xf0_0f4a).unwrap()
}

/// QEMU 7.2 with `aw-bits=48`.
fn qemu_48() -> Capabilities {
    Capabilities::decode(0x00d2_008c_222f_0606, 0xf0_0f4a).unwrap()
}

fn table(caps: &Capabilities, width: AddressWidth, pages: &mut FakePages) -> SecondLevelTable {
    SecondLevelTable::new(pages, PageTableConfig::new(caps, width, 39).unwrap()).unwrap()
}

#[test]
fn one_page_through_three_levels() {
    let mut pages = FakePages::new(16);
    let mut table = table(&qemu(), AddressWidth::Bits39, &mut pages);
    let mapped = table.map(&mut pages, 0x1000, 0x5000, 1, Access::READ_WRITE).unwrap();
    assert_eq!(
        mapped,
        Mapped { range: IovaRange { start: 0x1000, pages: 1 }, pages: 1, superpages: 0, tables_added: 2 }
    );
    assert_eq!(pages.live(), 3);
    let found = table.translate(&pages, 0x1abc).unwrap();
    assert_eq!(found, Translation { physical: 0x5abc, page_size: 4096, access: Access::READ_WRITE });
    assert_eq!(table.translate(&pages, 0x2000), None);
    assert_eq!(table.translate(&pages, 1 << 39), None);
    assert!(pages.dirty.is_empty(), "every entry written was flushed for the non-coherent unit");
    let leaf = pages.pages.values().flat_map(|entries| entries.iter()).find(|e| *e & !0xfff == 0x5000).unwrap();
    assert_eq!(*leaf & 0xfff, 0x003, "no SNP bit: QEMU does not report snoop control");

    let unmapped = table.unmap(&mut pages, 0x1000, 1).unwrap();
    assert_eq!((unmapped.pages, unmapped.unlinked.len()), (1, 2));
    assert_eq!(pages.live(), 3, "unlinked tables wait for the caller's invalidation");
    unmapped.release_tables(&mut pages);
    assert_eq!(pages.live(), 1);
    assert_eq!(table.translate(&pages, 0x1000), None);
    assert!(pages.dirty.is_empty());
}

#[test]
fn superpages_where_alignment_allows() {
    let mut pages = FakePages::new(64);
    let mut table = table(&qemu(), AddressWidth::Bits39, &mut pages);
    let two_mib = 512;
    let mapped = table.map(&mut pages, 0x20_0000, 0x4020_0000, two_mib + 1, Access::READ).unwrap();
    assert_eq!((mapped.pages, mapped.superpages), (513, 1));
    assert_eq!(table.translate(&pages, 0x21_2345).unwrap().page_size, 0x20_0000);
    assert_eq!(table.translate(&pages, 0x21_2345).unwrap().physical, 0x4021_2345);
    assert_eq!(table.translate(&pages, 0x40_0000).unwrap().page_size, 4096);

    let gib = 1 << 18;
    let mapped = table.map(&mut pages, 0x4000_0000, 0x8000_0000, gib, Access::WRITE).unwrap();
    assert_eq!((mapped.superpages, mapped.tables_added), (1, 0));
    assert_eq!(table.translate(&pages, 0x7fff_ffff).unwrap().page_size, 1 << 30);

    let unaligned = table.map(&mut pages, 0x80_0000, 0x9000_1000, two_mib, Access::READ).unwrap();
    assert_eq!(unaligned.superpages, 0, "physical address not 2 MiB aligned");

    assert_eq!(table.unmap(&mut pages, 0x20_0000, 1), Err(PageTableError::SplitsSuperpage { iova: 0x20_0000 }));
    assert_eq!(table.unmap(&mut pages, 0x4000_1000, 1), Err(PageTableError::SplitsSuperpage { iova: 0x4000_0000 }));
    assert_eq!(table.unmap(&mut pages, 0x20_0000, two_mib).unwrap().pages, two_mib);
    assert_eq!(table.unmap(&mut pages, 0x4000_0000, gib).unwrap().pages, gib);
}

#[test]
fn without_superpage_support_everything_is_4k() {
    let caps = Capabilities::decode(0x00d2_0080_2226_0206, 0xf0_0f4b).unwrap();
    let mut pages = FakePages::new(64);
    let mut table = table(&caps, AddressWidth::Bits39, &mut pages);
    let mapped = table.map(&mut pages, 0x20_0000, 0x20_0000, 1024, Access::READ_WRITE).unwrap();
    assert_eq!((mapped.superpages, mapped.tables_added), (0, 3));
    assert!(pages.flushes.is_empty(), "coherent unit");
}

#[test]
fn four_levels_with_aw_bits_48() {
    let mut pages = FakePages::new(16);
    let mut table = table(&qemu_48(), AddressWidth::Bits48, &mut pages);
    let iova = 0x7f_ffff_f000u64 + (1 << 39);
    let mapped = table.map(&mut pages, iova, 0x1000, 1, Access::READ).unwrap();
    assert_eq!(mapped.tables_added, 3);
    assert_eq!(table.translate(&pages, iova).unwrap().physical, 0x1000);
    assert!(table.map(&mut pages, (1 << 48) - 0x1000, 0x1000, 1, Access::READ).is_ok());
    assert_eq!(
        table.map(&mut pages, 1 << 48, 0x1000, 1, Access::READ),
        Err(PageTableError::BeyondAddressWidth { iova: 1 << 48, pages: 1 })
    );
}

#[test]
fn invalid_requests_change_nothing() {
    let mut pages = FakePages::new(16);
    let mut table = table(&qemu(), AddressWidth::Bits39, &mut pages);
    table.map(&mut pages, 0x3000, 0x3000, 1, Access::READ).unwrap();
    let before = pages.pages.clone();
    let cases = [
        (0x1001, 0x1000, 1, Access::READ, PageTableError::Unaligned { address: 0x1001 }),
        (0x1000, 0x1800, 1, Access::READ, PageTableError::Unaligned { address: 0x1800 }),
        (0x1000, 0x1000, 0, Access::READ, PageTableError::Empty),
        (0x1000, 0x1000, 1, Access { read: false, write: false }, PageTableError::NoAccess),
        (0x1000, 0x1000, 3, Access::READ, PageTableError::AlreadyMapped { iova: 0x3000 }),
        (
            (1 << 39) - 0x1000,
            0,
            2,
            Access::READ,
            PageTableError::BeyondAddressWidth { iova: (1 << 39) - 0x1000, pages: 2 },
        ),
        (0x1000, 1 << 39, 1, Access::READ, PageTableError::BeyondPhysicalWidth { physical: 1 << 39, pages: 1 }),
        (0x1000, 0, u64::MAX, Access::READ, PageTableError::BeyondAddressWidth { iova: 0x1000, pages: u64::MAX }),
    ];
    for (iova, physical, count, access, expected) in cases {
        assert_eq!(table.map(&mut pages, iova, physical, count, access), Err(expected));
    }
    let overlapping = [
        MapRequest { iova: 0x10_0000, physical: 0, pages: 4, access: Access::READ },
        MapRequest { iova: 0x10_2000, physical: 0, pages: 1, access: Access::READ },
    ];
    assert_eq!(table.map_batch(&mut pages, &overlapping), Err(PageTableError::Overlapping { index: 1 }));
    assert_eq!(table.map_batch(&mut pages, &[]), Err(PageTableError::Empty));
    assert_eq!(table.unmap(&mut pages, 0x1000, 0), Err(PageTableError::Empty));
    assert_eq!(pages.pages, before);
    assert_eq!(table.unmap(&mut pages, 0x8000, 4).unwrap(), Unmapped::default());
}

#[test]
fn running_out_of_table_pages_rolls_back_and_names_what_to_invalidate() {
    let mut pages = FakePages::new(3);
    let mut table = table(&qemu(), AddressWidth::Bits39, &mut pages);
    // 512 pages from 0x1ff000 need a second level-1 table: the fourth page.
    let error = table.map(&mut pages, 0x1f_f000, 0x10_0000, 2, Access::READ).unwrap_err();
    assert_eq!(error, PageTableError::OutOfTablePages { invalidate: Some(IovaRange { start: 0x1f_f000, pages: 2 }) });
    assert_eq!(pages.live(), 3, "tables added for the failed map stay linked until an invalidated unmap");
    assert_eq!(table.translate(&pages, 0x1f_f000), None);
    let emptied = table.unmap(&mut pages, 0x1f_f000, 2).unwrap();
    assert_eq!((emptied.pages, emptied.unlinked.len()), (0, 2));
    emptied.release_tables(&mut pages);
    assert_eq!(pages.live(), 1);

    let batch = [
        MapRequest { iova: 0x1000, physical: 0x1000, pages: 1, access: Access::READ },
        MapRequest { iova: 0x4000_0000, physical: 0x2000, pages: 1, access: Access::READ },
    ];
    let error = table.map_batch(&mut pages, &batch).unwrap_err();
    assert!(matches!(error, PageTableError::OutOfTablePages { invalidate: Some(_) }));
    assert_eq!(pages.live(), 3);
    assert_eq!(table.translate(&pages, 0x1000), None);
    assert!(pages.dirty.is_empty());
}

#[test]
fn batches_map_and_unmap_many_runs() {
    let mut pages = FakePages::new(64);
    let mut table = table(&qemu(), AddressWidth::Bits39, &mut pages);
    let requests: Vec<MapRequest> = (0..32)
        .map(|run| MapRequest {
            iova: run * 0x10_0000,
            physical: 0x100_0000 + run * 0x2000,
            pages: 2,
            access: Access::READ,
        })
        .collect();
    let mapped = table.map_batch(&mut pages, &requests).unwrap();
    assert_eq!(mapped.pages, 64);
    assert_eq!(mapped.range, IovaRange { start: 0, pages: ((31 * 0x10_0000) >> 12) + 2 });
    let ranges: Vec<IovaRange> = requests.iter().map(|r| IovaRange { start: r.iova, pages: r.pages }).collect();
    let unmapped = table.unmap_batch(&mut pages, &ranges).unwrap();
    assert_eq!(unmapped.pages, 64);
    unmapped.release_tables(&mut pages);
    assert_eq!(pages.live(), 1);
}

#[test]
fn release_returns_every_page() {
    let mut pages = FakePages::new(64);
    let mut table = table(&qemu(), AddressWidth::Bits39, &mut pages);
    table.map(&mut pages, 0x1000, 0x1000, 700, Access::READ).unwrap();
    table.map(&mut pages, 0x40_0000_0000, 0x1000, 1, Access::READ).unwrap();
    table.release(&mut pages);
    assert_eq!(pages.live(), 0);
}

/// Random maps and unmaps against a page-by-page model: results, errors,
/// translations, flushes and released pages must all agree.
fn model_run(caps: &Capabilities, width: AddressWidth, seed: u64) {
    let mut random = XorShift::new(seed);
    let mut pages = FakePages::new(10_000);
    let mut table = table(caps, width, &mut pages);
    let mut model: BTreeMap<u64, (u64, Access)> = BTreeMap::new();
    // Addresses cluster in a window straddling a 1 GiB boundary, so runs
    // collide, share tables and sometimes qualify for superpages.
    let window_pages = 3 << 18;
    for _ in 0..300 {
        let start_page = random.below(window_pages);
        let start_page = if random.below(3) == 0 { start_page & !0x1ff } else { start_page };
        let count = match random.below(4) {
            0 => 512 * (1 + random.below(3)),
            1 => 1 + random.below(600),
            _ => 1 + random.below(8),
        };
        let count = count.min(window_pages - start_page);
        let iova = start_page << 12;
        if random.below(3) != 0 {
            let physical = if random.below(2) == 0 { iova } else { random.below(1 << 20) << 12 };
            let access = [Access::READ, Access::WRITE, Access::READ_WRITE][random.below(3) as usize];
            let clash = model.range(start_page..start_page + count).next().map(|(page, _)| page << 12);
            match table.map(&mut pages, iova, physical, count, access) {
                Ok(mapped) => {
                    assert_eq!(clash, None);
                    assert_eq!(mapped.pages, count);
                    for offset in 0..count {
                        model.insert(start_page + offset, (physical + offset * 4096, access));
                    }
                }
                Err(PageTableError::AlreadyMapped { iova }) => assert_eq!(Some(iova), clash),
                Err(other) => panic!("unexpected map error {other:?}"),
            }
        } else {
            let expected = model.range(start_page..start_page + count).count() as u64;
            match table.unmap(&mut pages, iova, count) {
                Ok(unmapped) => {
                    assert_eq!(unmapped.pages, expected);
                    unmapped.release_tables(&mut pages);
                    let doomed: Vec<u64> = model.range(start_page..start_page + count).map(|(page, _)| *page).collect();
                    for page in doomed {
                        model.remove(&page);
                    }
                }
                Err(PageTableError::SplitsSuperpage { iova: base }) => {
                    let found = table.translate(&pages, base).unwrap();
                    assert!(found.page_size > 4096);
                    assert!(base < iova || base + found.page_size > iova + count * 4096);
                }
                Err(other) => panic!("unexpected unmap error {other:?}"),
            }
        }
        assert!(pages.dirty.is_empty() || caps.coherent);
        for _ in 0..20 {
            let page = random.below(window_pages);
            let expected = model.get(&page).map(|(physical, access)| (*physical, *access));
            let found = table.translate(&pages, page << 12).map(|t| (t.physical, t.access));
            assert_eq!(found, expected, "page {page:#x}");
        }
    }
    for (page, (physical, access)) in &model {
        let found = table.translate(&pages, page << 12).unwrap();
        assert_eq!((found.physical, found.access), (*physical, *access));
    }
    // An unmap unlinks at most MAX_UNLINKED tables; the next takes the rest.
    loop {
        let unmapped = table.unmap(&mut pages, 0, window_pages).unwrap();
        let done = unmapped.unlinked.len() < crate::pagetable::MAX_UNLINKED;
        unmapped.release_tables(&mut pages);
        if done {
            break;
        }
    }
    assert_eq!(pages.live(), 1, "every table emptied by unmapping was released");
}

#[test]
fn random_operations_match_the_model() {
    for seed in 1..=4 {
        model_run(&qemu(), AddressWidth::Bits39, seed * 0x9e37_79b9);
        model_run(&qemu_48(), AddressWidth::Bits48, seed * 0x85eb_ca6b);
    }
    let coherent_no_superpages = Capabilities::decode(0x00d2_0080_2226_0206, 0xf0_0f4b).unwrap();
    model_run(&coherent_no_superpages, AddressWidth::Bits39, 77);
}

#[test]
fn unmapping_beside_live_mappings_reads_a_few_entries_and_the_last_one_frees_the_tables() {
    let mut pages = FakePages::new(16);
    let mut table = table(&qemu(), AddressWidth::Bits39, &mut pages);
    for page in 0..64u64 {
        table.map(&mut pages, 0x1000 * (page + 1), 0x10_0000 + 0x1000 * page, 1, Access::READ_WRITE).unwrap();
    }
    assert_eq!(pages.live(), 3);
    for page in 0..63u64 {
        let before = pages.reads.get();
        let unmapped = table.unmap(&mut pages, 0x1000 * (page + 1), 1).unwrap();
        assert_eq!((unmapped.pages, unmapped.unlinked.len()), (1, 0));
        // Two reads to check for split superpages, three to walk down, and
        // one per table to see that it still maps something.
        assert!(pages.reads.get() - before <= 8, "unmap {page} read {} entries", pages.reads.get() - before);
    }
    let unmapped = table.unmap(&mut pages, 0x1000 * 64, 1).unwrap();
    assert_eq!((unmapped.pages, unmapped.unlinked.len()), (1, 2));
    unmapped.release_tables(&mut pages);
    assert_eq!(pages.live(), 1);
    // Batches: 64-page runs side by side, unmapped in order.
    for run in 0..8u64 {
        table.map(&mut pages, 0x40_0000 + run * 0x4_0000, 0x100_0000 + run * 0x4_0000, 64, Access::READ).unwrap();
    }
    for run in 0..7u64 {
        let before = pages.reads.get();
        assert!(table.unmap(&mut pages, 0x40_0000 + run * 0x4_0000, 64).unwrap().unlinked.is_empty());
        assert!(pages.reads.get() - before <= 2 * 64 + 8, "batch {run} read {} entries", pages.reads.get() - before);
    }
    let last = table.unmap(&mut pages, 0x40_0000 + 7 * 0x4_0000, 64).unwrap();
    assert_eq!(last.unlinked.len(), 2);
    last.release_tables(&mut pages);
    assert_eq!(pages.live(), 1);
}
