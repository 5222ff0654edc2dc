//! Register-based invalidation commands, for units without queued invalidation.
//!
//! QEMU 7.2 ignores these while queued invalidation is enabled, and starts
//! them only on an 8-byte write (or a write to the upper half).

use super::descriptor::{DOMAIN, GLOBAL, SELECTIVE};
use super::scope::{ContextScope, Drain, IotlbScope};
use crate::registers::{ccmd, iotlb};

/// The CCMD value that starts a context-cache invalidation.
pub fn context_command(scope: ContextScope) -> u64 {
    let fields = match scope {
        ContextScope::Global => GLOBAL << ccmd::CIRG_SHIFT,
        ContextScope::Domain(domain) => DOMAIN << ccmd::CIRG_SHIFT | u64::from(domain.get()),
        ContextScope::Device { domain, source_id } => {
            SELECTIVE << ccmd::CIRG_SHIFT | u64::from(source_id) << ccmd::SID_SHIFT | u64::from(domain.get())
        }
    };
    ccmd::ICC | fields
}

/// The granularity the unit actually performed (CCMD.CAIG) once ICC is
/// clear; 0 means the request was refused.
pub fn context_done_granularity(ccmd_value: u64) -> u8 {
    (ccmd_value >> ccmd::CAIG_SHIFT & 3) as u8
}

/// An IOTLB invalidation through registers: the IVA value to write first
/// (page-selective only), then the IOTLB register value that starts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IotlbCommand {
    /// Value for the invalidate-address register, if any.
    pub address: Option<u64>,
    /// Value for the IOTLB invalidate register.
    pub command: u64,
}

/// The register writes that perform an IOTLB invalidation.
pub fn iotlb_command(scope: IotlbScope, drain: Drain) -> IotlbCommand {
    let drain_bits = if drain.reads { iotlb::DR } else { 0 } | if drain.writes { iotlb::DW } else { 0 };
    let (granularity, domain, address) = match scope {
        IotlbScope::Global => (GLOBAL, 0, None),
        IotlbScope::Domain(domain) => (DOMAIN, domain.get(), None),
        IotlbScope::Pages { domain, address, order, leaf_only } => {
            let hint = if leaf_only { iotlb::IVA_IH } else { 0 };
            (SELECTIVE, domain.get(), Some(address & !0xfff | hint | u64::from(order & 0x3f)))
        }
    };
    let command = iotlb::IVT | granularity << iotlb::IIRG_SHIFT | drain_bits | u64::from(domain) << iotlb::DID_SHIFT;
    IotlbCommand { address, command }
}

/// The granularity the unit actually performed (IAIG) once IVT is clear;
/// 0 means the request was refused.
pub fn iotlb_done_granularity(iotlb_value: u64) -> u8 {
    (iotlb_value >> iotlb::IAIG_SHIFT & 3) as u8
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
    fn context_commands() {
        assert_eq!(context_command(ContextScope::Global), 0xa000_0000_0000_0000);
        assert_eq!(context_command(ContextScope::Domain(domain(7))), 0xc000_0000_0000_0007);
        let device = context_command(ContextScope::Device { domain: domain(7), source_id: 0x0100 });
        assert_eq!(device, 0xe000_0000_0100_0007);
        // QEMU's writable mask for CCMD.
        assert_eq!(device & !0xe000_0003_ffff_ffff, 0);
        assert_eq!(context_done_granularity(1 << 59), 1);
        assert_eq!(context_done_granularity(0), 0);
    }

    #[test]
    fn iotlb_commands() {
        let both = Drain { reads: true, writes: true };
        let global = iotlb_command(IotlbScope::Global, Drain::default());
        assert_eq!(global, IotlbCommand { address: None, command: 0x9000_0000_0000_0000 });
        let domain_command = iotlb_command(IotlbScope::Domain(domain(2)), both);
        assert_eq!(domain_command, IotlbCommand { address: None, command: 0xa003_0002_0000_0000 });
        let pages = IotlbScope::Pages { domain: domain(2), address: 0x4000, order: 2, leaf_only: true };
        let page_command = iotlb_command(pages, both);
        assert_eq!(page_command, IotlbCommand { address: Some(0x4042), command: 0xb003_0002_0000_0000 });
        // QEMU's writable masks for the IOTLB and IVA registers.
        assert_eq!(page_command.command & !0xb003_ffff_0000_0000, 0);
        assert_eq!(page_command.address.unwrap_or(0) & !0xffff_ffff_ffff_f07f, 0);
        assert_eq!(iotlb_done_granularity(3 << 57), 3);
    }
}
