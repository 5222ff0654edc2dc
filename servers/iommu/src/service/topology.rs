//! The PCI server's topology report: groups formed, default domains built, translation on.

use core::ops::ControlFlow;

use capabilities::ErrorCode;
use heapless::Vec;
use iommu_api::Reply;
use iommu_groups::index::TopologyIndex;
use iommu_groups::{GroupError, alias, form_groups};

use super::domains::DomainIndex;
use super::placement::{self, Units, place_groups};
use super::quota::KERNEL_TABLE_PAGES;
use super::switch::{MAX_REQUESTERS, Requesters, Switch};
use super::text::refused;
use super::units::MAX_UNITS;
use super::{AppliedAssertion, MAX_RESERVED_DEVICES, Platform, Ready, ReservedDevice, Service, domain_window};
use crate::fault::FaultLog;
use crate::memory::TablePages;
use crate::ownership::{GroupHardware, Ownership, Translation};
use crate::pagetable::Access;

/// Pages the default domains' allocators may hand out in all.
const DEFAULT_DOMAIN_PAGES: u64 = 1 << 24;

/// Adds a chunk of the topology; the last one forms the groups and makes
/// the server ready, or, if that fails, leaves every requester blocked and
/// the server refusing every claim with the reason.
pub(super) fn report<P: Platform>(
    s: &mut Service<P>,
    functions: &[capabilities::pci::PciFunction],
    last: bool,
) -> Reply {
    if s.ready.is_some() {
        return refused(ErrorCode::InvalidArgument, "the topology was reported already");
    }
    for function in functions {
        if s.topology.push(*function).is_err() {
            return fail(s, ErrorCode::TooLarge, "more functions than the server can hold");
        }
    }
    if !last {
        return Reply::Done;
    }
    // The phases' lines carry the kernel's timestamps: `cargo xtask bench`
    // times group formation and the context entries from them.
    info!("topology received: {=usize} functions", s.topology.len());
    // The kernel-owned domains' pages are had before any user can ask.
    while s.hw.pages.spare() < KERNEL_TABLE_PAGES && s.hw.pages.grow() {}
    if s.hw.pages.spare() < KERNEL_TABLE_PAGES {
        warn!(
            "only {=usize} spare table pages, fewer than the {=usize} kept for kernel-owned domains",
            s.hw.pages.spare(),
            KERNEL_TABLE_PAGES
        );
    }
    match build(s) {
        Ok(ready) => {
            info!("translation enabled: {=usize} groups through their default domains", ready.groups.count());
            s.ready = Some(ready);
            Reply::Done
        }
        Err(reason) => fail(s, ErrorCode::InvalidArgument, reason),
    }
}

/// Records that the topology could not be taken: nothing will be.
fn fail<P: Platform>(s: &mut Service<P>, code: ErrorCode, reason: &'static str) -> Reply {
    error!("the topology cannot be taken ({=str}): every requester stays blocked, no group is handed out", reason);
    s.topology.clear();
    s.failed = Some(reason);
    refused(code, reason)
}

/// Forms the groups, gives each a default domain and points its requesters
/// at it.
// Out of line, so its large frame is not paid for by every request.
#[inline(never)]
fn build<P: Platform>(s: &mut Service<P>) -> Result<Ready, &'static str> {
    let asserted = apply_assertions(s);
    let groups = form_groups(&s.topology).map_err(|error| match error {
        GroupError::TooManyFunctions { .. } => "the topology has more functions than MAX_FUNCTIONS",
        GroupError::TooManyGroups { .. } => "the topology forms more groups than MAX_GROUPS",
        _ => "the topology is inconsistent; no groups formed",
    })?;
    info!("groups formed: {=usize} groups", groups.count());
    let index = TopologyIndex::new(&s.topology).map_err(|_| "the topology is inconsistent")?;
    let mut requesters = Requesters::new();
    for id in groups.ids() {
        let mut sources: Vec<u16, MAX_REQUESTERS> = Vec::new();
        for member in groups.members(id) {
            let Some(position) = index.find(member) else { continue };
            let walked = alias::for_each_dma_alias(&index, position, |_, requester| {
                let source = requester.requester_id();
                if !sources.contains(&source) && sources.push(source).is_err() {
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            });
            // A requester id left without a context entry would fault, or
            // worse, stay as the previous owner left it: refuse instead.
            if walked.is_break() {
                return Err("a group uses more requester ids than the server can hold (64)");
            }
        }
        requesters.push(sources).map_err(|_| "more groups than the server can hold")?;
    }
    let driven: Vec<u64, MAX_UNITS> = s.hw.units.iter().map(|unit| unit.base).collect();
    let units = Units { scopes: &s.scopes, driven: &driven, down: &s.down };
    let units = place_groups(&units, &s.topology, &groups);
    let mut defaults = Vec::new();
    for (id, placed) in groups.ids().zip(&units) {
        // A group no one unit translates still gets a default domain (on
        // the first unit's terms), which no context entry ever names.
        let unit = placed.driven().and_then(|index| s.hw.units.get(usize::from(index))).or(s.hw.units.first());
        let Some(unit) = unit else { return Err("no remapping unit is driven") };
        let (capabilities, config) = (*unit.unit.capabilities(), unit.table_config);
        let (first, last) = domain_window(&config);
        let domain = s
            .domains
            .create(&mut s.hw.pages, &capabilities, config, first, last, DEFAULT_DOMAIN_PAGES)
            .map_err(|_| "no table memory or domain id for a default domain")?;
        defaults.push(domain).map_err(|_| "more groups than the server can hold")?;
        if let Some(refusal) = placement::refusal_words(id.0, *placed) {
            warn!("{=str}", refusal.as_str());
        }
    }
    let reserved = map_reserved(s, &groups, &defaults);
    let ownership = Ownership::new(groups.count());
    let no_ioas = |_: u16| None;
    let mut hw = Switch::new(&mut s.hw, &requesters, &units, &mut s.domains, &defaults, &no_ioas);
    for (group, placed) in (0..groups.count() as u16).zip(&units) {
        if placed.driven().is_some() {
            hw.set_translation(group, Translation::Default).map_err(|_| "could not install the context entries")?;
        }
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
        next_ioas: 0,
        units,
        faults,
        reserved,
        asserted,
    })
}

/// Applies the policy's isolation assertions that this machine bears out:
/// the functions each covers count as ACS-isolated (as a device quirk
/// would make them). One whose place holds no function, or a function of
/// another identity, is void: logged, and nothing changes.
fn apply_assertions<P: Platform>(
    s: &mut Service<P>,
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
fn map_reserved<P: Platform>(
    s: &mut Service<P>,
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
