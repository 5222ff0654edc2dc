//! Frames whose capability was revoked: their mappings removed before anything else runs.
//!
//! The kernel revokes a pin when the frame capability it was made with,
//! or one that capability came from, is revoked: a lender taking back a
//! frame it lent to the task that mapped it. The pin still holds the
//! frame's memory, but nothing else is the mapping's owner's any more, so
//! the server removes the mapping as an unmap would (page-table entries,
//! the IOTLB, then the tables and the pin), and the owner's device faults
//! on that IOVA from then on.

use super::domains::MappingOwner;
use super::kernel::Kernel;
use super::mapping;
use super::{Platform, Service};

/// Most revoked pins one event takes: every pin the kernel can hold, so
/// one pass takes all of them.
pub const REVOKED_PER_EVENT: usize = 1024;

/// Takes every revoked pin the kernel names and removes its mapping; a
/// pin the server maps nothing with (one it keeps after an invalidation
/// the unit did not confirm) is kept, since a device may still reach it.
pub(super) fn pins_revoked<P: Platform>(s: &mut Service<P>, k: &mut impl Kernel) {
    for _ in 0..REVOKED_PER_EVENT {
        let Some(pin) = k.revoked_pin() else { return };
        let Some(mapping) = s.domains.take_pin(pin) else {
            warn!("revoked pin {=u64:#x} backs no mapping: kept", pin);
            continue;
        };
        let (owner, id) = match mapping.owner {
            MappingOwner::Ioas(id) => ("address space", u32::from(id)),
            MappingOwner::Handle(serial) => ("DMA handle", serial),
        };
        // A user's tables are credited back to the task that made the space.
        let space = match mapping.owner {
            MappingOwner::Ioas(id) => s
                .ready
                .as_ref()
                .and_then(|ready| ready.address_spaces.iter().find(|space| space.id == id))
                .map(|space| (space.task, space.id)),
            MappingOwner::Handle(_) => None,
        };
        let tables = s.config.table_page_quota;
        let charge = match space {
            Some((task, id)) => s.ready.as_mut().and_then(|ready| ready.charge(task, id, tables)),
            None => None,
        };
        // A failed unmap has said why, and keeps the pin.
        if mapping::unmap(&mut s.hw, &mut s.domains, k, mapping, charge).is_ok() {
            info!(
                "revoked frame unmapped: IOVA {=u64:#x}, {=u64} pages, of {=str} {=u32}",
                mapping.iova, mapping.pages, owner, id
            );
        }
    }
    warn!("more than {=usize} revoked pins at once: the rest wait for the next event", REVOKED_PER_EVENT);
}
