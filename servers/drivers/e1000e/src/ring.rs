//! A descriptor ring's indices: where the driver writes next, what the NIC has finished, and when the ring is full.

/// A ring of `len` descriptors shared with the NIC through its head
/// (the NIC's position) and tail (the driver's) registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ring {
    len: u16,
    /// The next descriptor the driver fills (the tail it writes).
    next: u16,
    /// The oldest descriptor the driver has not yet taken back.
    oldest: u16,
}

impl Ring {
    /// A ring of `len` descriptors, at least 8 and a multiple of 8 (the
    /// NIC's rule: the ring's length in bytes is a multiple of 128).
    pub fn new(len: u16) -> Option<Self> {
        (len >= 8 && len.is_multiple_of(8)).then_some(Self { len, next: 0, oldest: 0 })
    }

    /// Descriptors the driver has handed over and not taken back.
    pub fn in_flight(&self) -> u16 {
        (self.next + self.len - self.oldest) % self.len
    }

    /// The descriptor to fill next, unless the ring is full (one slot is
    /// always left empty, so head == tail means empty to the NIC).
    pub fn fill(&mut self) -> Option<u16> {
        if self.in_flight() == self.len - 1 {
            return None;
        }
        let index = self.next;
        self.next = (self.next + 1) % self.len;
        Some(index)
    }

    /// The tail to write after filling: one past the last filled descriptor.
    pub fn tail(&self) -> u16 {
        self.next
    }

    /// The oldest descriptor handed over, for the driver to look at; `None`
    /// when none is out.
    pub fn oldest(&self) -> Option<u16> {
        (self.in_flight() > 0).then_some(self.oldest)
    }

    /// Takes the oldest descriptor back once the NIC finished it.
    pub fn retire(&mut self) {
        if self.in_flight() > 0 {
            self.oldest = (self.oldest + 1) % self.len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_fills_to_one_short_of_full_and_wraps() {
        assert_eq!(Ring::new(4), None);
        assert_eq!(Ring::new(12), None);
        let mut ring = Ring::new(8).unwrap();
        assert_eq!(ring.oldest(), None);
        for expected in 0..7 {
            assert_eq!(ring.fill(), Some(expected));
        }
        assert_eq!(ring.fill(), None, "one slot stays empty");
        assert_eq!((ring.in_flight(), ring.tail(), ring.oldest()), (7, 7, Some(0)));
        ring.retire();
        ring.retire();
        assert_eq!(ring.fill(), Some(7));
        assert_eq!(ring.fill(), Some(0), "wraps");
        assert_eq!(ring.tail(), 1);
        for _ in 0..10 {
            ring.retire();
        }
        assert_eq!((ring.in_flight(), ring.oldest()), (0, None), "retiring past empty changes nothing");
    }
}
