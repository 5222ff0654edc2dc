//! Queued-invalidation descriptors in the 128-bit legacy-mode layout.

use super::scope::{ContextScope, Drain, IotlbScope};

/// Descriptor type codes (bits 3:0).
pub mod kind {
    /// Context-cache invalidation.
    pub const CONTEXT: u8 = 1;
    /// IOTLB invalidation.
    pub const IOTLB: u8 = 2;
    /// Interrupt-entry-cache invalidation.
    pub const INTERRUPT_ENTRY: u8 = 4;
    /// Invalidation wait.
    pub const WAIT: u8 = 5;
}

/// Granularity encodings shared by the context and IOTLB descriptors
/// (bits 5:4) and registers.
pub(crate) const GLOBAL: u64 = 1;
pub(crate) const DOMAIN: u64 = 2;
pub(crate) const SELECTIVE: u64 = 3;

/// One 128-bit invalidation descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// Bits 63:0.
    pub low: u64,
    /// Bits 127:64.
    pub high: u64,
}

/// Which interrupt-remapping cache entries to invalidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptEntryScope {
    /// Every entry.
    Global,
    /// The 2^order entries from `index` on.
    Indexed {
        /// First interrupt-remapping table index.
        index: u16,
        /// Index mask: log2 of the entry count, at most 31.
        order: u8,
    },
}

/// What an invalidation-wait descriptor does when everything before it is
/// done. One or the other, never both: QEMU 7.2 aborts on a wait
/// descriptor with both the status-write and interrupt flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitAction {
    /// Write `data` (4 bytes) to physical `address`, 4-byte aligned.
    StatusWrite {
        /// Physical address of the status word.
        address: u64,
        /// Value to write.
        data: u32,
    },
    /// Raise the invalidation completion event (ICS.IWC and its interrupt).
    Interrupt,
}

impl Descriptor {
    /// Invalidates context-cache entries.
    pub fn context(scope: ContextScope) -> Self {
        let low = match scope {
            ContextScope::Global => GLOBAL << 4,
            ContextScope::Domain(domain) => DOMAIN << 4 | u64::from(domain.get()) << 16,
            ContextScope::Device { domain, source_id } => {
                SELECTIVE << 4 | u64::from(domain.get()) << 16 | u64::from(source_id) << 32
            }
        };
        Self { low: low | u64::from(kind::CONTEXT), high: 0 }
    }

    /// Invalidates IOTLB and paging-structure cache entries.
    pub fn iotlb(scope: IotlbScope, drain: Drain) -> Self {
        let drain_bits = u64::from(drain.writes) << 6 | u64::from(drain.reads) << 7;
        let (granularity, domain, high) = match scope {
            IotlbScope::Global => (GLOBAL, 0, 0),
            IotlbScope::Domain(domain) => (DOMAIN, domain.get(), 0),
            IotlbScope::Pages { domain, address, order, leaf_only } => {
                (SELECTIVE, domain.get(), address & !0xfff | u64::from(leaf_only) << 6 | u64::from(order & 0x3f))
            }
        };
        let low = u64::from(kind::IOTLB) | granularity << 4 | drain_bits | u64::from(domain) << 16;
        Self { low, high }
    }

    /// Invalidates interrupt-remapping cache entries.
    pub fn interrupt_entries(scope: InterruptEntryScope) -> Self {
        let low = match scope {
            InterruptEntryScope::Global => 0,
            InterruptEntryScope::Indexed { index, order } => {
                1 << 4 | u64::from(order & 0x1f) << 27 | u64::from(index) << 32
            }
        };
        Self { low: low | u64::from(kind::INTERRUPT_ENTRY), high: 0 }
    }

    /// Waits for every earlier descriptor; `fence` also holds back later
    /// descriptors until then. `None` if the status address is not 4-byte
    /// aligned.
    pub fn wait(action: WaitAction, fence: bool) -> Option<Self> {
        let fence_bit = u64::from(fence) << 6;
        match action {
            WaitAction::StatusWrite { address, data } => (address % 4 == 0).then_some(Self {
                low: u64::from(kind::WAIT) | 1 << 5 | fence_bit | u64::from(data) << 32,
                high: address,
            }),
            WaitAction::Interrupt => Some(Self { low: u64::from(kind::WAIT) | 1 << 4 | fence_bit, high: 0 }),
        }
    }

    /// The type code in bits 3:0.
    pub fn kind(&self) -> u8 {
        (self.low & 0xf) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Capabilities;
    use crate::domain::DomainId;

    fn domain(value: u16) -> DomainId {
        DomainId::new(value, &Capabilities::decode(0x206, 0).unwrap()).unwrap()
    }

    #[test]
    fn context_descriptors() {
        assert_eq!(Descriptor::context(ContextScope::Global), Descriptor { low: 0x11, high: 0 });
        assert_eq!(Descriptor::context(ContextScope::Domain(domain(5))), Descriptor { low: 0x0005_0021, high: 0 });
        let device = Descriptor::context(ContextScope::Device { domain: domain(0x1234), source_id: 0x0018 });
        assert_eq!(device, Descriptor { low: 0x0018_1234_0031, high: 0 });
        // QEMU refuses reserved bits 15:6 and 63:50 and a nonzero high half.
        assert_eq!(device.low & 0xfffc_0000_0000_ffc0, 0);
    }

    #[test]
    fn iotlb_descriptors() {
        let drain = Drain { reads: true, writes: true };
        assert_eq!(Descriptor::iotlb(IotlbScope::Global, Drain::default()), Descriptor { low: 0x12, high: 0 });
        assert_eq!(Descriptor::iotlb(IotlbScope::Domain(domain(3)), drain), Descriptor { low: 0x3_00e2, high: 0 });
        let pages = IotlbScope::Pages { domain: domain(3), address: 0x20_0000, order: 9, leaf_only: true };
        let descriptor = Descriptor::iotlb(pages, drain);
        assert_eq!(descriptor, Descriptor { low: 0x3_00f2, high: 0x20_0049 });
        // QEMU's reserved masks for the IOTLB descriptor.
        assert_eq!(descriptor.low & 0xffff_ffff_0000_ff00, 0);
        assert_eq!(descriptor.high & 0xf80, 0);
    }

    #[test]
    fn interrupt_entry_descriptors() {
        assert_eq!(Descriptor::interrupt_entries(InterruptEntryScope::Global).low, 0x4);
        let indexed = Descriptor::interrupt_entries(InterruptEntryScope::Indexed { index: 0x10, order: 2 });
        assert_eq!(indexed.low, 0x10_1000_0014);
    }

    #[test]
    fn wait_descriptors_set_exactly_one_action() {
        let status = Descriptor::wait(WaitAction::StatusWrite { address: 0x5000, data: 0xabcd }, false).unwrap();
        assert_eq!(status, Descriptor { low: 0xabcd_0000_0025, high: 0x5000 });
        let interrupt = Descriptor::wait(WaitAction::Interrupt, true).unwrap();
        assert_eq!(interrupt, Descriptor { low: 0x55, high: 0 });
        for descriptor in [status, interrupt] {
            assert_eq!(descriptor.kind(), kind::WAIT);
            assert_ne!(descriptor.low & 0x30, 0x30, "status write and interrupt together abort QEMU");
            assert_eq!(descriptor.low & 0xffff_ff80, 0, "QEMU's reserved bits");
        }
        assert_eq!(Descriptor::wait(WaitAction::StatusWrite { address: 0x5002, data: 1 }, false), None);
    }
}
