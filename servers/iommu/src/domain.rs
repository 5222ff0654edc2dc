//! Domain ids: the tags VT-d caches use to tell address spaces apart.

use crate::capability::Capabilities;

/// A domain id valid on some unit. Id 0 is never used: in caching mode the
/// hardware tags cached not-present entries with it, and keeping it unused
/// everywhere makes one rule for every unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainId(u16);

impl DomainId {
    /// The id `value`, if it is nonzero and below the unit's domain count.
    pub fn new(value: u16, capabilities: &Capabilities) -> Option<Self> {
        (value != 0 && u32::from(value) < capabilities.domain_count()).then_some(Self(value))
    }

    /// The raw id, as descriptors and context entries carry it.
    pub fn get(self) -> u16 {
        self.0
    }

    /// An id taken from hardware state (a context entry being replaced);
    /// may be 0 only if the hardware holds 0, which invalidations then name.
    pub(crate) fn from_raw(value: u16) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_ids_beyond_the_unit_are_refused() {
        let sixteen_bit = Capabilities::decode(0x206, 0).unwrap();
        assert_eq!(DomainId::new(0, &sixteen_bit), None);
        assert_eq!(DomainId::new(0xffff, &sixteen_bit).map(DomainId::get), Some(0xffff));
        let four_bit = Capabilities::decode(0x200, 0).unwrap();
        assert_eq!(four_bit.domain_count(), 16);
        assert_eq!(DomainId::new(15, &four_bit).map(DomainId::get), Some(15));
        assert_eq!(DomainId::new(16, &four_bit), None);
    }
}
