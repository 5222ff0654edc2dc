//! Fault reason codes and what they mean.

/// Which part of the unit a fault reason comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCategory {
    /// Legacy-mode DMA translation (root, context or page-table walk).
    Translation,
    /// Interrupt remapping.
    InterruptRemapping,
    /// Scalable-mode translation (not used by this server).
    ScalableMode,
    /// A code the specification does not define.
    Unknown,
}

/// The 8-bit fault reason of a fault record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultReason(pub u8);

impl FaultReason {
    /// Reason 2: the requester's context entry is not present, which is
    /// how a blocked requester faults.
    pub const CONTEXT_NOT_PRESENT: Self = Self(2);

    /// A short description of the reason.
    pub fn name(self) -> &'static str {
        match self.0 {
            0x01 => "root entry not present",
            0x02 => "context entry not present",
            0x03 => "context entry programmed invalidly",
            0x04 => "address beyond the guest address width",
            0x05 => "write to a page without write permission",
            0x06 => "read from a page without read permission",
            0x07 => "paging entry could not be fetched",
            0x08 => "root table could not be fetched",
            0x09 => "context entry could not be fetched",
            0x0a => "reserved bits set in root entry",
            0x0b => "reserved bits set in context entry",
            0x0c => "reserved bits set in paging entry",
            0x0d => "request type blocked by the context entry",
            0x20 => "reserved bits set in interrupt request",
            0x21 => "interrupt index beyond the remapping table",
            0x22 => "interrupt remapping entry not present",
            0x23 => "interrupt remapping table could not be fetched",
            0x24 => "reserved bits set in interrupt remapping entry",
            0x25 => "compatibility-format interrupt blocked",
            0x26 => "interrupt source id check failed",
            0x27 => "posted interrupt descriptor could not be fetched",
            0x30..=0x9f => "scalable-mode translation fault",
            _ => "unknown fault reason",
        }
    }

    /// Which part of the unit reported it.
    pub fn category(self) -> FaultCategory {
        match self.0 {
            0x01..=0x0d => FaultCategory::Translation,
            0x20..=0x27 => FaultCategory::InterruptRemapping,
            0x30..=0x9f => FaultCategory::ScalableMode,
            _ => FaultCategory::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_categories() {
        assert_eq!(FaultReason::CONTEXT_NOT_PRESENT.name(), "context entry not present");
        assert_eq!(FaultReason(5).category(), FaultCategory::Translation);
        assert_eq!(FaultReason(0x22).category(), FaultCategory::InterruptRemapping);
        assert_eq!(FaultReason(0x58).category(), FaultCategory::ScalableMode);
        assert_eq!(FaultReason(0).category(), FaultCategory::Unknown);
        assert_eq!(FaultReason(0xff).name(), "unknown fault reason");
        for code in 0..=255u8 {
            let reason = FaultReason(code);
            assert!(!reason.name().is_empty());
            assert_eq!(reason.category() == FaultCategory::Unknown, reason.name() == "unknown fault reason");
        }
    }
}
