//! ACPI decoders: DMAR, MCFG, the RSDP and root tables, table snapshots, and the DSDT's host bridges.
//!
//! Checksums and length fields stop a byte-mutating fuzzer at the door, so
//! each target's first byte chooses fix-ups the harness applies before
//! parsing (bit 0: make the length field match, bit 1: make the checksum
//! right). Inputs with the bits clear still reach the checks themselves.

use acpi_tables::dmar::{DeviceScope, PciAddress, RemappingStructure};
use acpi_tables::snapshot::{self, SnapshotMemory};
use acpi_tables::{Dmar, Mcfg, RootTable, Rsdp, SliceMemory, TableMemory};

/// Bytes of an SDT header.
const HEADER: usize = 36;
/// Control bit: write the buffer's length into the length field.
const FIX_LENGTH: u8 = 1;
/// Control bit: make the checksum byte right.
const FIX_CHECKSUM: u8 = 2;
/// Where the harness places the firmware memory image it builds from input.
const MEMORY_BASE: u64 = 0xe_0000;
/// Room for one table read; larger tables are refused as too big, which
/// the parsers report as an error (as the servers' buffers would).
const TABLE_BUFFER: usize = 8192;

/// Rewrites the byte at `position` so that `bytes` sums to zero.
fn fix_sum(bytes: &mut [u8], position: usize) {
    if position < bytes.len() {
        bytes[position] = 0;
        let sum = bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte));
        bytes[position] = sum.wrapping_neg();
    }
}

/// Applies the `control` fix-ups to the table at the start of `table`.
fn fix_table(control: u8, table: &mut [u8]) {
    if table.len() < HEADER {
        return;
    }
    if control & FIX_LENGTH != 0 {
        let length = u32::try_from(table.len()).unwrap_or(u32::MAX);
        table[4..8].copy_from_slice(&length.to_le_bytes());
    }
    if control & FIX_CHECKSUM != 0 {
        let length = u32::from_le_bytes([table[4], table[5], table[6], table[7]]) as usize;
        let end = length.clamp(HEADER, table.len());
        fix_sum(&mut table[..end], 9);
    }
}

/// The table after the control byte that starts `data`, with the fix-ups
/// that byte asks for; `None` for empty input.
fn controlled_table(data: &[u8]) -> Option<Vec<u8>> {
    let (&control, table) = data.split_first()?;
    let mut table = table.to_vec();
    fix_table(control, &mut table);
    Some(table)
}

/// Fixes the checksum of the table at `offset` of `memory`, if it lies there.
fn fix_table_at(memory: &mut [u8], offset: usize) {
    if let Some(table) = memory.get_mut(offset..)
        && table.len() >= HEADER
    {
        fix_table(FIX_CHECKSUM, table);
    }
}

/// Fixes both checksums of the RSDP at `offset` of `memory`.
fn fix_rsdp_at(memory: &mut [u8], offset: usize) {
    let Some(rsdp) = memory.get_mut(offset..) else { return };
    if rsdp.len() < 20 {
        return;
    }
    fix_sum(&mut rsdp[..20], 8);
    if rsdp[15] >= 2 && rsdp.len() >= 36 {
        let length = u32::from_le_bytes([rsdp[20], rsdp[21], rsdp[22], rsdp[23]]) as usize;
        if (36..=64).contains(&length) && length <= rsdp.len() {
            fix_sum(&mut rsdp[..length], 32);
        }
    }
}

/// Reads the little-endian `u64` (or `u32` when `wide` is false) at `offset`.
fn address_at(bytes: &[u8], offset: usize, wide: bool) -> Option<u64> {
    let width = if wide { 8 } else { 4 };
    let field = bytes.get(offset..offset.checked_add(width)?)?;
    let mut word = [0u8; 8];
    word[..width].copy_from_slice(field);
    Some(u64::from_le_bytes(word))
}

/// The offset in `memory` (based at [`MEMORY_BASE`]) of `address`.
fn offset_of(address: u64, memory: &[u8]) -> Option<usize> {
    let offset = usize::try_from(address.checked_sub(MEMORY_BASE)?).ok()?;
    (offset < memory.len()).then_some(offset)
}

/// Follows the RSDPs of `memory` to their root tables and the tables they
/// list, fixing every checksum on the way, as firmware would have them.
fn fix_memory(memory: &mut [u8]) {
    let mut at = 0;
    while at + 8 <= memory.len() {
        if memory[at..at + 8] == *b"RSD PTR " {
            fix_rsdp_at(memory, at);
            let revision = memory.get(at + 15).copied().unwrap_or(0);
            let xsdt = address_at(memory, at + 24, true).filter(|address| revision >= 2 && *address != 0);
            let (root, wide) = match xsdt {
                Some(address) => (Some(address), true),
                None => (address_at(memory, at + 16, false), false),
            };
            if let Some(root) = root.and_then(|address| offset_of(address, memory)) {
                let length = address_at(memory, root + 4, false).unwrap_or(0) as usize;
                let width = if wide { 8 } else { 4 };
                let entries = length.saturating_sub(HEADER) / width;
                for index in 0..entries.min(64) {
                    let entry = address_at(memory, root + HEADER + index * width, wide);
                    if let Some(offset) = entry.and_then(|address| offset_of(address, memory)) {
                        fix_table_at(memory, offset);
                    }
                }
                fix_table_at(memory, root);
            }
        }
        at += 16;
    }
}

/// Looks at everything a device scope offers.
fn walk_scope(scope: &DeviceScope<'_>) {
    let hops = scope.path().count();
    assert_eq!(hops, scope.path_len());
    assert!(hops >= 1, "a checked scope has at least one hop");
    for hop in scope.path() {
        assert!(hop.device < 32 && hop.function < 8, "checked paths hold valid hops");
    }
    let direct = scope.direct_address();
    assert_eq!(direct.is_some(), hops == 1);
    let resolved = scope.resolve(|bridge| Some(bridge.bus.wrapping_add(1)));
    assert!(resolved.is_some());
    if hops == 1 {
        assert_eq!(resolved, direct);
    }
    assert_eq!(scope.resolve(|_| None).is_some(), hops == 1);
    let _ = (scope.kind.type_code(), scope.flags, scope.enumeration_id, scope.start_bus);
}

/// Walks every structure and scope of a checked DMAR table and asks it
/// which unit serves a few devices.
fn walk_dmar(dmar: &Dmar<'_>) {
    assert!((12..=64).contains(&dmar.host_address_width));
    let mut devices = Vec::new();
    for (index, structure) in dmar.structures().enumerate() {
        match structure {
            RemappingStructure::Drhd(unit) => {
                assert_eq!(unit.index, index);
                assert!(unit.register_base != 0 && unit.register_base & 0xfff == 0);
                let _ = (unit.include_pci_all(), unit.register_size());
                for scope in unit.scopes() {
                    walk_scope(&scope);
                    devices.extend(scope.direct_address());
                }
            }
            RemappingStructure::Rmrr(region) => {
                assert_eq!(region.index, index);
                assert!(region.pages() >= 1);
                region.scopes().for_each(|scope| walk_scope(&scope));
            }
            RemappingStructure::Atsr(report) => {
                let _ = report.all_ports();
                report.scopes().for_each(|scope| walk_scope(&scope));
            }
            RemappingStructure::Other { index: other, .. } => assert_eq!(other, index),
        }
    }
    let _ = (dmar.units().count(), dmar.reserved_regions().count(), dmar.ats_reports().count());
    let _ = (dmar.flags.interrupt_remapping(), dmar.flags.x2apic_opt_out(), dmar.flags.dma_control_opt_in());
    devices.push(PciAddress { bus: 0, device: 3, function: 0 });
    devices.push(PciAddress { bus: 1, device: 0, function: 0 });
    for device in devices.iter().take(16) {
        for segment in [0, 1] {
            let _ = dmar.unit_for(segment, *device, &devices[..1], |bridge| Some(bridge.bus.wrapping_add(1)));
            let _ = dmar.unit_for(segment, *device, &[], |_| None);
        }
    }
}

/// Walks a checked MCFG table and checks its look-ups against its regions.
fn walk_mcfg(mcfg: &Mcfg<'_>) {
    let regions: Vec<_> = mcfg.regions().collect();
    for region in &regions {
        assert!(region.start_bus <= region.end_bus);
        assert!(region.size() > 0);
        let _ = region.start();
        for bus in [region.start_bus, region.end_bus] {
            let found = mcfg.region_for(region.segment, bus).expect("a region covers its own buses");
            assert_eq!(found, *region, "regions of one segment never overlap");
            assert!(region.config_address(bus, 31, 7, 0xfff).is_some());
        }
        assert_eq!(region.config_address(region.start_bus, 32, 0, 0), None);
        if region.start_bus > 0 {
            assert_eq!(region.config_address(region.start_bus - 1, 0, 0, 0), None);
        }
    }
}

/// `acpi-dmar`: a control byte, then a DMAR table.
pub fn dmar(data: &[u8]) {
    let Some(table) = controlled_table(data) else { return };
    if let Ok(dmar) = Dmar::parse(&table) {
        walk_dmar(&dmar);
    }
}

/// `acpi-mcfg`: a control byte, then an MCFG table.
pub fn mcfg(data: &[u8]) {
    let Some(table) = controlled_table(data) else { return };
    if let Ok(mcfg) = Mcfg::parse(&table) {
        walk_mcfg(&mcfg);
    }
}

/// `acpi-aml`: a DSDT's AML (no header, so nothing to fix up). The walk
/// ends, with host bridges or an error; it is a pure function of its
/// input; and a bridge it reports is named by a `Device` in the input.
pub fn aml(data: &[u8]) {
    let found = acpi_tables::aml::host_bridges(data);
    assert_eq!(found, acpi_tables::aml::host_bridges(data));
    for bridge in found.iter().flatten() {
        assert!(data.windows(4).any(|name| name == bridge.name), "{bridge:?} is named in the input");
    }
}

/// `acpi-root`: a control byte, then firmware memory at [`MEMORY_BASE`]
/// holding an RSDP, its root table and the tables it lists. Finds the
/// RSDP by scanning, reads the root table, finds DMAR and MCFG, and builds
/// a snapshot, which must read back the same tables.
pub fn root(data: &[u8]) {
    let Some((&control, image)) = data.split_first() else { return };
    let mut image = image.to_vec();
    if control & FIX_CHECKSUM != 0 {
        fix_memory(&mut image);
    }
    let memory = SliceMemory { base: MEMORY_BASE, bytes: &image };
    let end = MEMORY_BASE + image.len() as u64;
    let Ok((address, rsdp)) = Rsdp::scan(&memory, MEMORY_BASE, end) else { return };
    assert!(address.is_multiple_of(16) && (MEMORY_BASE..end).contains(&address));
    assert_eq!(Rsdp::read(&memory, address), Ok(rsdp));
    let (kind, root_address) = rsdp.root_table();
    let mut root_buffer = vec![0u8; TABLE_BUFFER];
    let Ok(root) = RootTable::read(&memory, kind, root_address, &mut root_buffer) else { return };
    assert_eq!(root.kind(), kind);
    let entries: Vec<u64> = root.entries().collect();
    assert_eq!(entries.len(), root.len());
    find_tables(&memory, &root);
    let mut out = vec![0u8; 64 * 1024];
    if let Ok(used) = snapshot::build(&memory, address, &mut out) {
        let copy = SnapshotMemory::new(&out[..used]).expect("a snapshot just built reads back");
        assert_eq!(copy.rsdp_address(), address);
        let mut copy_buffer = vec![0u8; TABLE_BUFFER];
        let copied = copy.root(&mut copy_buffer).expect("the copied root table reads back");
        assert_eq!(copied.entries().collect::<Vec<_>>(), entries);
        for entry in entries.iter().copied().filter(|entry| *entry != 0).take(8) {
            let mut header = [0u8; HEADER];
            let mut original = [0u8; HEADER];
            assert!(memory.read(entry, &mut original), "build copied only readable tables");
            assert!(copy.read(entry, &mut header), "every listed table is in the snapshot");
            assert_eq!(header, original);
        }
    }
}

/// Finds DMAR and MCFG through `root` in `memory` and walks them.
fn find_tables(memory: &impl TableMemory, root: &RootTable<'_>) {
    let mut buffer = vec![0u8; TABLE_BUFFER];
    if let Ok(Some(dmar)) = Dmar::find(memory, root, &mut buffer) {
        walk_dmar(&dmar);
    }
    if let Ok(Some(mcfg)) = Mcfg::find(memory, root, &mut buffer) {
        walk_mcfg(&mcfg);
    }
    let _ = root.find(memory, *b"APIC", &mut buffer);
}

/// `acpi-snapshot`: a control byte, then a snapshot as the kernel hands it
/// to servers. Opens it, reads the RSDP and root table, finds DMAR and MCFG.
pub fn snapshot(data: &[u8]) {
    let Some((&control, bytes)) = data.split_first() else { return };
    let mut bytes = bytes.to_vec();
    if control & FIX_CHECKSUM != 0 {
        fix_snapshot(&mut bytes);
    }
    let Ok(copy) = SnapshotMemory::new(&bytes) else { return };
    let _ = Rsdp::read(&copy, copy.rsdp_address());
    let mut root_buffer = vec![0u8; TABLE_BUFFER];
    if let Ok(root) = copy.root(&mut root_buffer) {
        find_tables(&copy, &root);
    }
}

/// Fixes the checksums of every table a snapshot's directory lists.
fn fix_snapshot(bytes: &mut [u8]) {
    const DIRECTORY: usize = 24;
    if bytes.len() < DIRECTORY {
        return;
    }
    let count = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]).min(48) as usize;
    let rsdp = address_at(bytes, 16, true).unwrap_or(0);
    for index in 0..count {
        let at = DIRECTORY + index * 16;
        let (Some(physical), Some(length), Some(offset)) =
            (address_at(bytes, at, true), address_at(bytes, at + 8, false), address_at(bytes, at + 12, false))
        else {
            return;
        };
        let (offset, length) = (offset as usize, length as usize);
        let Some(table) = offset.checked_add(length).and_then(|end| bytes.get_mut(offset..end)) else { continue };
        if physical == rsdp {
            fix_rsdp_at(table, 0);
        } else {
            fix_table(FIX_CHECKSUM, table);
        }
    }
}
