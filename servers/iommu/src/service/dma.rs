//! The DMA API: what a trusted driver's DMA handle may do in its group's default domain.

use capabilities::ErrorCode;
use iommu_api::{Reply, Request};

use super::domains::{DomainIndex, MappingOwner};
use super::kernel::Kernel;
use super::mapping::{self, NewMapping, Placement};
use super::text::refused;
use super::{Answer, Minted, Platform, Service, faults};

/// Answers a request sent with the DMA handle `serial` on `group`.
pub(super) fn request<P: Platform>(s: &mut Service<P>, k: &mut impl Kernel, minted: Minted) -> Answer {
    let Minted { group, serial, request, received } = minted;
    let domain = match default_domain(s, group, serial) {
        Ok(domain) => domain,
        Err(reason) => return refused(ErrorCode::InvalidCapability, reason).into(),
    };
    let owner = MappingOwner::Handle(serial);
    match request {
        Request::DmaMap { writable, mask_bits } => map(s, k, domain, owner, received, writable, mask_bits),
        Request::DmaUnmap { iova } => unmap(s, k, domain, owner, iova),
        Request::Faults => faults::take(s, group).into(),
        _ => refused(ErrorCode::PermissionDenied, "a DMA handle only maps, unmaps and reads its group's faults").into(),
    }
}

/// The default domain the live handle `serial` maps into, or why the
/// handle is no good.
fn default_domain<P: Platform>(s: &Service<P>, group: u16, serial: u32) -> Result<DomainIndex, &'static str> {
    let ready = s.ready.as_ref().ok_or("stale DMA handle")?;
    if !ready.handles.iter().any(|h| h.group == group && h.serial == serial) {
        return Err("this DMA handle was released");
    }
    ready.defaults.get(usize::from(group)).copied().ok_or("no such group")
}

/// `DmaMap`: maps the frame sent along where the server chooses, inside
/// the device's `mask_bits`-bit DMA mask.
fn map<P: Platform>(
    s: &mut Service<P>,
    k: &mut impl Kernel,
    domain: DomainIndex,
    owner: MappingOwner,
    received: &[u32],
    writable: bool,
    mask_bits: u8,
) -> Answer {
    let Some(&frame) = received.first() else {
        return refused(ErrorCode::InvalidArgument, "send the frame to map with the request").into();
    };
    let limit = if mask_bits >= 64 { u64::MAX } else { (1u64 << mask_bits.max(12)) - 1 };
    let quota = u64::from(s.config.mapping_quota_pages);
    let new = NewMapping { domain, owner, frame, placement: Placement::Below(limit), writable, quota };
    match mapping::map(&mut s.hw, &mut s.domains, k, new, None) {
        Ok((iova, _)) => Reply::Mapped { iova }.into(),
        Err(code) => refused(code, "the frame could not be mapped").into(),
    }
}

/// `DmaUnmap`: removes the handle's mapping at `iova`.
fn unmap<P: Platform>(
    s: &mut Service<P>,
    k: &mut impl Kernel,
    domain: DomainIndex,
    owner: MappingOwner,
    iova: u64,
) -> Answer {
    match s.domains.take(domain, owner, iova) {
        Some(mapping) => match mapping::unmap(&mut s.hw, &mut s.domains, k, mapping, None) {
            Ok(()) => Reply::Done.into(),
            Err(code) => refused(code, "the unit did not confirm the invalidation; the frame stays pinned").into(),
        },
        None => refused(ErrorCode::NotMapped, "this handle mapped nothing there").into(),
    }
}
