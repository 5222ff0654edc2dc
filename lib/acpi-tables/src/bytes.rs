//! Little-endian field reads from byte slices that fail instead of panicking.

/// The byte at `offset`, if the slice has it.
pub(crate) fn u8_at(bytes: &[u8], offset: usize) -> Option<u8> {
    bytes.get(offset).copied()
}

/// The `N` bytes starting at `offset`, if the slice has them all.
pub(crate) fn array_at<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    let end = offset.checked_add(N)?;
    bytes.get(offset..end)?.try_into().ok()
}

/// The little-endian `u16` at `offset`.
pub(crate) fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    array_at(bytes, offset).map(u16::from_le_bytes)
}

/// The little-endian `u32` at `offset`.
pub(crate) fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    array_at(bytes, offset).map(u32::from_le_bytes)
}

/// The little-endian `u64` at `offset`.
pub(crate) fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    array_at(bytes, offset).map(u64::from_le_bytes)
}

/// The byte sum of `bytes` modulo 256; ACPI checksums make it zero.
pub(crate) fn byte_sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fail_past_the_end_and_on_overflowing_offsets() {
        let bytes = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(u16_at(&bytes, 0), Some(0x0201));
        assert_eq!(u32_at(&bytes, 4), Some(0x0807_0605));
        assert_eq!(u64_at(&bytes, 0), Some(0x0807_0605_0403_0201));
        assert_eq!(u64_at(&bytes, 1), None);
        assert_eq!(u16_at(&bytes, 7), None);
        assert_eq!(u8_at(&bytes, 8), None);
        assert_eq!(u32_at(&bytes, usize::MAX), None);
        assert_eq!(array_at::<2>(&bytes, usize::MAX - 1), None);
    }

    #[test]
    fn byte_sum_wraps() {
        assert_eq!(byte_sum(&[0xff, 0x01]), 0);
        assert_eq!(byte_sum(&[]), 0);
        assert_eq!(byte_sum(&[0x80, 0x80, 0x03]), 3);
    }
}
