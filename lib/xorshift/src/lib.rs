//! A seeded xorshift64 generator, so that randomized tests replay exactly.
//!
//! Marsaglia's xorshift with the shifts 13, 7 and 17: one state word, no
//! allocation, `no_std`, so host unit tests, fuzz seed builders and test
//! tasks running in QEMU draw from the same kind of stream. It is not for
//! anything that must be unpredictable.
#![no_std]

/// A xorshift64 stream; a given seed always yields the same values.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A stream starting from `seed`, which must not be zero (zero is a
    /// fixed point: every value would be zero).
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next value of the stream.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// The next value reduced below `bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_marsaglias_xorshift64() {
        let mut stream = XorShift::new(1);
        assert_eq!(stream.next_u64(), 0x4082_2041);
        assert_eq!(stream.next_u64(), 0x1000_4106_0c01_1441);
    }

    #[test]
    fn the_same_seed_replays_and_bounds_hold() {
        let mut first = XorShift::new(0x2545_f491_4f6c_dd1d);
        let mut second = first.clone();
        for bound in 1..200 {
            let value = first.below(bound);
            assert!(value < bound);
            assert_eq!(second.below(bound), value);
        }
        assert_eq!(first.below(0), 0);
    }
}
