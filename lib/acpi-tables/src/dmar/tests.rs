//! DMAR tests: QEMU 7.2's real tables, synthesized ones, and every corruption.

use xorshift::XorShift;

use super::*;
use crate::memory::SliceMemory;
use crate::root::{RootKind, RootTable};
use crate::sdt::TableError;
use crate::testing::qemu::{DMAR_Q35, DMAR_Q35_BRIDGES};
use crate::testing::{atsr, dmar, drhd, fix_checksum, rmrr, scope, table};

#[test]
fn qemu_7_2_default_table() {
    let table = Dmar::parse(&DMAR_Q35).unwrap();
    assert_eq!(table.host_address_width, 39);
    assert!(table.flags.interrupt_remapping());
    assert!(!table.flags.x2apic_opt_out());
    let units: Vec<_> = table.units().collect();
    assert_eq!(units.len(), 1);
    let unit = &units[0];
    assert!(!unit.include_pci_all());
    assert_eq!((unit.segment, unit.register_base, unit.register_size()), (0, 0xfed9_0000, 4096));
    let scopes: Vec<_> = unit.scopes().collect();
    assert_eq!(scopes.len(), 5);
    assert_eq!(scopes[0].kind, ScopeKind::IoApic);
    assert_eq!(scopes[0].enumeration_id, 0);
    assert_eq!(scopes[0].direct_address().map(PciAddress::source_id), Some(0xff00));
    let endpoints: Vec<_> = scopes[1..]
        .iter()
        .map(|scope| {
            assert_eq!(scope.kind, ScopeKind::PciEndpoint);
            scope.direct_address().unwrap().source_id()
        })
        .collect();
    assert_eq!(endpoints, [0x0000, 0x00f8, 0x00fa, 0x00fb]);
    assert_eq!(table.reserved_regions().count(), 0);
    assert_eq!(table.ats_reports().count(), 0);
}

#[test]
fn qemu_7_2_table_with_bridges_lists_them_as_sub_hierarchies() {
    let table = Dmar::parse(&DMAR_Q35_BRIDGES).unwrap();
    let unit = table.units().next().unwrap();
    let kinds: Vec<_> = unit
        .scopes()
        .map(|scope| (scope.kind.type_code(), scope.direct_address().unwrap()))
        .map(|(kind, address)| (kind, address.bus, address.device, address.function))
        .collect();
    assert_eq!(
        kinds,
        [
            (3, 0xff, 0, 0),
            (1, 0, 0, 0),
            (1, 0, 1, 0),
            (2, 0, 2, 0),
            (2, 0, 3, 0),
            (1, 0, 0x1f, 0),
            (1, 0, 0x1f, 2),
            (1, 0, 0x1f, 3)
        ]
    );
}

#[test]
fn devices_find_their_unit() {
    let table = Dmar::parse(&DMAR_Q35_BRIDGES).unwrap();
    let at = |bus, device, function| PciAddress { bus, device, function };
    let none = |_| None;
    assert!(table.unit_for(0, at(0, 0x1f, 2), &[], none).is_some());
    assert!(table.unit_for(0, at(0, 2, 0), &[], none).is_some(), "the bridge itself");
    let behind_bridge = table.unit_for(0, at(1, 1, 0), &[at(0, 2, 0)], none).unwrap();
    assert_eq!(behind_bridge.register_base, 0xfed9_0000);
    assert!(table.unit_for(0, at(0, 5, 0), &[], none).is_none(), "not in any scope");
    assert!(table.unit_for(1, at(0, 0x1f, 2), &[], none).is_none(), "other segment");

    let bytes = dmar(
        38,
        0,
        &[
            drhd(0, 0, 0xfed9_1000, &[scope(1, 0, 0, &[(2, 0)]), scope(2, 0, 0, &[(0x1c, 0), (0, 0)])]),
            drhd(1, 0, 0xfed9_0000, &[scope(3, 0, 0xf0, &[(0x1f, 0)])]),
        ],
    );
    let table = Dmar::parse(&bytes).unwrap();
    let graphics = table.unit_for(0, at(0, 2, 0), &[], none).unwrap();
    assert_eq!(graphics.register_base, 0xfed9_1000);
    let other = table.unit_for(0, at(0, 3, 0), &[], none).unwrap();
    assert_eq!(other.register_base, 0xfed9_0000, "INCLUDE_PCI_ALL catches the rest");
    // 00:1c.0 has secondary bus 4; the scope names 04:00.0's hierarchy.
    let secondary = |bridge: PciAddress| (bridge == at(0, 0x1c, 0)).then_some(4);
    let below = table.unit_for(0, at(5, 0, 0), &[at(0, 0x1c, 0), at(4, 0, 0)], secondary).unwrap();
    assert_eq!(below.register_base, 0xfed9_1000);
    let unresolved = table.unit_for(0, at(5, 0, 0), &[at(0, 0x1c, 0), at(4, 0, 0)], none).unwrap();
    assert_eq!(unresolved.register_base, 0xfed9_0000);
}

#[test]
fn found_through_an_rsdt_in_memory() {
    let mut memory_bytes = vec![0u8; 0x400];
    let root_body: Vec<u8> = [0x1100u32, 0x1200].iter().flat_map(|a| a.to_le_bytes()).collect();
    let root = table(*b"RSDT", 1, &root_body);
    let apic = table(*b"APIC", 1, &[0; 8]);
    memory_bytes[..root.len()].copy_from_slice(&root);
    memory_bytes[0x100..0x100 + apic.len()].copy_from_slice(&apic);
    memory_bytes[0x200..0x200 + DMAR_Q35.len()].copy_from_slice(&DMAR_Q35);
    let memory = SliceMemory { base: 0x1000, bytes: &memory_bytes };
    let mut root_buffer = [0u8; 64];
    let root = RootTable::read(&memory, RootKind::Rsdt, 0x1000, &mut root_buffer).unwrap();
    let mut buffer = [0u8; 512];
    let found = Dmar::find(&memory, &root, &mut buffer).unwrap().unwrap();
    assert_eq!(found.units().count(), 1);

    let no_dmar_body: Vec<u8> = 0x1100u32.to_le_bytes().to_vec();
    let root_bytes = table(*b"RSDT", 1, &no_dmar_body);
    let root = RootTable::parse(RootKind::Rsdt, &root_bytes).unwrap();
    assert!(Dmar::find(&memory, &root, &mut buffer).unwrap().is_none());
}

#[test]
fn decodes_every_structure_kind_and_skips_unknown_ones() {
    let rhsa = {
        let mut bytes = vec![3, 0, 20, 0];
        bytes.extend_from_slice(&[0; 16]);
        bytes
    };
    let future = vec![0x34, 0x12, 6, 0, 0xaa, 0xbb];
    let bytes = dmar(
        47,
        0b11,
        &[
            drhd(0, 0, 0xfed9_0000, &[scope(1, 0, 0, &[(3, 0)]), scope(2, 0, 0, &[(1, 0), (0, 0)])]),
            future.clone(),
            drhd(1, 0, 0xfed9_1000, &[scope(4, 7, 0, &[(0x1f, 0)]), scope(5, 1, 0, &[(0x15, 2)])]),
            rmrr(0, 0x000e_8000, 0x000e_8fff, &[scope(1, 0, 0, &[(0x1d, 0)])]),
            atsr(1, 0, &[]),
            atsr(0, 1, &[scope(2, 0, 0, &[(0x1c, 0)])]),
            rhsa,
        ],
    );
    let table = Dmar::parse(&bytes).unwrap();
    assert_eq!(table.host_address_width, 48);
    assert!(table.flags.interrupt_remapping() && table.flags.x2apic_opt_out());
    let structures: Vec<_> = table.structures().collect();
    assert_eq!(structures.len(), 7);
    assert!(matches!(
        structures[1],
        RemappingStructure::Other { index: 1, structure_type: 0x1234, body: [0xaa, 0xbb] }
    ));
    assert!(matches!(structures[6], RemappingStructure::Other { index: 6, structure_type: 3, .. }));

    let units: Vec<_> = table.units().collect();
    assert_eq!(units.len(), 2);
    assert!(units[1].include_pci_all());
    assert_eq!(units[1].index, 2);
    let bridge_path = units[0].scopes().nth(1).unwrap();
    assert_eq!(bridge_path.path_len(), 2);
    assert_eq!(bridge_path.direct_address(), None);
    let resolved = bridge_path.resolve(|bridge| (bridge == PciAddress { bus: 0, device: 1, function: 0 }).then_some(5));
    assert_eq!(resolved, Some(PciAddress { bus: 5, device: 0, function: 0 }));
    assert_eq!(bridge_path.resolve(|_| None), None);
    let hpet = units[1].scopes().next().unwrap();
    assert_eq!((hpet.kind, hpet.enumeration_id), (ScopeKind::Hpet, 7));

    let region = table.reserved_regions().next().unwrap();
    assert_eq!((region.base, region.limit, region.pages(), region.index), (0xe8000, 0xe8fff, 1, 3));
    assert_eq!(
        region.scopes().next().unwrap().direct_address(),
        Some(PciAddress { bus: 0, device: 0x1d, function: 0 })
    );

    let reports: Vec<_> = table.ats_reports().collect();
    assert!(reports[0].all_ports() && !reports[1].all_ports());
    assert_eq!(reports[1].segment, 1);
    assert_eq!(reports[1].scopes().count(), 1);
}

#[test]
fn source_ids_round_trip() {
    for source_id in [0u16, 0xff00, 0x00fa, 0x1234, 0xffff] {
        assert_eq!(PciAddress::from_source_id(source_id).source_id(), source_id);
    }
}

/// Parses `structures` in an otherwise valid table.
fn parse_structures(structures: &[Vec<u8>]) -> Result<(), DmarError> {
    Dmar::parse(&dmar(38, 0, structures)).map(|_| ())
}

#[test]
fn table_level_corruptions() {
    let mut bad = DMAR_Q35;
    bad[60] ^= 1;
    assert!(matches!(Dmar::parse(&bad), Err(DmarError::Table(TableError::Checksum { .. }))));
    let mut bad = DMAR_Q35.to_vec();
    bad[0] = b'X';
    fix_checksum(&mut bad, 9);
    assert!(matches!(Dmar::parse(&bad), Err(DmarError::Table(TableError::Signature { .. }))));
    let short = table(*b"DMAR", 1, &[38, 0, 0]);
    assert_eq!(Dmar::parse(&short).unwrap_err(), DmarError::HeaderTruncated { length: 39 });
    assert_eq!(Dmar::parse(&dmar(10, 0, &[])).unwrap_err(), DmarError::HostAddressWidth { width: 11 });
    assert_eq!(Dmar::parse(&dmar(64, 0, &[])).unwrap_err(), DmarError::HostAddressWidth { width: 65 });
    assert_eq!(Dmar::parse(&dmar(255, 0, &[])).unwrap_err(), DmarError::HostAddressWidth { width: 256 });
    assert!(Dmar::parse(&dmar(38, 0, &[])).unwrap().structures().next().is_none());
}

#[test]
fn structure_length_corruptions() {
    assert_eq!(
        parse_structures(&[vec![0, 0, 0, 0]]),
        Err(DmarError::StructureLength { index: 0, kind: "DRHD", length: 0 })
    );
    let unit = drhd(0, 0, 0xfed9_0000, &[]);
    assert_eq!(
        parse_structures(&[unit.clone(), vec![0, 0, 3, 0]]),
        Err(DmarError::StructureLength { index: 1, kind: "DRHD", length: 3 })
    );
    assert_eq!(
        parse_structures(&[unit.clone(), unit.clone(), vec![1, 0, 23, 0]]),
        Err(DmarError::StructureLength { index: 2, kind: "RMRR", length: 3 + 20 })
    );
    assert_eq!(
        parse_structures(&[vec![9, 0, 0, 0]]),
        Err(DmarError::StructureLength { index: 0, kind: "unknown", length: 0 })
    );
    assert_eq!(
        parse_structures(&[vec![2, 0, 7, 0]]),
        Err(DmarError::StructureLength { index: 0, kind: "ATSR", length: 7 })
    );
    let mut overrun = unit.clone();
    overrun[2] = 17;
    assert_eq!(
        parse_structures(&[overrun]),
        Err(DmarError::StructureOverrun { index: 0, kind: "DRHD", length: 17, remaining: 16 })
    );
    assert_eq!(
        parse_structures(&[unit.clone(), vec![0, 0]]),
        Err(DmarError::StructureTruncated { index: 1, remaining: 2 })
    );
    assert_eq!(parse_structures(&[vec![7]]), Err(DmarError::StructureTruncated { index: 0, remaining: 1 }));
}

#[test]
fn field_corruptions() {
    for address in [0, 0xfed9_0800, 1] {
        assert_eq!(parse_structures(&[drhd(0, 0, address, &[])]), Err(DmarError::RegisterBase { index: 0, address }));
    }
    for (base, limit) in [(0x1000, 0x1ffe), (0x1001, 0x1fff), (0x3000, 0x1fff), (0x2000, 0x1fff)] {
        assert_eq!(
            parse_structures(&[rmrr(0, base, limit, &[])]),
            Err(DmarError::ReservedRange { index: 0, base, limit })
        );
    }
    assert!(parse_structures(&[rmrr(0, 0, u64::MAX, &[])]).is_ok());
}

#[test]
fn scope_corruptions() {
    let base = 0xfed9_0000;
    let mut zero_length = scope(1, 0, 0, &[(1, 0)]);
    zero_length[1] = 0;
    let mut odd = scope(1, 0, 0, &[(1, 0)]);
    odd.push(0);
    odd[1] = 9;
    let mut long = scope(1, 0, 0, &[(1, 0)]);
    long[1] = 10;
    let cases: Vec<(Vec<u8>, DmarError)> = vec![
        (zero_length, DmarError::ScopeLength { index: 0, kind: "DRHD", scope: 1, length: 0 }),
        (odd, DmarError::ScopeLength { index: 0, kind: "DRHD", scope: 1, length: 9 }),
        (long, DmarError::ScopeLength { index: 0, kind: "DRHD", scope: 1, length: 10 }),
        (scope(1, 0, 0, &[]), DmarError::ScopeLength { index: 0, kind: "DRHD", scope: 1, length: 6 }),
        (scope(0, 0, 0, &[(1, 0)]), DmarError::ScopeType { index: 0, kind: "DRHD", scope: 1, scope_type: 0 }),
        (scope(6, 0, 0, &[(1, 0)]), DmarError::ScopeType { index: 0, kind: "DRHD", scope: 1, scope_type: 6 }),
        (
            scope(1, 0, 0, &[(1, 0), (32, 0)]),
            DmarError::ScopePath { index: 0, kind: "DRHD", scope: 1, device: 32, function: 0 },
        ),
        (scope(1, 0, 0, &[(1, 8)]), DmarError::ScopePath { index: 0, kind: "DRHD", scope: 1, device: 1, function: 8 }),
        (vec![1], DmarError::ScopeLength { index: 0, kind: "DRHD", scope: 1, length: 0 }),
    ];
    for (bad, expected) in cases {
        let good = scope(3, 0, 0xff, &[(0, 0)]);
        assert_eq!(parse_structures(&[drhd(0, 0, base, &[good, bad])]), Err(expected));
    }
    assert_eq!(
        parse_structures(&[rmrr(0, 0x1000, 0x1fff, &[scope(3, 0, 0, &[(1, 0)])])]),
        Err(DmarError::ScopeType { index: 0, kind: "RMRR", scope: 0, scope_type: 3 })
    );
    assert_eq!(
        parse_structures(&[atsr(0, 0, &[scope(1, 0, 0, &[(1, 0)])])]),
        Err(DmarError::ScopeType { index: 0, kind: "ATSR", scope: 0, scope_type: 1 })
    );
}

#[test]
fn errors_name_the_structure_in_text() {
    let error = DmarError::StructureLength { index: 2, kind: "DRHD", length: 3 };
    assert_eq!(error.to_string(), "DMAR structure 2 (DRHD): length 3 is too short");
}

/// Walks everything a parsed table exposes, to reach every decoding path.
fn walk(table: &Dmar<'_>) -> usize {
    let mut seen = 0;
    for structure in table.structures() {
        seen += 1;
        let scopes = match structure {
            RemappingStructure::Drhd(unit) => unit.scopes(),
            RemappingStructure::Rmrr(region) => region.scopes(),
            RemappingStructure::Atsr(report) => report.scopes(),
            RemappingStructure::Other { .. } => continue,
        };
        for scope in scopes {
            seen += scope.path().count();
            let _ = scope.resolve(|address| Some(address.bus.wrapping_add(1)));
        }
    }
    seen
}

#[test]
fn random_corruptions_never_panic_or_hang() {
    let mut random = XorShift::new(0x9e37_79b9_7f4a_7c15);
    let seed = dmar(
        38,
        1,
        &[
            drhd(0, 0, 0xfed9_0000, &[scope(3, 0, 0xff, &[(0, 0)]), scope(2, 0, 0, &[(2, 0), (1, 0)])]),
            rmrr(0, 0x1000, 0x1fff, &[scope(1, 0, 0, &[(1, 0)])]),
            atsr(0, 0, &[scope(2, 0, 0, &[(3, 0)])]),
        ],
    );
    for _ in 0..20_000 {
        let mut bytes = seed.clone();
        for _ in 0..(random.next_u64() % 4 + 1) {
            let position = 36 + (random.next_u64() as usize) % (bytes.len() - 36);
            bytes[position] = random.next_u64() as u8;
        }
        if random.next_u64().is_multiple_of(4) {
            let cut = 36 + (random.next_u64() as usize) % (bytes.len() - 36);
            bytes.truncate(cut);
            let length = bytes.len() as u32;
            bytes[4..8].copy_from_slice(&length.to_le_bytes());
        }
        fix_checksum(&mut bytes, 9);
        if let Ok(table) = Dmar::parse(&bytes) {
            walk(&table);
        }
    }
}

#[test]
fn random_byte_soup_never_panics() {
    let mut random = XorShift::new(12345);
    for _ in 0..5_000 {
        let length = (random.next_u64() % 200) as usize;
        let mut body: Vec<u8> = (0..length).map(|_| random.next_u64() as u8).collect();
        if body.len() > 2 {
            body[0] = 38;
        }
        let bytes = table(*b"DMAR", 1, &body);
        if let Ok(table) = Dmar::parse(&bytes) {
            walk(&table);
        }
    }
}
