//! Builders for synthesized ACPI tables: this crate's unit tests, and other crates' with the `testing` feature.

pub mod qemu;

/// An RSDP with OEM id `BOCHS `: revision 0 is the 20-byte pointer to
/// `rsdt`; revision 2 adds the length, `xsdt` and the extended checksum.
pub fn rsdp(revision: u8, rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut bytes = b"RSD PTR ".to_vec();
    bytes.push(0);
    bytes.extend_from_slice(b"BOCHS ");
    bytes.push(revision);
    bytes.extend_from_slice(&rsdt.to_le_bytes());
    if revision >= 2 {
        bytes.extend_from_slice(&36u32.to_le_bytes());
        bytes.extend_from_slice(&xsdt.to_le_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 0]);
    }
    fix_checksum(&mut bytes[..20], 8);
    if revision >= 2 {
        fix_checksum(&mut bytes, 32);
    }
    bytes
}

/// A complete table with a correct length and checksum.
pub fn table(signature: [u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&signature);
    bytes.extend_from_slice(&((36 + body.len()) as u32).to_le_bytes());
    bytes.push(revision);
    bytes.push(0);
    bytes.extend_from_slice(b"OEMID ");
    bytes.extend_from_slice(b"OEMTABLE");
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(b"TEST");
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(body);
    fix_checksum(&mut bytes, 9);
    bytes
}

/// Rewrites the byte at `position` so that all of `bytes` sums to zero.
pub fn fix_checksum(bytes: &mut [u8], position: usize) {
    bytes[position] = 0;
    let sum = bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte));
    bytes[position] = sum.wrapping_neg();
}

/// A device scope of `scope_type` with this enumeration id, start bus and path.
pub fn scope(scope_type: u8, enumeration_id: u8, start_bus: u8, path: &[(u8, u8)]) -> Vec<u8> {
    let mut bytes = vec![scope_type, (6 + 2 * path.len()) as u8, 0, 0, enumeration_id, start_bus];
    for (device, function) in path {
        bytes.extend_from_slice(&[*device, *function]);
    }
    bytes
}

/// A DRHD (remapping unit) with these flags (bit 0: INCLUDE_PCI_ALL), segment, register base and scopes.
pub fn drhd(flags: u8, segment: u16, base: u64, scopes: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = scopes.concat();
    let mut bytes = vec![0, 0];
    bytes.extend_from_slice(&((16 + body.len()) as u16).to_le_bytes());
    bytes.extend_from_slice(&[flags, 0]);
    bytes.extend_from_slice(&segment.to_le_bytes());
    bytes.extend_from_slice(&base.to_le_bytes());
    bytes.extend(body);
    bytes
}

/// An RMRR (reserved region) of segment for `base..=limit` and these scopes.
pub fn rmrr(segment: u16, base: u64, limit: u64, scopes: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = scopes.concat();
    let mut bytes = vec![1, 0];
    bytes.extend_from_slice(&((24 + body.len()) as u16).to_le_bytes());
    bytes.extend_from_slice(&[0, 0]);
    bytes.extend_from_slice(&segment.to_le_bytes());
    bytes.extend_from_slice(&base.to_le_bytes());
    bytes.extend_from_slice(&limit.to_le_bytes());
    bytes.extend(body);
    bytes
}

/// An ATSR of segment with these flags and scopes.
pub fn atsr(flags: u8, segment: u16, scopes: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = scopes.concat();
    let mut bytes = vec![2, 0];
    bytes.extend_from_slice(&((8 + body.len()) as u16).to_le_bytes());
    bytes.extend_from_slice(&[flags, 0]);
    bytes.extend_from_slice(&segment.to_le_bytes());
    bytes.extend(body);
    bytes
}

/// A whole DMAR table: its host-address-width field (width − 1), flags and structures.
pub fn dmar(width_field: u8, flags: u8, structures: &[Vec<u8>]) -> Vec<u8> {
    let mut body = vec![width_field, flags];
    body.extend_from_slice(&[0; 10]);
    body.extend(structures.concat());
    table(*b"DMAR", 1, &body)
}
