//! Reading fuzzer bytes as a stream of small decisions that never fails.
//!
//! Once the bytes run out every read yields zero, so a short input is still
//! a whole run; that keeps every input meaningful to the target and lets
//! libFuzzer shrink inputs freely.

/// The unread part of a fuzz input.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads from the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// True once every byte was read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The next byte, or 0.
    pub fn u8(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((first, rest)) => {
                self.bytes = rest;
                *first
            }
            None => 0,
        }
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// The next four bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// The next eight bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    /// A choice among `count` options (0 when `count` is 0).
    pub fn below(&mut self, count: usize) -> usize {
        if count == 0 { 0 } else { usize::from(self.u8()) % count }
    }

    /// One bit of decision.
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }

    /// Up to `len` next bytes (fewer at the end of the input).
    pub fn take(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.bytes.split_at(len.min(self.bytes.len()));
        self.bytes = rest;
        taken
    }

    /// Every byte not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_zeroes_past_the_end() {
        let mut input = Input::new(&[1, 2, 3, 4, 5]);
        assert_eq!(input.u16(), 0x0201);
        assert_eq!(input.take(2), [3, 4]);
        assert_eq!(input.u32(), 5);
        assert!(input.is_empty());
        assert_eq!(input.u64(), 0);
        assert_eq!(input.below(0), 0);
    }
}
