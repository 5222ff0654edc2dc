//! Policy operations: what a task's badge grants it by name, one function each.
//!
//! The driver core (the PCI server) reports the topology, claims and
//! releases default domains for drivers, quiesces reclaimed groups and
//! asks for interrupt entries; a user task claims a whole group; anyone
//! granted it reads owners, groups and counters.

use capabilities::ErrorCode;
use capabilities::badge;
use capabilities::pci::Bdf;
use heapless::String;
use iommu_api::{GROUP_PAGE, Handle, OwnerReport, RECLAIM_PAGE, ReclaimPage, Reply, Request};
use iommu_groups::GroupId;

use super::domains::MappingOwner;
use super::kernel::Kernel;
use super::mapping::unmap_all;
use super::text::{assertion_notes, not_found, owner_report, ownership_refusal, refused, refused_with};
use super::{Answer, DmaHandle, GroupCap, Platform, Service, change_ownership, placement, topology};
use crate::interrupt::remapping;
use crate::ownership::Owner;

/// Answers a request sent with a policy capability.
// Out of line, so its frame is not paid for by every request.
#[inline(never)]
pub(super) fn request<P: Platform>(
    s: &mut Service<P>,
    k: &mut impl Kernel,
    badge: u64,
    request: Request,
    received: &[u32],
) -> Answer {
    let Some(caller) = badge::client(badge) else {
        return refused(ErrorCode::PermissionDenied, "this capability names no client").into();
    };
    let Some(op) = request.operation() else {
        return refused(ErrorCode::PermissionDenied, "that operation needs a DMA handle or a group capability").into();
    };
    if op.is_driver_core() && s.config.driver_core != Some(caller) {
        let name = iommu_api::PROTOCOL.name_of(op as u8);
        let caller = s.config.tasks.name(caller);
        return refused_with(
            ErrorCode::PermissionDenied,
            format_args!("`{name}` is the driver core's (the PCI server's) alone, not {caller}'s"),
        )
        .into();
    }
    if !badge::allows(badge, op as u8) {
        if remapping::is_interrupt_request(&request) {
            s.interrupt_refusals += 1;
        }
        let name = iommu_api::PROTOCOL.name_of(op as u8);
        let caller = s.config.tasks.name(caller);
        return refused_with(ErrorCode::PermissionDenied, format_args!("the policy does not grant {caller} `{name}`"))
            .into();
    }
    if let Some(reason) = s.failed {
        return refused_with(
            ErrorCode::Busy,
            format_args!("the IOMMU server could not take the topology ({reason}): every requester is blocked"),
        )
        .into();
    }
    match request {
        Request::ReportTopology { functions, last } => topology::report(s, functions.as_slice(), last).into(),
        Request::AllocInterrupt { device, holder, address, data } => {
            remapping::allocate(s, device, holder, address, data).into()
        }
        Request::FreeInterrupt { device, entry } => remapping::free(s, device, entry).into(),
        Request::Interrupts { device } => remapping::report(s, device).into(),
        _ if s.ready.is_none() => {
            refused(ErrorCode::Busy, "the IOMMU server is still waiting for the PCI server's topology").into()
        }
        Request::ClaimKernel { device, driver } => claim_kernel(s, k, device, driver),
        Request::ReleaseKernel { device, driver } => release_kernel(s, k, device, driver),
        Request::Owner { device } => owner(s, device),
        Request::PendingReclaims { group, offset } => pending_reclaims(s, group, offset),
        Request::Reclaimed { group, quiesced } => reclaimed(s, group, quiesced),
        Request::ClaimGroup { device } => claim_group(s, k, caller, device, received),
        Request::Groups { group, offset } => group_info(s, group, offset),
        Request::Stats => stats(s),
        Request::Usage { task } => usage(s, task),
        _ => refused(ErrorCode::PermissionDenied, "that operation needs a DMA handle or a group capability").into(),
    }
}

/// The refusal of a request that came before the topology.
fn not_ready() -> Answer {
    refused(ErrorCode::Busy, "the IOMMU server is still waiting for the PCI server's topology").into()
}

/// `claim-kernel`: the driver core claims `device`'s group's default domain
/// for `driver`; the reply carries the driver's DMA handle.
fn claim_kernel<P: Platform>(s: &mut Service<P>, k: &mut impl Kernel, device: Bdf, driver: u16) -> Answer {
    let serial = s.next_serial();
    let Some(ready) = s.ready.as_mut() else { return not_ready() };
    let Some(group) = ready.group_of(device) else { return not_found(device) };
    if let Some(refusal) = placement::refusal(ready, group) {
        return refusal;
    }
    let first = ready.ownership.owner(group) == Ok(Owner::Unowned);
    if let Err(error) = ready.ownership.claim_kernel(group) {
        return ownership_refusal(ready, &s.config.tasks, group, error);
    }
    if first {
        ready.forget_faults(group);
    }
    let slot = match k.mint(Handle::Dma { group, serial }.badge()) {
        Ok(slot) => slot,
        Err(code) => {
            let _ = ready.ownership.release_kernel(group);
            return refused(code, "no room for another DMA handle").into();
        }
    };
    if ready.handles.push(DmaHandle { group, device, driver, serial, slot }).is_err() {
        k.revoke(slot);
        let _ = ready.ownership.release_kernel(group);
        return refused(ErrorCode::QuotaExceeded, "too many DMA handles").into();
    }
    info!("group {=u16}: DMA handle for {=str} on {}", group, s.config.tasks.name(driver), device);
    Answer { reply: Reply::Group { group }, cap: Some(slot) }
}

/// `release-kernel`: `driver` was unbound from `device`; its DMA handle,
/// mappings and interrupt entries go.
fn release_kernel<P: Platform>(s: &mut Service<P>, k: &mut impl Kernel, device: Bdf, driver: u16) -> Answer {
    let Some(ready) = s.ready.as_mut() else { return not_ready() };
    let Some(group) = ready.group_of(device) else { return not_found(device) };
    let held = |h: &DmaHandle| h.group == group && h.driver == driver && h.device == device;
    let Some(position) = ready.handles.iter().position(held) else {
        return refused(ErrorCode::NotFound, "that driver holds no DMA handle for that device").into();
    };
    let handle = ready.handles.swap_remove(position);
    unmap_all(&mut s.hw, &mut s.domains, k, MappingOwner::Handle(handle.serial));
    remapping::revoke_device(&mut s.hw, device, driver);
    k.revoke(handle.slot);
    let _ = ready.ownership.release_kernel(group);
    info!("group {=u16}: DMA handle of {=str} released", group, s.config.tasks.name(driver));
    Reply::Done.into()
}

/// `owner`: who owns `device`'s group.
fn owner<P: Platform>(s: &Service<P>, device: Bdf) -> Answer {
    let Some(ready) = s.ready.as_ref() else { return not_ready() };
    let Some(group) = ready.group_of(device) else { return not_found(device) };
    let owner = ready.ownership.owner(group).map(owner_report).unwrap_or(OwnerReport::Unowned);
    Reply::Owner { group, owner }.into()
}

/// `pending-reclaims`: a page of the members of the first group from
/// `from` on whose devices the PCI server must quiesce, from member
/// `offset` on if it is `from` itself; groups of any size page through.
fn pending_reclaims<P: Platform>(s: &Service<P>, from: u16, offset: u16) -> Answer {
    let Some(ready) = s.ready.as_ref() else { return not_ready() };
    let Some(group) = ready.ownership.reclaiming().find(|&group| group >= from) else {
        return Reply::Reclaims { page: None }.into();
    };
    let offset = if group == from { offset } else { 0 };
    let members = ready.groups.members(GroupId(group));
    let total = u16::try_from(members.clone().count()).unwrap_or(u16::MAX);
    let members = members.skip(usize::from(offset)).take(RECLAIM_PAGE).collect();
    Reply::Reclaims { page: Some(ReclaimPage { group, offset, total, members }) }.into()
}

/// `reclaimed`: `group`'s devices are quiesced, `quiesced` of them; it
/// goes back to its default domain, unless that is not every member.
fn reclaimed<P: Platform>(s: &mut Service<P>, group: u16, quiesced: u16) -> Answer {
    let Some(ready) = s.ready.as_mut() else { return not_ready() };
    let members = ready.groups.members(GroupId(group)).count();
    if usize::from(quiesced) != members {
        return refused_with(
            ErrorCode::InvalidArgument,
            format_args!(
                "group {group} has {members} members, not {quiesced}: it stays blocked until all are quiesced"
            ),
        )
        .into();
    }
    match change_ownership(&mut s.hw, &mut s.domains, ready, |ownership, hw| ownership.reclaimed(group, hw)) {
        Ok(()) => {
            ready.forget_faults(group);
            info!("group {=u16} reclaimed: back to its default domain", group);
            Reply::Done.into()
        }
        Err(_) => refused(ErrorCode::InvalidArgument, "that group is not being reclaimed").into(),
    }
}

/// `claim-group`: user task `caller` claims the whole group of `device`,
/// presenting its own task capability; the reply carries the group
/// capability, and the group blocks every DMA until attached.
fn claim_group<P: Platform>(
    s: &mut Service<P>,
    k: &mut impl Kernel,
    caller: u16,
    device: Bdf,
    received: &[u32],
) -> Answer {
    let Some(group) = s.ready.as_ref().and_then(|ready| ready.group_of(device)) else { return not_found(device) };
    if let Some(refusal) = claim_refusal(s, caller, group) {
        return refusal;
    }
    let presented = received.first().copied();
    let Some(slot) = presented.filter(|&slot| k.task_of(slot) == Some(caller)) else {
        return refused(ErrorCode::PermissionDenied, "present your own task capability with the claim").into();
    };
    if let Err(code) = k.watch(slot, caller) {
        return refused(code, "cannot watch the claiming task").into();
    }
    let serial = s.next_serial();
    let Some(ready) = s.ready.as_mut() else { return not_ready() };
    if let Err(error) = change_ownership(&mut s.hw, &mut s.domains, ready, |o, hw| o.claim_user(group, caller, hw)) {
        if matches!(ready.ownership.owner(group), Ok(Owner::Reclaiming { .. })) {
            // The unit refused both the block and the way back: the group
            // is kept from everyone until the PCI server has quiesced it.
            error!("group {=u16}: the unit refused the switch both ways; reclaiming it", group);
            k.request_reclaim();
        }
        return ownership_refusal(ready, &s.config.tasks, group, error);
    }
    ready.forget_faults(group);
    let minted = k.mint(Handle::Group { group, serial }.badge());
    let kept = minted.and_then(|slot| {
        ready.group_caps.push(GroupCap { group, task: caller, serial, slot }).map_err(|_| {
            k.revoke(slot);
            ErrorCode::QuotaExceeded
        })?;
        Ok(slot)
    });
    match kept {
        Ok(slot) => {
            info!(
                "group {=u16} now owned by user task {=str} (blocked until attached)",
                group,
                s.config.tasks.name(caller)
            );
            Answer { reply: Reply::Group { group }, cap: Some(slot) }
        }
        Err(code) => {
            let _ = change_ownership(&mut s.hw, &mut s.domains, ready, |o, hw| o.release_user(group, caller, hw));
            k.request_reclaim();
            refused(code, "no room for another group capability").into()
        }
    }
}

/// Why the policy or the platform does not let `caller` own `group`, if
/// they do not: the policy must assign it a device of the group,
/// interrupts must be remappable (or the policy say otherwise), and no
/// unwaived reserved memory region may name a member.
fn claim_refusal<P: Platform>(s: &mut Service<P>, caller: u16, group: u16) -> Option<Answer> {
    let Some(ready) = s.ready.as_ref() else { return Some(not_ready()) };
    if let Some(refusal) = placement::refusal(ready, group) {
        return Some(refusal);
    }
    let assigned = s.config.assignments.iter().any(|assignment| {
        assignment.task == caller
            && ready.groups.members(GroupId(group)).any(|member| {
                let ids = s.topology.iter().find(|f| f.bdf == member).map(|f| (f.vendor_id, f.device_id));
                ids.is_some_and(|(vendor, id)| assignment.device.matches(member, vendor, id))
            })
    });
    if !assigned {
        return Some(
            refused(ErrorCode::PermissionDenied, "the policy assigns no device of that group to this task").into(),
        );
    }
    let unit = ready.unit_of(group).and_then(|unit| s.hw.units.get(usize::from(unit)));
    let Some(unit) = unit else { return Some(refused(ErrorCode::NotFound, "the group's unit is not driven").into()) };
    if let Some(refusal) =
        remapping::refuse_user_claim(&unit.interrupts, &mut s.interrupt_refusals, &s.config, group, caller)
    {
        return Some(refusal);
    }
    let ready = s.ready.as_ref()?;
    let waived = |device: Bdf| s.config.waivers.iter().any(|waiver| waiver.device == device);
    for reserved in ready.reserved.iter().filter(|d| d.group == group && waived(d.device)) {
        warn!(
            "{=str} may own group {=u16} though firmware does DMA to {} at {=u64:#x}: the policy waives it",
            s.config.tasks.name(caller),
            group,
            reserved.device,
            reserved.base
        );
    }
    let reserved = ready.reserved.iter().find(|d| d.group == group && !waived(d.device))?;
    Some(
        refused_with(
            ErrorCode::PermissionDenied,
            format_args!(
                "group {group} holds {}, which firmware DMAs to at {:#x}..={:#x} (a reserved memory region): kernel-owned only, unless the policy waives it",
                reserved.device, reserved.base, reserved.limit
            ),
        )
        .into(),
    )
}

/// `groups`: a page of group `group`'s members, why they share it, and
/// its owner.
fn group_info<P: Platform>(s: &Service<P>, group: u16, offset: u16) -> Answer {
    let Some(ready) = s.ready.as_ref() else { return not_ready() };
    let id = GroupId(group);
    if usize::from(group) >= ready.groups.count() {
        return refused(ErrorCode::NotFound, "no group has that number").into();
    }
    let total = ready.groups.members(id).count();
    if usize::from(offset) >= total {
        return refused_with(ErrorCode::NotFound, format_args!("group {group} has {total} members")).into();
    }
    let mut reasons = String::new();
    let _ = core::fmt::write(&mut reasons, format_args!("{}", ready.groups.explain(id)));
    assertion_notes(&ready.asserted, ready.groups.members(id), &mut reasons);
    let members = ready.groups.members(id).skip(usize::from(offset)).take(GROUP_PAGE).collect();
    let owner = ready.ownership.owner(group).map(owner_report).unwrap_or(OwnerReport::Unowned);
    // Groups are no larger than a topology, whose size fits a u16.
    Reply::GroupInfo { group, offset, total: total as u16, members, reasons, owner }.into()
}

/// `stats`: mappings, table pages, domains, faults seen and the unit's
/// overflows.
/// `Usage`: what `task` holds and is charged for. Every count is the
/// server's own records: its spaces' mappings and table pages, its DMA
/// handles' mappings.
fn usage<P: Platform>(s: &Service<P>, task: u16) -> Answer {
    if usize::from(task) >= s.config.tasks.0.len() {
        return refused_with(ErrorCode::NotFound, format_args!("no task {task} in the policy")).into();
    }
    let Some(ready) = s.ready.as_ref() else { return not_ready() };
    let spaces = || ready.address_spaces.iter().filter(|space| space.task == task);
    let handles = || ready.handles.iter().filter(|handle| handle.driver == task);
    Reply::Usage {
        address_spaces: spaces().count() as u16,
        mapped_pages: spaces().map(|space| s.domains.pages_of(MappingOwner::Ioas(space.id))).sum(),
        table_pages: spaces().map(|space| space.table_pages).sum(),
        table_page_quota: s.config.table_page_quota,
        dma_handles: handles().count() as u16,
        dma_pages: handles().map(|handle| s.domains.pages_of(MappingOwner::Handle(handle.serial))).sum(),
    }
    .into()
}

fn stats<P: Platform>(s: &Service<P>) -> Answer {
    use crate::memory::TablePages;
    Reply::Stats {
        mappings: s.domains.mapping_count() as u32,
        table_pages: s.hw.pages.in_use() as u32,
        domains: s.domains.count() as u32,
        faults: s.faults_seen,
        fault_overflows: s.fault_overflows,
    }
    .into()
}
