//! Frames into domains and out again, with the IOTLB invalidated before a pin goes.
//!
//! A domain's invalidations go to every unit its context entries have been
//! installed on, and to no other: a unit that never walked the domain
//! cannot have cached it.

use capabilities::ErrorCode;

use super::domains::MAX_MAPPINGS;
use super::domains::{Domain, DomainIndex, Domains, Mapping, MappingOwner, iova_error};
use super::kernel::{Kernel, Pin};
use super::quota::{Charge, KERNEL_MAPPINGS, UserPages};
use super::{Hardware, Platform};
use crate::invalidation::policy;
use crate::memory::PAGE_SIZE;
use crate::pagetable::{Access, PageTableError};
use crate::range::IovaRange;

/// Where a new mapping goes in its domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Exactly at this I/O virtual address (a user chooses its own).
    At(u64),
    /// Wherever the allocator finds room, with the last byte at or below
    /// this address (a driver's device DMA mask).
    Below(u64),
}

/// A frame to map: which, where, for whom, and within what quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewMapping {
    /// The domain to map into.
    pub domain: DomainIndex,
    /// Who may unmap it, and whose quota it is charged to.
    pub owner: MappingOwner,
    /// Slot of the frame capability received with the request.
    pub frame: u32,
    /// Where it goes.
    pub placement: Placement,
    /// Device writes allowed.
    pub writable: bool,
    /// Pages `owner` may have mapped in all.
    pub quota: u64,
}

/// A pin that is released when dropped, unless kept.
struct PinGuard<'k, K: Kernel> {
    kernel: &'k mut K,
    pin: Pin,
    armed: bool,
}

impl<'k, K: Kernel> PinGuard<'k, K> {
    /// Pins `frame` for device reads, and writes if `writable`: the kernel
    /// refuses a device access the frame's sender may not make.
    fn pin(kernel: &'k mut K, frame: u32, writable: bool) -> Result<Self, ErrorCode> {
        let pin = kernel.pin(frame, writable)?;
        Ok(Self { kernel, pin, armed: true })
    }

    /// Keeps the pin past the guard: it is recorded in a mapping, or
    /// must outlive a failed invalidation.
    fn keep(mut self) {
        self.armed = false;
    }
}

impl<K: Kernel> Drop for PinGuard<'_, K> {
    fn drop(&mut self) {
        if self.armed {
            self.kernel.unpin(self.pin.handle);
        }
    }
}

/// Maps `new.frame` into its domain; the I/O virtual address it got and
/// the pages it holds.
/// Nothing of a failed map stays mapped or pinned, unless the IOTLB could
/// not be told to forget it (then the frame stays pinned, never reused).
pub(super) fn map<P: Platform>(
    hw: &mut Hardware<P>,
    domains: &mut Domains,
    k: &mut impl Kernel,
    new: NewMapping,
    mut charge: Option<Charge<'_>>,
) -> Result<(u64, u64), ErrorCode> {
    let pin = PinGuard::pin(k, new.frame, new.writable)?;
    let pages = pin.pin.pages;
    if domains.pages_of(new.owner).saturating_add(pages) > new.quota {
        return Err(ErrorCode::QuotaExceeded);
    }
    if matches!(new.owner, MappingOwner::Ioas(_)) && domains.user_mapping_count() >= MAX_MAPPINGS - KERNEL_MAPPINGS {
        // The rest are kept for trusted drivers' DMA handles.
        return Err(ErrorCode::QuotaExceeded);
    }
    let domain = domains.get_mut(new.domain).ok_or(ErrorCode::ObjectDeleted)?;
    let (domain_id, units) = (domain.id, domain.units);
    let (iova, written) = match map_in(hw, domain, new.placement, pin.pin, new.writable, charge.as_mut()) {
        Ok(placed) => placed,
        Err(MapFailure::Refused(code)) => return Err(code),
        Err(MapFailure::StillCached) => {
            error!("IOTLB invalidation failed: keeping {=u64} pages pinned", pages);
            pin.keep();
            return Err(ErrorCode::OutOfMemory);
        }
    };
    let mapping = Mapping { domain: new.domain, iova, pages, pin: pin.pin.handle, owner: new.owner };
    pin.keep();
    let invalidated = hw.invalidate(units, |capabilities| policy::mapped(capabilities, domain_id, written));
    if invalidated.is_err() || domains.record(mapping).is_err() {
        let _ = unmap(hw, domains, k, mapping, charge);
        return Err(ErrorCode::OutOfMemory);
    }
    Ok((iova, pages))
}

/// Why [`map_in`] failed.
enum MapFailure {
    /// Nothing was mapped; the code says why.
    Refused(ErrorCode),
    /// Part was mapped and removed, and the IOTLB could not be told.
    StillCached,
}

/// Places `pin`'s pages in `domain` and writes their entries: the address
/// and the range the written entries cover. On failure the address is
/// free again.
fn map_in<P: Platform>(
    hw: &mut Hardware<P>,
    domain: &mut Domain,
    placement: Placement,
    pin: Pin,
    writable: bool,
    charge: Option<&mut Charge<'_>>,
) -> Result<(u64, IovaRange), MapFailure> {
    let placed = match placement {
        Placement::At(iova) => domain.iova.place(iova, pin.pages),
        Placement::Below(_) => domain.iova.allocate(pin.pages, 1),
    };
    let range = placed.map_err(|error| MapFailure::Refused(iova_error(error)))?;
    let written = write_entries(hw, domain, placement, range, pin, writable, charge);
    if written.is_err() {
        let _ = domain.iova.free(range.start);
    }
    written.map(|covered| (range.start, covered))
}

/// Writes the entries for `range`, checked against `placement`'s limit;
/// the range the written entries cover.
fn write_entries<P: Platform>(
    hw: &mut Hardware<P>,
    domain: &mut Domain,
    placement: Placement,
    range: IovaRange,
    pin: Pin,
    writable: bool,
    charge: Option<&mut Charge<'_>>,
) -> Result<IovaRange, MapFailure> {
    let end = range.start.saturating_add(range.pages.saturating_mul(PAGE_SIZE));
    if let Placement::Below(limit) = placement
        && end.saturating_sub(1) > limit
    {
        return Err(MapFailure::Refused(ErrorCode::InvalidArgument));
    }
    let access = Access { read: true, write: writable };
    let (mapped, quota_spent) = match charge {
        Some(charge) => {
            let mut pages = UserPages::new(&mut hw.pages, charge.charged, charge.limit);
            let mapped = domain.table.map(&mut pages, range.start, pin.physical, pin.pages, access);
            (mapped, *charge.charged >= charge.limit)
        }
        None => (domain.table.map(&mut hw.pages, range.start, pin.physical, pin.pages, access), false),
    };
    // Out of table pages: the owner's quota, or the server's memory.
    let out_of_pages = if quota_spent { ErrorCode::QuotaExceeded } else { ErrorCode::OutOfMemory };
    match mapped {
        Ok(mapped) => Ok(mapped.range),
        // A run that ran out of table pages part way was mapped and
        // removed again: a device may have cached some of it, so the
        // IOTLB forgets it before the frame can be reused.
        Err(PageTableError::OutOfTablePages { invalidate: Some(partial) }) => {
            let (id, units) = (domain.id, domain.units);
            match hw.invalidate(units, |capabilities| policy::unmapped(capabilities, id, partial, false)) {
                Ok(()) => Err(MapFailure::Refused(out_of_pages)),
                Err(_) => Err(MapFailure::StillCached),
            }
        }
        Err(_) => Err(MapFailure::Refused(out_of_pages)),
    }
}

/// Unmaps every mapping `owner` made, invalidating before each pin goes
/// (a mapping whose invalidation fails keeps its pin and tables).
pub(super) fn unmap_all<P: Platform>(
    hw: &mut Hardware<P>,
    domains: &mut Domains,
    k: &mut impl Kernel,
    owner: MappingOwner,
) {
    while let Some(mapping) = domains.take_any(owner) {
        let _ = unmap(hw, domains, k, mapping, None);
    }
}

/// Removes one mapping: page-table entries, the IOTLB (waiting for the
/// invalidation to finish), then the emptied tables, the pin and the
/// address (`charge`: the user account the tables are credited back to).
/// If the unit does not confirm the invalidation, the pin and the tables
/// are kept for good (`Busy`): a device may still reach them.
pub(super) fn unmap<P: Platform>(
    hw: &mut Hardware<P>,
    domains: &mut Domains,
    k: &mut impl Kernel,
    mapping: Mapping,
    charge: Option<Charge<'_>>,
) -> Result<(), ErrorCode> {
    if let Some(domain) = domains.get_mut(mapping.domain) {
        if let Ok(unmapped) = domain.table.unmap(&mut hw.pages, mapping.iova, mapping.pages) {
            let range = IovaRange { start: mapping.iova, pages: mapping.pages };
            let tables = !unmapped.unlinked.is_empty();
            let (id, units) = (domain.id, domain.units);
            if hw.invalidate(units, |capabilities| policy::unmapped(capabilities, id, range, tables)).is_err() {
                error!(
                    "IOTLB invalidation failed: keeping {=u64} pages pinned and {=usize} table pages",
                    mapping.pages,
                    unmapped.unlinked.len()
                );
                return Err(ErrorCode::Busy);
            }
            match charge {
                Some(charge) => unmapped.release_tables(&mut UserPages::new(&mut hw.pages, charge.charged, 0)),
                None => unmapped.release_tables(&mut hw.pages),
            }
        }
        let _ = domain.iova.free(mapping.iova);
    }
    k.unpin(mapping.pin);
    Ok(())
}

/// What [`unmap_range`] removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RangeUnmapped {
    /// Mappings removed.
    pub mappings: u16,
    /// The pages they held.
    pub pages: u64,
}

/// Removes every mapping of `owner` in `index` that lies wholly inside
/// `range`: their entries, then one invalidation of the whole range, then
/// the emptied tables, the pins and the addresses. Refused, changing
/// nothing, if the range cuts a mapping (`InvalidArgument`) or holds none
/// (`NotMapped`). If the unit does not confirm the invalidation, the
/// mappings are forgotten but their pins and tables kept for good (`Busy`).
pub(super) fn unmap_range<P: Platform>(
    hw: &mut Hardware<P>,
    domains: &mut Domains,
    k: &mut impl Kernel,
    index: DomainIndex,
    owner: MappingOwner,
    range: IovaRange,
    charge: Option<Charge<'_>>,
) -> Result<RangeUnmapped, ErrorCode> {
    let range = IovaRange::new(range.start, range.pages).ok_or(ErrorCode::InvalidArgument)?;
    let span = |m: &Mapping| IovaRange { start: m.iova, pages: m.pages };
    let mine = |m: &Mapping| m.domain == index && m.owner == owner;
    let inside = |m: &Mapping| mine(m) && m.iova >= range.start && span(m).last() <= range.last();
    let overlaps = |m: &Mapping| mine(m) && span(m).overlaps(&range);
    if domains.mappings().iter().any(|m| overlaps(m) && !inside(m)) {
        return Err(ErrorCode::InvalidArgument);
    }
    let (mappings, pages) =
        domains.mappings().iter().filter(|m| inside(m)).fold((0u16, 0u64), |(n, p), m| (n + 1, p + m.pages));
    if mappings == 0 {
        return Err(ErrorCode::NotMapped);
    }
    let domain = domains.get_mut(index).ok_or(ErrorCode::ObjectDeleted)?;
    // Pages between the mappings are not mapped, and are skipped.
    let unmapped =
        domain.table.unmap(&mut hw.pages, range.start, range.pages).map_err(|_| ErrorCode::InvalidArgument)?;
    let tables = !unmapped.unlinked.is_empty();
    let (id, units) = (domain.id, domain.units);
    let confirmed = hw.invalidate(units, |capabilities| policy::unmapped(capabilities, id, range, tables)).is_ok();
    if confirmed {
        match charge {
            Some(charge) => unmapped.release_tables(&mut UserPages::new(&mut hw.pages, charge.charged, 0)),
            None => unmapped.release_tables(&mut hw.pages),
        }
    } else {
        error!("IOTLB invalidation failed: keeping {=u64} pages pinned and their tables", pages);
    }
    while let Some(position) = domains.mappings().iter().position(inside) {
        let mapping = domains.take_at(position);
        if confirmed {
            if let Some(domain) = domains.get_mut(index) {
                let _ = domain.iova.free(mapping.iova);
            }
            k.unpin(mapping.pin);
        }
    }
    if confirmed { Ok(RangeUnmapped { mappings, pages }) } else { Err(ErrorCode::Busy) }
}

/// Destroys a domain no context entry points at any more, once every unit
/// it was on has forgotten it (a domain-selective invalidation). If one
/// does not confirm, the domain, its id and its tables are kept for good.
pub(super) fn destroy_domain<P: Platform>(hw: &mut Hardware<P>, domains: &mut Domains, index: DomainIndex) {
    let Some(domain) = domains.get(index) else { return };
    let id = domain.id;
    if hw.invalidate(domain.units, |_| policy::domain_retired(id)).is_err() {
        error!("domain {=u16}: the unit did not confirm its invalidation; its tables are kept", domain.id.get());
        return;
    }
    domains.destroy(&mut hw.pages, index);
}
