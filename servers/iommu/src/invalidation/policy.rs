//! Which invalidations a table change needs, given the unit's capabilities.
//!
//! Context-cache invalidation always precedes IOTLB invalidation, and any
//! invalidation also flushes the unit's write buffer, so a write-buffer
//! flush is asked for only when nothing else is.

use heapless::Vec;

use super::scope::{AlignedBlocks, ContextScope, IotlbScope};
use crate::capability::Capabilities;
use crate::domain::DomainId;
use crate::range::IovaRange;

/// Page-selective invalidations worth issuing for one change before one
/// domain-selective invalidation becomes the cheaper choice.
pub const MAX_PAGE_INVALIDATIONS: usize = 8;

/// The invalidations a change needs, in the order to perform them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Invalidation {
    /// Context-cache invalidation, first.
    pub context: Option<ContextScope>,
    /// IOTLB invalidations, after the context cache.
    pub iotlb: Vec<IotlbScope, MAX_PAGE_INVALIDATIONS>,
    /// Flush the write buffer (RWBF units) when nothing else is needed.
    pub write_buffer: bool,
}

impl Invalidation {
    /// True if the change needs nothing.
    pub fn is_empty(&self) -> bool {
        self.context.is_none() && self.iotlb.is_empty() && !self.write_buffer
    }

    fn write_buffer_only(capabilities: &Capabilities) -> Self {
        Self { write_buffer: capabilities.write_buffer_flush, ..Self::default() }
    }

    fn with_iotlb(context: Option<ContextScope>, scope: IotlbScope) -> Self {
        let mut iotlb = Vec::new();
        // Capacity is at least one, so the push cannot fail.
        let _ = iotlb.push(scope);
        Self { context, iotlb, write_buffer: false }
    }
}

/// Page-selective invalidations of `range`, or one domain-selective one if
/// the unit lacks PSI or too many blocks would be needed.
fn pages(capabilities: &Capabilities, domain: DomainId, range: IovaRange, leaf_only: bool) -> Invalidation {
    let domain_wide = Invalidation::with_iotlb(None, IotlbScope::Domain(domain));
    if !capabilities.page_selective_invalidation {
        return domain_wide;
    }
    let mut iotlb = Vec::new();
    for (address, order) in AlignedBlocks::new(range, capabilities.max_address_mask) {
        if iotlb.push(IotlbScope::Pages { domain, address, order, leaf_only }).is_err() {
            return domain_wide;
        }
    }
    Invalidation { context: None, iotlb, write_buffer: false }
}

/// After a context entry went from not present to present. On a unit in
/// caching mode the not-present entry may be cached, tagged with domain 0,
/// and the new domain may hold cached faults; a root entry made present
/// for a new bus may be cached too, hence the global context invalidation.
pub fn context_installed(
    capabilities: &Capabilities,
    source_id: u16,
    domain: DomainId,
    new_root_entry: bool,
) -> Invalidation {
    if !capabilities.caching_mode {
        return Invalidation::write_buffer_only(capabilities);
    }
    let context = if new_root_entry {
        ContextScope::Global
    } else {
        ContextScope::Device { domain: DomainId::from_raw(0), source_id }
    };
    Invalidation::with_iotlb(Some(context), IotlbScope::Domain(domain))
}

/// After a present context entry tagged `old_domain` was cleared: the
/// cached entry and every translation cached under it must go.
pub fn context_cleared(source_id: u16, old_domain: DomainId) -> Invalidation {
    let context = ContextScope::Device { domain: old_domain, source_id };
    Invalidation::with_iotlb(Some(context), IotlbScope::Domain(old_domain))
}

/// After not-present entries in `range` were made present. Only caching
/// mode caches not-present entries; new tables may have been linked, so
/// the paging-structure caches are invalidated too.
pub fn mapped(capabilities: &Capabilities, domain: DomainId, range: IovaRange) -> Invalidation {
    if capabilities.caching_mode {
        pages(capabilities, domain, range, false)
    } else {
        Invalidation::write_buffer_only(capabilities)
    }
}

/// After present entries in `range` were cleared; `tables_unlinked` says
/// whether table pages were unlinked, which paging-structure caches may
/// still point to.
pub fn unmapped(
    capabilities: &Capabilities,
    domain: DomainId,
    range: IovaRange,
    tables_unlinked: bool,
) -> Invalidation {
    if cfg!(feature = "mutant-unmap-no-iotlb-flush") {
        return Invalidation::default();
    }
    pages(capabilities, domain, range, !tables_unlinked)
}

/// Before a domain no context entry points at any more is destroyed: a
/// domain-selective IOTLB invalidation, which takes its paging-structure
/// caches too, so neither its table pages nor its id are reused under a
/// stale cache.
pub fn domain_retired(domain: DomainId) -> Invalidation {
    Invalidation::with_iotlb(None, IotlbScope::Domain(domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU_CAP: u64 = 0x00d2_008c_2226_0206;

    fn caps(cap: u64) -> Capabilities {
        Capabilities::decode(cap, 0xf00f4a).unwrap()
    }

    fn domain(value: u16) -> DomainId {
        DomainId::new(value, &caps(QEMU_CAP)).unwrap()
    }

    #[test]
    fn installs_need_nothing_without_caching_mode() {
        let plain = caps(QEMU_CAP);
        assert!(context_installed(&plain, 0x18, domain(1), true).is_empty());
        let rwbf = caps(QEMU_CAP | 1 << 4);
        let needed = context_installed(&rwbf, 0x18, domain(1), false);
        assert!(needed.write_buffer && needed.context.is_none() && needed.iotlb.is_empty());
    }

    #[test]
    fn installs_in_caching_mode_invalidate_the_not_present_entry() {
        let caching = caps(QEMU_CAP | 1 << 7);
        let needed = context_installed(&caching, 0x18, domain(4), false);
        assert_eq!(needed.context, Some(ContextScope::Device { domain: DomainId::from_raw(0), source_id: 0x18 }));
        assert_eq!(needed.iotlb.as_slice(), [IotlbScope::Domain(domain(4))]);
        assert_eq!(context_installed(&caching, 0x18, domain(4), true).context, Some(ContextScope::Global));
    }

    #[test]
    fn clears_invalidate_the_old_domain() {
        let needed = context_cleared(0x20, domain(9));
        assert_eq!(needed.context, Some(ContextScope::Device { domain: domain(9), source_id: 0x20 }));
        assert_eq!(needed.iotlb.as_slice(), [IotlbScope::Domain(domain(9))]);
    }

    #[test]
    fn unmaps_use_page_selective_blocks_until_too_many() {
        let plain = caps(QEMU_CAP);
        let range = IovaRange { start: 0x1000, pages: 3 };
        let needed = unmapped(&plain, domain(2), range, false);
        assert_eq!(
            needed.iotlb.as_slice(),
            [
                IotlbScope::Pages { domain: domain(2), address: 0x1000, order: 0, leaf_only: true },
                IotlbScope::Pages { domain: domain(2), address: 0x2000, order: 1, leaf_only: true },
            ]
        );
        let released = unmapped(&plain, domain(2), range, true);
        assert!(matches!(released.iotlb[0], IotlbScope::Pages { leaf_only: false, .. }));
        let ragged = IovaRange { start: 0x1000, pages: 0x7fff };
        assert_eq!(unmapped(&plain, domain(2), ragged, false).iotlb.as_slice(), [IotlbScope::Domain(domain(2))]);
        let no_psi = caps(QEMU_CAP & !(1 << 39));
        assert_eq!(unmapped(&no_psi, domain(2), range, false).iotlb.as_slice(), [IotlbScope::Domain(domain(2))]);
    }

    #[test]
    fn maps_invalidate_only_in_caching_mode() {
        let range = IovaRange { start: 0x40_0000, pages: 512 };
        assert!(mapped(&caps(QEMU_CAP), domain(2), range).is_empty());
        let needed = mapped(&caps(QEMU_CAP | 1 << 7), domain(2), range);
        assert_eq!(
            needed.iotlb.as_slice(),
            [IotlbScope::Pages { domain: domain(2), address: 0x40_0000, order: 9, leaf_only: false }]
        );
    }
}
