//! Requests by capability: policy operations (the PCI server's and user
//! tasks'), the DMA API on a DMA handle, and a group capability's
//! operations; and what a task's death undoes.

use core::ops::ControlFlow;

use capabilities::ErrorCode;
use capabilities::badge;
use capabilities::pci::Bdf;
use heapless::{String, Vec};
use iommu_api::{Handle, OwnerReport, Reply, Request};
use iommu_groups::index::TopologyIndex;
use iommu_groups::{GroupId, alias, form_groups};

use super::domains::{DomainIndex, Domains, Mapping, MappingOwner, iova_error};
use super::kernel::Kernel;
use super::switch::{MAX_REQUESTERS, Requesters};
use super::text::{busy, refused};
use super::{
    AddressSpace, Answer, AppliedAssertion, DmaHandle, GroupCap, Hardware, MAX_RESERVED_DEVICES, Ready, ReservedDevice,
    Service, domain_window, switch,
};
use crate::fault::FaultLog;
use crate::invalidation::policy;
use crate::memory::{PAGE_SIZE, TablePages};
use crate::ownership::{Owner, Ownership, OwnershipError, Translation};
use crate::pagetable::{Access, PageTableError};
use crate::registers::Registers;
use crate::unit::QueueMemory;

/// Pages the default domains' allocators may hand out in all.
const DEFAULT_DOMAIN_PAGES: u64 = 1 << 24;

pub(super) fn dispatch<R: Registers, Q: QueueMemory, T: TablePages>(
    s: &mut Service<R, Q, T>,
    k: &mut impl Kernel,
    badge: u64,
    request: Request,
    received: &[u32],
) -> Answer {
    if matches!(request, Request::Faults) {
        // Faults the unit recorded but whose interrupt is not handled yet
        // belong in the answer too.
        s.drain_faults(k.now());
    }
    if let Some(answer) = super::interrupts::dispatch(s, badge, &request) {
        return answer;
    }
    match Handle::from_badge(badge) {
        Some(Handle::Dma { group, serial }) => dma_request(s, k, group, serial, request, received),
        Some(Handle::Group { group, serial }) => group_request(s, k, group, serial, request, received),
        None => policy_request(s, k, badge, request, received),
    }
}

// Out of line, so its large frame is not paid for by every request.
#[inline(never)]
fn policy_request<R: Registers, Q: QueueMemory, T: TablePages>(
    s: &mut Service<R, Q, T>,
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
    if !badge::allows(badge, op as u8) {
        let name = iommu_api::PROTOCOL.name_of(op as u8);
        let mut text = String::<120>::new();
        let _ = core::fmt::write(
            &mut text,
            format_args!("the policy does not grant {} `{name}`", s.config.tasks.name(caller)),
        );
        return refused(ErrorCode::PermissionDenied, &text).into();
    }
    if let Request::ReportTopology { functions, last } = request {
        return report_topology(s, functions.as_slice(), last).into();
    }
    let names = s.config.tasks.clone();
    let Some(ready) = s.ready.as_mut() else {
        return refused(ErrorCode::Busy, "the IOMMU server is still waiting for the PCI server's topology").into();
    };
    let Ready { groups, requesters, ownership, defaults, handles, group_caps, address_spaces, asserted, .. } = ready;
    let domains = &mut s.domains;
    let group_of = |device: Bdf| groups.group_of(device).map(|id| id.0);
    match request {
        Request::ClaimKernel { device, driver } => {
            let Some(group) = group_of(device) else { return not_found(device) };
            if let Err(error) = ownership.claim_kernel(group) {
                return ownership_refusal(s.ready.as_ref(), &names, group, error);
            }
            s.serial = s.serial.wrapping_add(1);
            let serial = s.serial;
            let slot = match k.mint(Handle::Dma { group, serial }.badge()) {
                Ok(slot) => slot,
                Err(code) => {
                    let _ = ownership.release_kernel(group);
                    return refused(code, "no room for another DMA handle").into();
                }
            };
            if handles.push(DmaHandle { group, device, driver, serial, slot }).is_err() {
                k.revoke(slot);
                let _ = ownership.release_kernel(group);
                return refused(ErrorCode::QuotaExceeded, "too many DMA handles").into();
            }
            info!("group {=u16}: DMA handle for {=str} on {}", group, names.name(driver), device);
            Answer { reply: Reply::Group { group }, cap: Some(slot) }
        }
        Request::ReleaseKernel { device, driver } => {
            let Some(group) = group_of(device) else { return not_found(device) };
            let Some(position) =
                handles.iter().position(|h| h.group == group && h.driver == driver && h.device == device)
            else {
                return refused(ErrorCode::NotFound, "that driver holds no DMA handle for that device").into();
            };
            let handle = handles.swap_remove(position);
            unmap_all(&mut s.hw, domains, k, MappingOwner::Handle(handle.serial));
            super::interrupts::revoke_device(&mut s.interrupts, &mut s.hw, device, driver);
            k.revoke(handle.slot);
            let _ = ownership.release_kernel(group);
            info!("group {=u16}: DMA handle of {=str} released", group, names.name(driver));
            Reply::Done.into()
        }
        Request::Owner { device } => {
            let Some(group) = group_of(device) else { return not_found(device) };
            let owner = ownership.owner(group).map(report).unwrap_or(OwnerReport::Unowned);
            Reply::Owner { group, owner }.into()
        }
        Request::PendingReclaims => {
            let mut pending = Vec::new();
            for group in ownership.reclaiming() {
                let members = groups.members(GroupId(group)).take(16).collect();
                if pending.push((group, members)).is_err() {
                    break;
                }
            }
            Reply::Reclaims { groups: pending }.into()
        }
        Request::Reclaimed { group } => {
            let ioas_domain = |id: u16| address_spaces.iter().find(|a| a.id == id).map(|a| a.domain);
            let mut hw = switch(&mut s.hw, requesters, domains, defaults, &ioas_domain);
            match ownership.reclaimed(group, &mut hw) {
                Ok(()) => {
                    info!("group {=u16} reclaimed: back to its default domain", group);
                    Reply::Done.into()
                }
                Err(_) => refused(ErrorCode::InvalidArgument, "that group is not being reclaimed").into(),
            }
        }
        Request::ClaimGroup { device } => {
            let Some(group) = group_of(device) else { return not_found(device) };
            let assigned = s.config.assignments.iter().any(|assignment| {
                assignment.task == caller
                    && groups.members(GroupId(group)).any(|member| {
                        let ids = s.topology.iter().find(|f| f.bdf == member).map(|f| (f.vendor_id, f.device_id));
                        ids.is_some_and(|(vendor, id)| assignment.device.matches(member, vendor, id))
                    })
            });
            if !assigned {
                return refused(ErrorCode::PermissionDenied, "the policy assigns no device of that group to this task")
                    .into();
            }
            if let Some(answer) = super::interrupts::refuse_user_claim(&mut s.interrupts, &s.config, group, caller) {
                return answer;
            }
            let waived = |device: Bdf| s.config.waivers.iter().any(|waiver| waiver.device == device);
            for reserved in ready.reserved.iter().filter(|d| d.group == group && waived(d.device)) {
                warn!(
                    "{=str} may own group {=u16} though firmware does DMA to {} at {=u64:#x}: the policy waives it",
                    names.name(caller),
                    group,
                    reserved.device,
                    reserved.base
                );
            }
            if let Some(reserved) = ready.reserved.iter().find(|d| d.group == group && !waived(d.device)) {
                let mut text = String::<{ iommu_api::REASON_MAX }>::new();
                let _ = core::fmt::write(
                    &mut text,
                    format_args!(
                        "group {group} holds {}, which firmware DMAs to at {:#x}..={:#x} (a reserved memory region): kernel-owned only, unless the policy waives it",
                        reserved.device, reserved.base, reserved.limit
                    ),
                );
                return refused(ErrorCode::PermissionDenied, &text).into();
            }
            let presented = received.first().copied();
            if presented.and_then(|slot| k.task_of(slot)) != Some(caller) {
                return refused(ErrorCode::PermissionDenied, "present your own task capability with the claim").into();
            }
            if let Some(slot) = presented
                && let Err(code) = k.watch(slot, caller)
            {
                return refused(code, "cannot watch the claiming task").into();
            }
            let ioas_domain = |id: u16| address_spaces.iter().find(|a| a.id == id).map(|a| a.domain);
            let mut hw = switch(&mut s.hw, requesters, domains, defaults, &ioas_domain);
            if let Err(error) = ownership.claim_user(group, caller, &mut hw) {
                return ownership_refusal(s.ready.as_ref(), &names, group, error);
            }
            s.serial = s.serial.wrapping_add(1);
            let serial = s.serial;
            let slot = match k.mint(Handle::Group { group, serial }.badge()) {
                Ok(slot) => slot,
                Err(code) => {
                    let _ = ownership.release_user(group, caller, &mut hw);
                    k.request_reclaim();
                    return refused(code, "no room for another group capability").into();
                }
            };
            if group_caps.push(GroupCap { group, task: caller, serial, slot }).is_err() {
                k.revoke(slot);
                let _ = ownership.release_user(group, caller, &mut hw);
                k.request_reclaim();
                return refused(ErrorCode::QuotaExceeded, "too many group capabilities").into();
            }
            info!("group {=u16} now owned by user task {=str} (blocked until attached)", group, names.name(caller));
            Answer { reply: Reply::Group { group }, cap: Some(slot) }
        }
        Request::Groups { group } => {
            let id = GroupId(group);
            if usize::from(group) >= groups.count() {
                return refused(ErrorCode::NotFound, "no group has that number").into();
            }
            let mut reasons = String::new();
            let _ = core::fmt::write(&mut reasons, format_args!("{}", groups.explain(id)));
            super::text::assertion_notes(asserted, groups.members(id), &mut reasons);
            let members = groups.members(id).take(32).collect();
            let owner = ownership.owner(group).map(report).unwrap_or(OwnerReport::Unowned);
            Reply::GroupInfo { group, members, reasons, owner }.into()
        }
        Request::Stats => Reply::Stats {
            mappings: domains.mapping_count() as u32,
            table_pages: s.hw.pages.in_use() as u32,
            domains: domains.count() as u32,
            faults: s.faults_seen,
        }
        .into(),
        _ => refused(ErrorCode::PermissionDenied, "that operation needs a DMA handle or a group capability").into(),
    }
}

fn not_found(device: Bdf) -> Answer {
    let mut text = String::<64>::new();
    let _ = core::fmt::write(&mut text, format_args!("no device {device} in the topology"));
    refused(ErrorCode::NotFound, &text).into()
}

fn report(owner: Owner) -> OwnerReport {
    match owner {
        Owner::Unowned => OwnerReport::Unowned,
        Owner::Kernel { drivers } => OwnerReport::Kernel { drivers },
        Owner::User { task, .. } => OwnerReport::User { task },
        Owner::Reclaiming { task } => OwnerReport::Reclaiming { task },
    }
}

fn ownership_refusal(
    ready: Option<&Ready>,
    names: &capabilities::config::TaskNames,
    group: u16,
    error: OwnershipError,
) -> Answer {
    match (error, ready) {
        (OwnershipError::Busy(owner), Some(ready)) => busy(ready, names, group, owner).into(),
        (OwnershipError::Hardware, _) => refused(ErrorCode::Busy, "the remapping unit refused the change").into(),
        _ => refused(ErrorCode::InvalidArgument, "not allowed in the group's current state").into(),
    }
}

/// Adds a chunk of the topology; the last one makes the server ready.
fn report_topology<R: Registers, Q: QueueMemory, T: TablePages>(
    s: &mut Service<R, Q, T>,
    functions: &[capabilities::pci::PciFunction],
    last: bool,
) -> Reply {
    if s.ready.is_some() {
        return refused(ErrorCode::InvalidArgument, "the topology was reported already");
    }
    for function in functions {
        if s.topology.push(*function).is_err() {
            s.topology.clear();
            return refused(ErrorCode::TooLarge, "more functions than the server can hold");
        }
    }
    if !last {
        return Reply::Done;
    }
    match build(s) {
        Ok(ready) => {
            s.ready = Some(ready);
            match s.hw.unit.enable_translation() {
                Ok(()) => {
                    info!("translation enabled: {=usize} groups", s.ready.as_ref().map_or(0, |r| r.groups.count()));
                    Reply::Done
                }
                Err(_) => refused(ErrorCode::Busy, "the remapping unit did not enable translation"),
            }
        }
        Err(reason) => {
            s.topology.clear();
            refused(ErrorCode::InvalidArgument, reason)
        }
    }
}

/// Forms the groups, gives each a default domain and points its requesters
/// at it.
// Out of line, so its large frame is not paid for by every request.
#[inline(never)]
fn build<R: Registers, Q: QueueMemory, T: TablePages>(s: &mut Service<R, Q, T>) -> Result<Ready, &'static str> {
    let asserted = apply_assertions(s);
    let groups = form_groups(&s.topology).map_err(|_| "the topology is inconsistent; no groups formed")?;
    let index = TopologyIndex::new(&s.topology).map_err(|_| "the topology is inconsistent")?;
    let mut requesters = Requesters::new();
    for id in groups.ids() {
        let mut sources: Vec<u16, MAX_REQUESTERS> = Vec::new();
        for member in groups.members(id) {
            let Some(position) = index.find(member) else { continue };
            let _ = alias::for_each_dma_alias(&index, position, |_, requester| {
                let source = requester.requester_id();
                if !sources.contains(&source) && sources.push(source).is_err() {
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            });
        }
        requesters.push(sources).map_err(|_| "more groups than the server can hold")?;
    }
    let capabilities = *s.hw.unit.capabilities();
    let (first, last) = domain_window(&s.hw.table_config);
    let mut defaults = Vec::new();
    for _ in groups.ids() {
        let domain = s
            .domains
            .create(&mut s.hw.pages, &capabilities, s.hw.table_config, first, last, DEFAULT_DOMAIN_PAGES)
            .map_err(|_| "no table memory or domain id for a default domain")?;
        defaults.push(domain).map_err(|_| "more groups than the server can hold")?;
    }
    let reserved = map_reserved(s, &groups, &defaults);
    let ownership = Ownership::new(groups.count());
    let no_ioas = |_: u16| None;
    let mut hw = switch(&mut s.hw, &requesters, &s.domains, &defaults, &no_ioas);
    for group in 0..groups.count() as u16 {
        use crate::ownership::GroupHardware;
        hw.set_translation(group, Translation::Default).map_err(|_| "could not install the context entries")?;
    }
    let faults = core::iter::repeat_with(FaultLog::new).take(groups.count()).collect();
    Ok(Ready {
        groups,
        requesters,
        ownership,
        defaults,
        handles: Vec::new(),
        group_caps: Vec::new(),
        address_spaces: Vec::new(),
        faults,
        reserved,
        asserted,
    })
}

/// Applies the policy's isolation assertions that this machine bears out:
/// the functions each covers count as ACS-isolated (as a device quirk
/// would make them). One whose place holds no function, or a function of
/// another identity, is void: logged, and nothing changes.
fn apply_assertions<R: Registers, Q: QueueMemory, T: TablePages>(
    s: &mut Service<R, Q, T>,
) -> Vec<AppliedAssertion, { capabilities::config::MAX_ASSERTIONS }> {
    let mut applied = Vec::new();
    for assertion in &s.config.assertions {
        let covered = || s.topology.iter().filter(|f| assertion.at.covers(f.bdf));
        if covered().next().is_none() {
            error!("isolation assertion `{=str}` is void: no function is where it says", assertion.name.as_str());
            continue;
        }
        if let Some(other) = covered().find(|f| (f.vendor_id, f.device_id) != (assertion.vendor, assertion.device_id)) {
            error!(
                "isolation assertion `{=str}` is void: {} is {=u16:04x}:{=u16:04x}, not the asserted {=u16:04x}:{=u16:04x}",
                assertion.name.as_str(),
                other.bdf,
                other.vendor_id,
                other.device_id,
                assertion.vendor,
                assertion.device_id
            );
            continue;
        }
        let mut functions = Vec::new();
        for function in s.topology.iter_mut().filter(|f| assertion.at.covers(f.bdf)) {
            function.acs_quirk = Some(capabilities::pci::AcsFlags::ISOLATION);
            let _ = functions.push(function.bdf);
        }
        info!(
            "isolation assertion `{=str}` applied to {=usize} functions: {=str}",
            assertion.name.as_str(),
            functions.len(),
            assertion.reason.as_str()
        );
        let record = AppliedAssertion { name: assertion.name.clone(), reason: assertion.reason.clone(), functions };
        let _ = applied.push(record);
    }
    applied
}

/// Identity-maps every reserved region in the default domains of the
/// groups of the devices that use it, before translation is on; returns
/// those devices. A region that cannot be mapped is logged: its device's
/// firmware-started DMA will fault, which the fault log then shows.
fn map_reserved<R: Registers, Q: QueueMemory, T: TablePages>(
    s: &mut Service<R, Q, T>,
    groups: &iommu_groups::Groups,
    defaults: &[DomainIndex],
) -> Vec<ReservedDevice, MAX_RESERVED_DEVICES> {
    let mut devices: Vec<ReservedDevice, MAX_RESERVED_DEVICES> = Vec::new();
    for region in &s.reserved {
        for scope in &region.scopes {
            let Some(device) = scope.resolve(&s.topology) else {
                error!("a reserved region at {=u64:#x} names a device this machine lacks", region.base);
                continue;
            };
            let Some(group) = groups.group_of(device).map(|id| id.0) else { continue };
            let record = ReservedDevice { device, group, base: region.base, limit: region.limit };
            let already = devices.iter().any(|d| d.group == group && d.base == region.base);
            if devices.push(record).is_err() {
                error!("too many devices with reserved regions: {} is not tracked", device);
                continue;
            }
            let Some(domain) = defaults.get(usize::from(group)).and_then(|&index| s.domains.get_mut(index)) else {
                continue;
            };
            if already {
                continue;
            }
            let pages = region.pages();
            let access = Access { read: true, write: true };
            let mapped = domain.iova.reserve(region.base, pages).map_err(|_| ()).and_then(|()| {
                domain.table.map(&mut s.hw.pages, region.base, region.base, pages, access).map_err(|_| ())
            });
            match mapped {
                Ok(_) => info!(
                    "reserved region {=u64:#x}..={=u64:#x} identity-mapped for {} (group {=u16}, kernel-owned only)",
                    region.base, region.limit, device, group
                ),
                Err(()) => error!("reserved region {=u64:#x} could not be mapped for {}", region.base, device),
            }
        }
    }
    devices
}

/// Unmaps every mapping `owner` made, invalidating before each pin goes.
pub(super) fn unmap_all<R: Registers, Q: QueueMemory, T: TablePages>(
    hw: &mut Hardware<R, Q, T>,
    domains: &mut Domains,
    k: &mut impl Kernel,
    owner: MappingOwner,
) {
    while let Some(mapping) = domains.take_any(owner) {
        unmap(hw, domains, k, mapping);
    }
}

/// Removes one mapping: page-table entries, the IOTLB (waiting for the
/// invalidation to finish), then the pin and the address.
fn unmap<R: Registers, Q: QueueMemory, T: TablePages>(
    hw: &mut Hardware<R, Q, T>,
    domains: &mut Domains,
    k: &mut impl Kernel,
    mapping: Mapping,
) {
    let capabilities = *hw.unit.capabilities();
    if let Some(domain) = domains.get_mut(mapping.domain) {
        if let Ok(unmapped) = domain.table.unmap(&mut hw.pages, mapping.iova, mapping.pages) {
            let range = crate::range::IovaRange { start: mapping.iova, pages: mapping.pages };
            let invalidation = policy::unmapped(&capabilities, domain.id, range, unmapped.tables_released > 0);
            if hw.unit.perform(&invalidation).is_err() {
                // The IOTLB may still hold the pages: keep them pinned
                // rather than let a device reach reused memory.
                error!("IOTLB invalidation failed: keeping {=u64} pages pinned", mapping.pages);
                return;
            }
        }
        let _ = domain.iova.free(mapping.iova);
    }
    k.unpin(mapping.pin);
}

/// Maps the frame in `frame` (received) into `domain` for `owner`, at
/// `place` or wherever the allocator finds room below `limit`.
#[allow(clippy::too_many_arguments)]
fn map<R: Registers, Q: QueueMemory, T: TablePages>(
    hw: &mut Hardware<R, Q, T>,
    domains: &mut Domains,
    k: &mut impl Kernel,
    domain_index: DomainIndex,
    owner: MappingOwner,
    frame: u32,
    place: Option<u64>,
    limit: u64,
    writable: bool,
    quota: u64,
) -> Result<u64, ErrorCode> {
    // The kernel refuses a device access the frame's sender may not make.
    let pin = k.pin(frame, writable)?;
    let undo = |k: &mut dyn FnMut(u64), code| {
        k(pin.handle);
        Err(code)
    };
    let mut unpin = |handle| k.unpin(handle);
    if domains.pages_of(owner).saturating_add(pin.pages) > quota {
        return undo(&mut unpin, ErrorCode::QuotaExceeded);
    }
    let capabilities = *hw.unit.capabilities();
    let Some(domain) = domains.get_mut(domain_index) else { return undo(&mut unpin, ErrorCode::ObjectDeleted) };
    let range = match place {
        Some(iova) => domain.iova.place(iova, pin.pages),
        None => domain.iova.allocate(pin.pages, 1),
    };
    let range = match range {
        Ok(range) => range,
        Err(error) => return undo(&mut unpin, iova_error(error)),
    };
    let end = range.start.saturating_add(range.pages.saturating_mul(PAGE_SIZE));
    if end.saturating_sub(1) > limit {
        let _ = domain.iova.free(range.start);
        return undo(&mut unpin, ErrorCode::InvalidArgument);
    }
    let access = Access { read: true, write: writable };
    let mapped = match domain.table.map(&mut hw.pages, range.start, pin.physical, pin.pages, access) {
        Ok(mapped) => mapped,
        Err(error) => {
            // A run that ran out of table pages part way was mapped and
            // removed again: a device may have cached some of it, so the
            // IOTLB forgets it before the frame can be reused.
            if let PageTableError::OutOfTablePages { invalidate: Some(partial) } = error {
                let invalidation = policy::unmapped(&capabilities, domain.id, partial, false);
                if hw.unit.perform(&invalidation).is_err() {
                    error!("IOTLB invalidation failed: keeping {=u64} pages pinned", pin.pages);
                    let _ = domain.iova.free(range.start);
                    return Err(ErrorCode::OutOfMemory);
                }
            }
            let _ = domain.iova.free(range.start);
            return undo(&mut unpin, ErrorCode::OutOfMemory);
        }
    };
    let invalidation = policy::mapped(&capabilities, domain.id, mapped.range);
    let mapping = Mapping { domain: domain_index, iova: range.start, pages: pin.pages, pin: pin.handle, owner };
    if hw.unit.perform(&invalidation).is_err() || domains.record(mapping).is_err() {
        unmap(hw, domains, k, mapping);
        return Err(ErrorCode::OutOfMemory);
    }
    Ok(range.start)
}

fn dma_request<R: Registers, Q: QueueMemory, T: TablePages>(
    s: &mut Service<R, Q, T>,
    k: &mut impl Kernel,
    group: u16,
    serial: u32,
    request: Request,
    received: &[u32],
) -> Answer {
    let quota = u64::from(s.config.mapping_quota_pages);
    let Some(ready) = s.ready.as_mut() else { return refused(ErrorCode::InvalidCapability, "stale DMA handle").into() };
    if !ready.handles.iter().any(|h| h.group == group && h.serial == serial) {
        return refused(ErrorCode::InvalidCapability, "this DMA handle was released").into();
    }
    let Some(&domain) = ready.defaults.get(usize::from(group)) else {
        return refused(ErrorCode::InvalidCapability, "no such group").into();
    };
    let owner = MappingOwner::Handle(serial);
    match request {
        Request::DmaMap { writable, mask_bits } => {
            let Some(&frame) = received.first() else {
                return refused(ErrorCode::InvalidArgument, "send the frame to map with the request").into();
            };
            let limit = if mask_bits >= 64 { u64::MAX } else { (1u64 << mask_bits.max(12)) - 1 };
            match map(&mut s.hw, &mut s.domains, k, domain, owner, frame, None, limit, writable, quota) {
                Ok(iova) => Reply::Mapped { iova }.into(),
                Err(code) => refused(code, "the frame could not be mapped").into(),
            }
        }
        Request::DmaUnmap { iova } => match s.domains.take(domain, owner, iova) {
            Some(mapping) => {
                unmap(&mut s.hw, &mut s.domains, k, mapping);
                Reply::Done.into()
            }
            None => refused(ErrorCode::NotMapped, "this handle mapped nothing there").into(),
        },
        Request::Faults => take_faults(&mut ready.faults, group).into(),
        _ => refused(ErrorCode::PermissionDenied, "a DMA handle only maps, unmaps and reads its group's faults").into(),
    }
}

/// The oldest of `group`'s recorded faults, as many as a reply holds.
fn take_faults(faults: &mut [FaultLog<{ super::FAULT_LOG }>], group: u16) -> Reply {
    let Some(log) = faults.get_mut(usize::from(group)) else {
        return refused(ErrorCode::InvalidCapability, "no such group");
    };
    let mut records = Vec::new();
    while records.len() < iommu_api::FAULTS_PER_REPLY {
        let Some(record) = log.pop() else { break };
        let _ = records.push(iommu_api::Fault {
            source: Bdf::from_requester_id(record.source.source_id()),
            address: record.address,
            write: record.access == crate::fault::FaultAccess::Write,
            reason: record.reason.0,
        });
    }
    Reply::Faults { records, remaining: log.len() as u32, dropped: log.take_dropped() }
}

// Out of line, so its large frame is not paid for by every request.
#[inline(never)]
fn group_request<R: Registers, Q: QueueMemory, T: TablePages>(
    s: &mut Service<R, Q, T>,
    k: &mut impl Kernel,
    group: u16,
    serial: u32,
    request: Request,
    received: &[u32],
) -> Answer {
    let quota = u64::from(s.config.mapping_quota_pages);
    let spaces_allowed = usize::from(s.config.address_space_quota);
    let capabilities = *s.hw.unit.capabilities();
    let table_config = s.hw.table_config;
    let Some(ready) = s.ready.as_mut() else { return refused(ErrorCode::InvalidCapability, "stale capability").into() };
    let Some(cap) = ready.group_caps.iter().find(|c| c.group == group && c.serial == serial).copied() else {
        return refused(ErrorCode::InvalidCapability, "this group capability was released").into();
    };
    let task = cap.task;
    let Ready { requesters, ownership, defaults, group_caps, address_spaces, faults, .. } = ready;
    let domains = &mut s.domains;
    let own_space = |id: u16| address_spaces.iter().find(|a| a.id == id && a.task == task).copied();
    match request {
        Request::IoasCreate => {
            if address_spaces.iter().filter(|a| a.task == task).count() >= spaces_allowed {
                return refused(ErrorCode::QuotaExceeded, "address-space quota used up").into();
            }
            let (first, last) = domain_window(&table_config);
            let domain = match domains.create(&mut s.hw.pages, &capabilities, table_config, first, last, quota) {
                Ok(domain) => domain,
                Err(code) => return refused(code, "no room for another address space").into(),
            };
            let id = (0..u16::MAX).find(|id| !address_spaces.iter().any(|a| a.id == *id)).unwrap_or(0);
            if address_spaces.push(AddressSpace { id, task, domain }).is_err() {
                domains.destroy(&mut s.hw.pages, domain);
                return refused(ErrorCode::QuotaExceeded, "too many address spaces").into();
            }
            Reply::Ioas { ioas: id }.into()
        }
        Request::Attach { ioas } => {
            if let Some(id) = ioas
                && own_space(id).is_none()
            {
                return refused(ErrorCode::NotFound, "no such address space of this task").into();
            }
            let ioas_domain = |id: u16| address_spaces.iter().find(|a| a.id == id).map(|a| a.domain);
            let mut hw = switch(&mut s.hw, requesters, domains, defaults, &ioas_domain);
            match ownership.attach(group, task, ioas, &mut hw) {
                Ok(()) => Reply::Done.into(),
                Err(_) => refused(ErrorCode::Busy, "the group could not be switched").into(),
            }
        }
        Request::Map { ioas, iova, writable } => {
            let Some(space) = own_space(ioas) else {
                return refused(ErrorCode::NotFound, "no such address space").into();
            };
            let Some(&frame) = received.first() else {
                return refused(ErrorCode::InvalidArgument, "send the frame to map with the request").into();
            };
            let owner = MappingOwner::Ioas(space.id);
            match map(&mut s.hw, domains, k, space.domain, owner, frame, Some(iova), u64::MAX, writable, quota) {
                Ok(iova) => Reply::Mapped { iova }.into(),
                Err(code) => refused(code, "the frame could not be mapped there").into(),
            }
        }
        Request::Unmap { ioas, iova } => {
            let Some(space) = own_space(ioas) else {
                return refused(ErrorCode::NotFound, "no such address space").into();
            };
            match domains.take(space.domain, MappingOwner::Ioas(space.id), iova) {
                Some(mapping) => {
                    unmap(&mut s.hw, domains, k, mapping);
                    Reply::Done.into()
                }
                None => refused(ErrorCode::NotMapped, "nothing mapped there").into(),
            }
        }
        Request::Faults => take_faults(faults, group).into(),
        Request::Release => {
            let ioas_domain = |id: u16| address_spaces.iter().find(|a| a.id == id).map(|a| a.domain);
            let mut hw = switch(&mut s.hw, requesters, domains, defaults, &ioas_domain);
            if ownership.release_user(group, task, &mut hw).is_err() {
                return refused(ErrorCode::InvalidArgument, "not owned by this task").into();
            }
            super::interrupts::revoke_in_group(&mut s.interrupts, &mut s.hw, group, task);
            if let Some(position) = group_caps.iter().position(|c| c.serial == serial) {
                let cap = group_caps.swap_remove(position);
                k.revoke(cap.slot);
            }
            // The task's address spaces no group of it is attached to any
            // more go with the release, so claims and releases in a loop
            // never run out of the address-space quota.
            let in_use = |id: u16| {
                ownership
                    .owners()
                    .any(|(_, owner)| matches!(owner, Owner::User { task: t, ioas: Some(i) } if t == task && i == id))
            };
            while let Some(position) = address_spaces.iter().position(|a| a.task == task && !in_use(a.id)) {
                let space = address_spaces.swap_remove(position);
                unmap_all(&mut s.hw, domains, k, MappingOwner::Ioas(space.id));
                domains.destroy(&mut s.hw.pages, space.domain);
            }
            k.request_reclaim();
            info!("group {=u16} released by {=str}: reclaiming", group, s.config.tasks.name(task));
            Reply::Done.into()
        }
        _ => refused(ErrorCode::PermissionDenied, "a group capability cannot do that").into(),
    }
}

/// A watched task died: its groups are blocked and reclaimed, its group
/// capabilities revoked, its address spaces torn down.
// Out of line, so its large frame is not paid for by every request.
#[inline(never)]
pub(super) fn task_died<R: Registers, Q: QueueMemory, T: TablePages>(
    s: &mut Service<R, Q, T>,
    k: &mut impl Kernel,
    task: u16,
) {
    let Some(ready) = s.ready.as_mut() else { return };
    let Ready { requesters, ownership, defaults, group_caps, address_spaces, .. } = ready;
    let domains = &mut s.domains;
    let ioas_domain = |id: u16| address_spaces.iter().find(|a| a.id == id).map(|a| a.domain);
    let mut hw = switch(&mut s.hw, requesters, domains, defaults, &ioas_domain);
    let orphaned = ownership.task_died(task, &mut hw);
    super::interrupts::revoke_task(&mut s.interrupts, &mut s.hw, task);
    while let Some(position) = group_caps.iter().position(|c| c.task == task) {
        let cap = group_caps.swap_remove(position);
        k.revoke(cap.slot);
    }
    while let Some(position) = address_spaces.iter().position(|a| a.task == task) {
        let space = address_spaces.swap_remove(position);
        unmap_all(&mut s.hw, domains, k, MappingOwner::Ioas(space.id));
        domains.destroy(&mut s.hw.pages, space.domain);
    }
    if !orphaned.is_empty() {
        info!(
            "task {=str} died owning {=usize} groups: blocked and reclaiming",
            s.config.tasks.name(task),
            orphaned.len()
        );
        k.request_reclaim();
    }
}
