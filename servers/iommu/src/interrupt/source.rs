//! Source-id validation: which requester ids may use an interrupt entry.
//!
//! Every entry the server writes checks the requester id of the message
//! that uses it, so a device can only raise the interrupts allocated to
//! it (or to a function it cannot be told apart from). The check is the
//! tightest the entry format allows around the ids the device's messages
//! may carry: its own id and the ids bridges above it substitute (a
//! PCIe-to-PCI bridge forwards with (secondary bus, 00.0)), as the DMA
//! alias walk lists them.

use capabilities::pci::Bdf;

/// The source-id check of an entry (its SVT, SQ and SID fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceCheck {
    /// Exactly this requester id (SVT 1, SQ 0).
    Exact(u16),
    /// This requester id with some function-number bits not compared
    /// (SVT 1 with a source-id qualifier: SQ 1 ignores bit 2, SQ 2 bits
    /// 2:1, SQ 3 bits 2:0).
    MaskedFunction {
        /// The id compared.
        id: u16,
        /// The qualifier, 1 to 3.
        qualifier: u8,
    },
    /// Any requester id whose bus is in `first..=last` (SVT 2).
    Buses {
        /// First bus.
        first: u8,
        /// Last bus.
        last: u8,
    },
}

/// The IO APIC's source id on QEMU's q35 (DMAR device scope: bus 0xff, 00.0).
pub const QEMU_IOAPIC_SOURCE: u16 = 0xff00;

impl SourceCheck {
    /// The (SVT, SQ, SID) fields. The bus range puts its first bus in the
    /// SID's upper byte and its last in the lower one, as the
    /// specification orders them.
    pub fn fields(self) -> (u8, u8, u16) {
        match self {
            Self::Exact(id) => (1, 0, id),
            Self::MaskedFunction { id, qualifier } => (1, qualifier.clamp(1, 3), id),
            Self::Buses { first, last } => (2, 0, u16::from(first) << 8 | u16::from(last)),
        }
    }

    /// The check the fields encode; `None` for SVT 0 (no check) or 3
    /// (reserved), which the server never writes.
    pub fn from_fields(svt: u8, sq: u8, sid: u16) -> Option<Self> {
        match (svt, sq) {
            (1, 0) => Some(Self::Exact(sid)),
            (1, qualifier) => Some(Self::MaskedFunction { id: sid, qualifier }),
            (2, 0) => Some(Self::Buses { first: (sid >> 8) as u8, last: sid as u8 }),
            _ => None,
        }
    }

    /// The tightest check that admits every id in `ids`; `None` if `ids`
    /// is empty.
    pub fn covering(ids: &[Bdf]) -> Option<Self> {
        let first = *ids.first()?;
        if ids.iter().all(|&id| id == first) {
            return Some(Self::Exact(first.requester_id()));
        }
        let same_device = ids.iter().all(|id| id.bus() == first.bus() && id.device() == first.device());
        if same_device {
            let differing = ids.iter().fold(0u8, |bits, id| bits | (id.function() ^ first.function()));
            // The qualifiers ignore function bits from the top one down.
            let qualifier = match differing {
                0b100 => 1,
                0b010 | 0b110 => 2,
                _ => 3,
            };
            return Some(Self::MaskedFunction { id: first.requester_id(), qualifier });
        }
        let (low, high) = ids.iter().fold((u8::MAX, 0u8), |(low, high), id| (low.min(id.bus()), high.max(id.bus())));
        Some(Self::Buses { first: low, last: high })
    }

    /// Whether a message with requester id `id` passes the check.
    pub fn admits(self, id: u16) -> bool {
        match self {
            Self::Exact(expected) => id == expected,
            Self::MaskedFunction { id: expected, qualifier } => {
                let mask = match qualifier {
                    0 => 0xffff,
                    1 => 0xfffb,
                    2 => 0xfff9,
                    _ => 0xfff8,
                };
                id & mask == expected & mask
            }
            Self::Buses { first, last } => (first..=last).contains(&((id >> 8) as u8)),
        }
    }
}

impl core::fmt::Display for SourceCheck {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Exact(id) => write!(f, "source {} exactly", Bdf::from_requester_id(id)),
            Self::MaskedFunction { id, qualifier } => {
                write!(f, "source {} with qualifier {qualifier}", Bdf::from_requester_id(id))
            }
            Self::Buses { first, last } if first == last => write!(f, "sources on bus {first:02x}"),
            Self::Buses { first, last } => write!(f, "sources on buses {first:02x}-{last:02x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bdf(bus: u8, device: u8, function: u8) -> Bdf {
        Bdf::new(bus, device, function).unwrap()
    }

    #[test]
    fn one_id_is_checked_exactly() {
        let check = SourceCheck::covering(&[bdf(0, 3, 0), bdf(0, 3, 0)]).unwrap();
        assert_eq!(check, SourceCheck::Exact(0x0018));
        assert!(check.admits(0x0018));
        assert!(!check.admits(0x0020) && !check.admits(0x0019) && !check.admits(0x0118));
        assert_eq!(SourceCheck::covering(&[]), None);
    }

    #[test]
    fn a_function_behind_a_pcie_to_pci_bridge_is_checked_by_its_bus() {
        // 01:01.0 forwards with (01, 00.0): both on bus 1, different devices.
        let check = SourceCheck::covering(&[bdf(1, 1, 0), bdf(1, 0, 0)]).unwrap();
        assert_eq!(check, SourceCheck::Buses { first: 1, last: 1 });
        assert!(check.admits(0x0100) && check.admits(0x0108));
        assert!(!check.admits(0x0030), "a root-bus device is refused");
        assert!(!check.admits(0x0200));
        let nested = SourceCheck::covering(&[bdf(3, 0, 0), bdf(2, 4, 0)]).unwrap();
        assert_eq!(nested, SourceCheck::Buses { first: 2, last: 3 });
    }

    #[test]
    fn quirk_aliases_of_one_device_mask_the_fewest_function_bits_the_qualifiers_allow() {
        // Functions 0 and 4 differ in bit 2 only: qualifier 1.
        let check = SourceCheck::covering(&[bdf(2, 0, 0), bdf(2, 0, 4)]).unwrap();
        assert_eq!(check, SourceCheck::MaskedFunction { id: 0x0200, qualifier: 1 });
        assert!(check.admits(0x0204) && check.admits(0x0200) && !check.admits(0x0201));
        let two = SourceCheck::covering(&[bdf(2, 0, 0), bdf(2, 0, 2)]).unwrap();
        assert_eq!(two, SourceCheck::MaskedFunction { id: 0x0200, qualifier: 2 });
        assert!(two.admits(0x0206) && !two.admits(0x0201));
        let all = SourceCheck::covering(&[bdf(2, 0, 1), bdf(2, 0, 0)]).unwrap();
        assert_eq!(all, SourceCheck::MaskedFunction { id: 0x0201, qualifier: 3 });
        assert!(all.admits(0x0207) && !all.admits(0x0208));
    }

    #[test]
    fn fields_round_trip() {
        for check in [
            SourceCheck::Exact(0xff00),
            SourceCheck::MaskedFunction { id: 0x10, qualifier: 2 },
            SourceCheck::Buses { first: 4, last: 9 },
        ] {
            let (svt, sq, sid) = check.fields();
            assert_eq!(SourceCheck::from_fields(svt, sq, sid), Some(check));
        }
        assert_eq!(SourceCheck::from_fields(0, 0, 0), None);
        assert_eq!(SourceCheck::from_fields(3, 0, 0), None);
        assert_eq!(SourceCheck::from_fields(2, 1, 0), None);
    }
}
