//! Builders for synthesized ACPI tables used by the unit tests.

/// A complete table with a correct length and checksum.
pub(crate) fn table(signature: [u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
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
pub(crate) fn fix_checksum(bytes: &mut [u8], position: usize) {
    bytes[position] = 0;
    let sum = bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte));
    bytes[position] = sum.wrapping_neg();
}
