//! A group capability's operations: the user owner's address spaces, mappings and release.

use capabilities::ErrorCode;
use heapless::Vec;
use iommu_api::{Reply, Request};

use super::domains::MappingOwner;
use super::kernel::Kernel;
use super::mapping::{self, NewMapping, Placement, destroy_domain, unmap_all};
use super::quota::UserPages;
use super::text::{refused, refused_with};
use super::{AddressSpace, Answer, GroupCap, Minted, Platform, Service, change_ownership, domain_window, faults};
use crate::interrupt::remapping;
use crate::memory::PAGE_SIZE;
use crate::ownership::Owner;
use crate::range::IovaRange;

/// Answers a request sent with the group capability `serial` on `group`.
// Out of line, so its frame is not paid for by every request.
#[inline(never)]
pub(super) fn request<P: Platform>(s: &mut Service<P>, k: &mut impl Kernel, minted: Minted) -> Answer {
    let Minted { group, serial, request, received } = minted;
    let live = s.ready.as_ref().and_then(|r| r.group_caps.iter().find(|c| c.group == group && c.serial == serial));
    let Some(&cap) = live else {
        return refused(ErrorCode::InvalidCapability, "this group capability was released").into();
    };
    match request {
        Request::IoasCreate => create(s, cap),
        Request::Attach { ioas } => attach(s, cap, ioas),
        Request::Map { ioas, iova, writable } => map(s, k, Target { task: cap.task, ioas, writable }, iova, received),
        Request::Unmap { ioas, iova } => unmap(s, k, cap.task, ioas, iova),
        Request::Faults => faults::take(s, group).into(),
        Request::Release => release(s, k, cap),
        Request::IoasRanges { ioas, from } => ranges(s, cap.task, ioas, from),
        Request::IoasDestroy { ioas } => destroy(s, k, cap.task, ioas),
        Request::MapRange { ioas, iova, writable } => {
            map_range(s, k, Target { task: cap.task, ioas, writable }, iova, received)
        }
        Request::UnmapRange { ioas, iova, pages } => {
            unmap_range(s, k, cap.task, ioas, IovaRange { start: iova, pages })
        }
        _ => refused(ErrorCode::PermissionDenied, "a group capability cannot do that").into(),
    }
}

/// `IoasCreate`: a new, empty address space for the capability's owner.
fn create<P: Platform>(s: &mut Service<P>, cap: GroupCap) -> Answer {
    let task = cap.task;
    let quota = u64::from(s.config.mapping_quota_pages);
    let spaces_allowed = usize::from(s.config.address_space_quota);
    let Some(ready) = s.ready.as_mut() else { return stale() };
    if ready.address_spaces.iter().filter(|a| a.task == task).count() >= spaces_allowed {
        return refused(ErrorCode::QuotaExceeded, "address-space quota used up").into();
    }
    // The space's tables are built for the unit of the group it is made
    // through; other units may walk them only if built alike.
    let Some(unit) = ready.unit_of(cap.group).and_then(|unit| s.hw.units.get(usize::from(unit))) else {
        return refused(ErrorCode::NotFound, "the group's remapping unit is not driven").into();
    };
    let (capabilities, config) = (*unit.unit.capabilities(), unit.table_config);
    let (first, last) = domain_window(&config);
    let others: u32 = ready.address_spaces.iter().filter(|a| a.task == task).map(|a| a.table_pages).sum();
    let mut table_pages = 0;
    let limit = s.config.table_page_quota.saturating_sub(others);
    let mut pages = UserPages::new(&mut s.hw.pages, &mut table_pages, limit);
    let domain = match s.domains.create(&mut pages, &capabilities, config, first, last, quota) {
        Ok(domain) => domain,
        Err(code) => return refused(code, "no room for another address space").into(),
    };
    // At most MAX_ADDRESS_SPACES ids are live, so a free one is near.
    let mut id = ready.next_ioas;
    while ready.address_spaces.iter().any(|a| a.id == id) {
        id = id.wrapping_add(1);
    }
    ready.next_ioas = id.wrapping_add(1);
    if ready.address_spaces.push(AddressSpace { id, task, group: cap.group, domain, table_pages }).is_err() {
        destroy_domain(&mut s.hw, &mut s.domains, domain);
        return refused(ErrorCode::QuotaExceeded, "too many address spaces").into();
    }
    Reply::Ioas { ioas: id }.into()
}

/// `Attach`: the group translates through `ioas` (`None`: blocks).
fn attach<P: Platform>(s: &mut Service<P>, cap: GroupCap, ioas: Option<u16>) -> Answer {
    let Some(ready) = s.ready.as_mut() else { return stale() };
    if let Some(id) = ioas {
        let Some(space) = ready.own_space(id, cap.task) else {
            return refused(ErrorCode::NotFound, "no such address space of this task").into();
        };
        let unit = ready.unit_of(cap.group).and_then(|unit| s.hw.units.get(usize::from(unit)));
        let domain = s.domains.get(space.domain);
        if let (Some(unit), Some(domain)) = (unit, domain)
            && !unit.walks(domain)
        {
            return refused_with(
                ErrorCode::InvalidArgument,
                format_args!(
                    "address space {id} has tables the remapping unit at {:#x} of group {} cannot walk ({}-level, {}-bit; it walks {}-level, {}-bit): make the group an address space of its own",
                    unit.base,
                    cap.group,
                    domain.table.config().width.levels(),
                    domain.table.config().input_bits,
                    unit.table_config.width.levels(),
                    unit.table_config.input_bits
                ),
            )
            .into();
        }
    }
    match change_ownership(&mut s.hw, &mut s.domains, ready, |o, hw| o.attach(cap.group, cap.task, ioas, hw)) {
        Ok(()) => Reply::Done.into(),
        Err(_) => refused(ErrorCode::Busy, "the group could not be switched").into(),
    }
}

/// Where a user's frames go: `task`'s address space `ioas`, writable or not.
#[derive(Clone, Copy)]
struct Target {
    task: u16,
    ioas: u16,
    writable: bool,
}

/// `Map`: maps the frame sent along at `iova` in the target space.
fn map<P: Platform>(s: &mut Service<P>, k: &mut impl Kernel, to: Target, iova: u64, received: &[u32]) -> Answer {
    let Some(&frame) = received.first() else {
        return refused(ErrorCode::InvalidArgument, "send the frame to map with the request").into();
    };
    match map_frame(s, k, to, frame, iova) {
        Ok(_) => Reply::Mapped { iova }.into(),
        Err(ErrorCode::NotFound) => refused(ErrorCode::NotFound, "no such address space").into(),
        Err(code) => refused(code, "the frame could not be mapped there").into(),
    }
}

/// Maps `frame` at `at` in the target space, charged to its task; the
/// pages it took. `NotFound`: no such space of the task.
fn map_frame<P: Platform>(
    s: &mut Service<P>,
    k: &mut impl Kernel,
    to: Target,
    frame: u32,
    at: u64,
) -> Result<u64, ErrorCode> {
    let space = s.ready.as_ref().and_then(|ready| ready.own_space(to.ioas, to.task)).ok_or(ErrorCode::NotFound)?;
    let quota = u64::from(s.config.mapping_quota_pages);
    let (owner, placement, writable) = (MappingOwner::Ioas(space.id), Placement::At(at), to.writable);
    let new = NewMapping { domain: space.domain, owner, frame, placement, writable, quota };
    let tables = s.config.table_page_quota;
    let charge = s.ready.as_mut().and_then(|ready| ready.charge(to.task, to.ioas, tables));
    mapping::map(&mut s.hw, &mut s.domains, k, new, charge).map(|(_, pages)| pages)
}

/// `MapRange`: maps the frames sent along back to back from `iova`, each
/// wholly or not at all, stopping at the first refused.
fn map_range<P: Platform>(s: &mut Service<P>, k: &mut impl Kernel, to: Target, iova: u64, received: &[u32]) -> Answer {
    if s.ready.as_ref().and_then(|ready| ready.own_space(to.ioas, to.task)).is_none() {
        return refused(ErrorCode::NotFound, "no such address space").into();
    }
    if received.is_empty() {
        return refused(ErrorCode::InvalidArgument, "send the frames to map with the request").into();
    }
    if !iova.is_multiple_of(PAGE_SIZE) {
        return refused(ErrorCode::InvalidArgument, "the range must start on a page").into();
    }
    let (mut mapped, mut pages, mut next) = (0u8, 0u64, Some(iova));
    for &frame in received {
        // The previous frame ended at the top of the address space.
        let Some(at) = next else {
            return Reply::MappedRange { mapped, pages, refused: Some(ErrorCode::InvalidArgument) }.into();
        };
        match map_frame(s, k, to, frame, at) {
            Ok(held) => {
                mapped = mapped.saturating_add(1);
                pages = pages.saturating_add(held);
                next = held.checked_mul(PAGE_SIZE).and_then(|bytes| at.checked_add(bytes));
            }
            Err(code) => return Reply::MappedRange { mapped, pages, refused: Some(code) }.into(),
        }
    }
    Reply::MappedRange { mapped, pages, refused: None }.into()
}

/// `UnmapRange`: removes every mapping `task` has wholly inside `range`
/// of `ioas`, with one invalidation.
fn unmap_range<P: Platform>(s: &mut Service<P>, k: &mut impl Kernel, task: u16, ioas: u16, range: IovaRange) -> Answer {
    let Some(space) = s.ready.as_ref().and_then(|ready| ready.own_space(ioas, task)) else {
        return refused(ErrorCode::NotFound, "no such address space").into();
    };
    let tables = s.config.table_page_quota;
    let charge = s.ready.as_mut().and_then(|ready| ready.charge(task, ioas, tables));
    let owner = MappingOwner::Ioas(space.id);
    match mapping::unmap_range(&mut s.hw, &mut s.domains, k, space.domain, owner, range, charge) {
        Ok(done) => Reply::UnmappedRange { mappings: done.mappings, pages: done.pages }.into(),
        Err(ErrorCode::InvalidArgument) => refused(
            ErrorCode::InvalidArgument,
            "the range is empty, unaligned, past the space's width or cuts a mapping",
        )
        .into(),
        Err(ErrorCode::NotMapped) => refused(ErrorCode::NotMapped, "nothing mapped in that range").into(),
        Err(code) => refused(code, "the unit did not confirm the invalidation; the frames stay pinned").into(),
    }
}

/// `Unmap`: removes what `task` mapped at `iova` in `ioas`.
fn unmap<P: Platform>(s: &mut Service<P>, k: &mut impl Kernel, task: u16, ioas: u16, iova: u64) -> Answer {
    let Some(space) = s.ready.as_ref().and_then(|ready| ready.own_space(ioas, task)) else {
        return refused(ErrorCode::NotFound, "no such address space").into();
    };
    match s.domains.take(space.domain, MappingOwner::Ioas(space.id), iova) {
        Some(mapping) => {
            let tables = s.config.table_page_quota;
            let charge = s.ready.as_mut().and_then(|ready| ready.charge(task, ioas, tables));
            match mapping::unmap(&mut s.hw, &mut s.domains, k, mapping, charge) {
                Ok(()) => Reply::Done.into(),
                Err(code) => refused(code, "the unit did not confirm the invalidation; the frame stays pinned").into(),
            }
        }
        None => refused(ErrorCode::NotMapped, "nothing mapped there").into(),
    }
}

/// `Release`: the owner gives the group up; it blocks until the PCI
/// server has quiesced its devices.
fn release<P: Platform>(s: &mut Service<P>, k: &mut impl Kernel, cap: GroupCap) -> Answer {
    let Some(ready) = s.ready.as_mut() else { return stale() };
    let (group, task) = (cap.group, cap.task);
    if change_ownership(&mut s.hw, &mut s.domains, ready, |o, hw| o.release_user(group, task, hw)).is_err() {
        return refused(ErrorCode::InvalidArgument, "not owned by this task").into();
    }
    remapping::revoke_in_group(&mut s.hw, group, task);
    if let Some(position) = ready.group_caps.iter().position(|c| c.serial == cap.serial) {
        k.revoke(ready.group_caps.swap_remove(position).slot);
    }
    // The spaces made through this group's capability go with it unless
    // another of the task's groups is attached to them, so claims and
    // releases in a loop never run out of the address-space quota; spaces
    // made for its other groups stay. A kept space is taken by the release
    // of the last group of the task that could use it.
    let attached = |ownership: &crate::ownership::Ownership, id: u16| {
        ownership
            .owners()
            .any(|(_, owner)| matches!(owner, Owner::User { task: t, ioas: Some(i) } if t == task && i == id))
    };
    let owned = |ownership: &crate::ownership::Ownership, group: u16| matches!(ownership.owner(group), Ok(Owner::User { task: t, .. }) if t == task);
    let goes = |ownership: &crate::ownership::Ownership, space: &AddressSpace| {
        space.task == task && !attached(ownership, space.id) && !owned(ownership, space.group)
    };
    while let Some(position) = ready.address_spaces.iter().position(|a| goes(&ready.ownership, a)) {
        let space = ready.address_spaces.swap_remove(position);
        unmap_all(&mut s.hw, &mut s.domains, k, MappingOwner::Ioas(space.id));
        destroy_domain(&mut s.hw, &mut s.domains, space.domain);
    }
    k.request_reclaim();
    info!("group {=u16} released by {=str}: reclaiming", group, s.config.tasks.name(task));
    Reply::Done.into()
}

/// The refusal of a capability the server no longer knows.
/// `IoasRanges`: the addresses of `task`'s space `ioas` a device may be
/// given, from `from` on, a page at a time.
fn ranges<P: Platform>(s: &Service<P>, task: u16, ioas: u16, from: u64) -> Answer {
    let Some(space) = s.ready.as_ref().and_then(|ready| ready.own_space(ioas, task)) else {
        return refused(ErrorCode::NotFound, "no such address space of this task").into();
    };
    let Some(domain) = s.domains.get(space.domain) else { return stale() };
    let mut ranges = Vec::new();
    let mut more = false;
    for (first, last) in domain.iova.usable().filter(|&(_, last)| last >= from) {
        if ranges.push((first.max(from), last)).is_err() {
            more = true;
            break;
        }
    }
    Reply::Ranges { ranges, more }.into()
}

/// `IoasDestroy`: `task`'s space `ioas` goes, with every mapping in it,
/// unless one of the task's groups is attached to it.
fn destroy<P: Platform>(s: &mut Service<P>, k: &mut impl Kernel, task: u16, ioas: u16) -> Answer {
    let Some(ready) = s.ready.as_mut() else { return stale() };
    if ready.own_space(ioas, task).is_none() {
        return refused(ErrorCode::NotFound, "no such address space of this task").into();
    }
    let attached = ready.ownership.owners().find_map(|(group, owner)| match owner {
        Owner::User { task: t, ioas: Some(i) } if t == task && i == ioas => Some(group),
        _ => None,
    });
    if let Some(group) = attached {
        let reason = format_args!("group {group} is attached to address space {ioas}: detach it first");
        return refused_with(ErrorCode::Busy, reason).into();
    }
    let Some(position) = ready.address_spaces.iter().position(|space| space.id == ioas && space.task == task) else {
        return stale();
    };
    let space = ready.address_spaces.swap_remove(position);
    unmap_all(&mut s.hw, &mut s.domains, k, MappingOwner::Ioas(space.id));
    destroy_domain(&mut s.hw, &mut s.domains, space.domain);
    Reply::Done.into()
}

fn stale() -> Answer {
    refused(ErrorCode::InvalidCapability, "stale capability").into()
}
