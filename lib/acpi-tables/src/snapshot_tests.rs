//! Tests of building and reading ACPI snapshots.

use super::*;
use crate::memory::{SliceMemory, read_table};
use crate::testing::{rsdp, table};

const RSDP_AT: usize = 0xf0000;
const XSDT_AT: usize = 0x1000;
const MCFG_AT: usize = 0x2000;
const DMAR_AT: usize = 0x3000;

/// Firmware memory with an RSDP, an XSDT listing `entries`, an MCFG and a DMAR.
fn firmware(entries: &[u64]) -> Vec<u8> {
    let mut memory = vec![0u8; 0x100000];
    let mut put = |at: usize, bytes: &[u8]| memory[at..at + bytes.len()].copy_from_slice(bytes);
    put(RSDP_AT, &rsdp(2, 0, XSDT_AT as u64));
    let list: Vec<u8> = entries.iter().flat_map(|entry| entry.to_le_bytes()).collect();
    put(XSDT_AT, &table(*b"XSDT", 1, &list));
    put(MCFG_AT, &table(*b"MCFG", 1, &[0u8; 8]));
    put(DMAR_AT, &table(*b"DMAR", 1, &[38, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    memory
}

fn snapshot(memory: &[u8], room: usize) -> Result<Vec<u8>, SnapshotError> {
    let mut out = vec![0u8; room];
    let used = build(&SliceMemory { base: 0, bytes: memory }, RSDP_AT as u64, &mut out)?;
    out.truncate(used);
    Ok(out)
}

#[test]
fn a_snapshot_answers_reads_of_the_tables_at_their_old_addresses() {
    let memory = firmware(&[MCFG_AT as u64, DMAR_AT as u64]);
    let bytes = snapshot(&memory, 8192).expect("fits");
    let copy = SnapshotMemory::new(&bytes).expect("valid");
    assert_eq!(copy.rsdp_address(), RSDP_AT as u64);
    let pointer = Rsdp::read(&copy, copy.rsdp_address()).expect("RSDP copied");
    assert_eq!(pointer.root_table().1, XSDT_AT as u64);
    let mut root = [0u8; 256];
    assert_eq!(
        copy.root(&mut root).expect("root copied").entries().collect::<Vec<_>>(),
        [MCFG_AT as u64, DMAR_AT as u64]
    );
    let mut buffer = [0u8; 256];
    let dmar = read_table(&copy, DMAR_AT as u64, &mut buffer).expect("DMAR copied");
    assert_eq!(&dmar.header().signature, b"DMAR");
    let mut byte = [0u8; 1];
    assert!(!copy.read(0x5000, &mut byte), "memory outside the tables is not there");
    assert!(!copy.read(DMAR_AT as u64 + 47, &mut [0u8; 2]), "nor a read running off a table's end");
}

#[test]
fn firmware_faults_are_errors() {
    let memory = firmware(&[MCFG_AT as u64, 0x9_0000]);
    assert!(matches!(snapshot(&memory, 8192), Err(SnapshotError::Table(_))), "a listed table that is not a table");
    let memory = firmware(&[MCFG_AT as u64]);
    assert_eq!(snapshot(&memory, 900).err(), Some(SnapshotError::OutOfRoom));
    let mut broken = firmware(&[MCFG_AT as u64]);
    broken[RSDP_AT] = b'X';
    assert!(matches!(snapshot(&broken, 8192), Err(SnapshotError::Rsdp(_))));
    let many: Vec<u64> = (0..MAX_TABLES as u64).map(|_| MCFG_AT as u64).collect();
    assert_eq!(snapshot(&firmware(&many), 1 << 20).err(), Some(SnapshotError::TooManyTables));
}

#[test]
fn corrupt_snapshots_are_refused() {
    let memory = firmware(&[MCFG_AT as u64]);
    let good = snapshot(&memory, 8192).expect("fits");
    assert!(SnapshotMemory::new(&good[1..]).is_err());
    let mut zero = good.clone();
    zero[8..12].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(SnapshotMemory::new(&zero).err(), Some(SnapshotError::Malformed));
    let mut wild = good.clone();
    wild[HEADER + 12..HEADER + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(SnapshotMemory::new(&wild).err(), Some(SnapshotError::Malformed));
    let mut huge = good;
    huge[8..12].copy_from_slice(&1000u32.to_le_bytes());
    assert_eq!(SnapshotMemory::new(&huge).err(), Some(SnapshotError::Malformed));
}

#[test]
fn a_lookup_names_what_is_wrong() {
    use crate::{Dmar, Mcfg};
    let memory = firmware(&[MCFG_AT as u64]);
    let bytes = snapshot(&memory, 8192).expect("fits");
    let (mut root, mut table) = ([0u8; 1024], [0u8; 4096]);
    let missing = find_table(&bytes, &mut root, "DMAR", |tables, root| Dmar::find(tables, root, &mut table));
    assert_eq!(missing.as_ref().err().map(|e| format!("{e}")), Some("the ACPI tables have no DMAR".into()));
    let found = find_table(&bytes, &mut root, "MCFG", |tables, root| Mcfg::find(tables, root, &mut table));
    assert!(found.is_ok());
    let garbage = find_table(&[0u8; 64], &mut root, "MCFG", |tables, root| Mcfg::find(tables, root, &mut table));
    assert!(matches!(garbage, Err(LookupError::Snapshot(_))));
    let memory = firmware(&[DMAR_AT as u64]);
    let mut broken = snapshot(&memory, 8192).expect("fits");
    let at = broken.windows(4).position(|w| w == b"DMAR").expect("copied");
    broken[at + 36] = 0; // a host address width of 1 bit
    let unusable = find_table(&broken, &mut root, "DMAR", |tables, root| Dmar::find(tables, root, &mut table));
    assert!(matches!(unusable, Err(LookupError::Table("DMAR", _))), "{unusable:?}");
}

#[test]
fn the_dsdt_the_fadt_names_is_copied_and_its_aml_found() {
    const FADT_AT: usize = 0x4000;
    const DSDT_AT: usize = 0x5000;
    let mut memory = firmware(&[MCFG_AT as u64, FADT_AT as u64]);
    let aml = [0x08, b'_', b'S', b'5', b'_', 0x0a, 0x05];
    // X_DSDT at 140 wins over the 32-bit field at 40, which here is wrong.
    let mut fadt = vec![0u8; 276 - 36];
    fadt[40 - 36..44 - 36].copy_from_slice(&0x7000u32.to_le_bytes());
    fadt[140 - 36..148 - 36].copy_from_slice(&(DSDT_AT as u64).to_le_bytes());
    let fadt = table(*b"FACP", 6, &fadt);
    memory[FADT_AT..FADT_AT + fadt.len()].copy_from_slice(&fadt);
    let dsdt = table(*b"DSDT", 2, &aml);
    memory[DSDT_AT..DSDT_AT + dsdt.len()].copy_from_slice(&dsdt);
    let bytes = snapshot(&memory, 8192).expect("fits");
    let copy = SnapshotMemory::new(&bytes).expect("valid");
    let mut root = [0u8; 256];
    let root = copy.root(&mut root).expect("root");
    assert_eq!(copy.dsdt(&root), Ok(Some(&aml[..])));

    let corrupt = bytes.iter().position(|&byte| byte == b'5').expect("the AML is copied");
    let mut bad = bytes.clone();
    bad[corrupt] ^= 1;
    let copy = SnapshotMemory::new(&bad).expect("valid directory");
    assert!(matches!(copy.dsdt(&root), Err(DsdtError::Table(TableError::Checksum { .. }))));

    let without = firmware(&[MCFG_AT as u64]);
    let bytes = snapshot(&without, 8192).expect("fits");
    let copy = SnapshotMemory::new(&bytes).expect("valid");
    let mut root = [0u8; 256];
    let root = copy.root(&mut root).expect("root");
    assert_eq!(copy.dsdt(&root), Ok(None));
}

#[test]
fn a_dsdt_too_large_for_the_snapshot_is_left_out_and_said_so() {
    const FADT_AT: usize = 0x4000;
    const DSDT_AT: usize = 0x5000;
    let mut memory = firmware(&[MCFG_AT as u64, DMAR_AT as u64, FADT_AT as u64]);
    let mut fadt = vec![0u8; 276 - 36];
    fadt[40 - 36..44 - 36].copy_from_slice(&(DSDT_AT as u32).to_le_bytes());
    let fadt = table(*b"FACP", 6, &fadt);
    memory[FADT_AT..FADT_AT + fadt.len()].copy_from_slice(&fadt);
    let dsdt = table(*b"DSDT", 2, &[0x5b; 6000]);
    memory[DSDT_AT..DSDT_AT + dsdt.len()].copy_from_slice(&dsdt);
    let bytes = snapshot(&memory, 4096).expect("the other tables still fit");
    let copy = SnapshotMemory::new(&bytes).expect("valid");
    assert_eq!(copy.dsdt_left_out(), Some(6036));
    let mut root = [0u8; 256];
    let root = copy.root(&mut root).expect("root");
    assert_eq!(copy.dsdt(&root), Err(DsdtError::LeftOut { length: 6036 }));
    let mut mcfg = [0u8; 64];
    assert!(matches!(root.find(&copy, *b"MCFG", &mut mcfg), Ok(Some(_))));
    let bytes = snapshot(&memory, 16384).expect("fits");
    assert_eq!(SnapshotMemory::new(&bytes).expect("valid").dsdt_left_out(), None);
}
