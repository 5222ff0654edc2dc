//! The driver core's side of the IOMMU server's protocol: claims, owners, reclaims, topology.
//!
//! Every reply is checked against what the request allows; anything else
//! is [`IommuFailure::Unexpected`], and a capability that came with a reply
//! that should carry none is deleted, so a confused IOMMU server cannot
//! make the PCI server leak slots.

use core::fmt;

use capabilities::ErrorCode;
use capabilities::pci::{Bdf, Topology};
use heapless::String;
use iommu_api::{OwnerReport, REASON_MAX, ReclaimPage, Reply, Request, TOPOLOGY_CHUNK};

use super::env::{IommuLink, Kernel, Slot};

/// Why an IOMMU request did not succeed.
#[expect(clippy::large_enum_variant, reason = "the IOMMU server's reason is forwarded inline; there is no heap")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IommuFailure {
    /// The policy connects no IOMMU server.
    Absent,
    /// The call itself failed (the server died, the capability is bad).
    Unreachable(ErrorCode),
    /// The server refused, with its reason.
    Refused {
        /// Its code.
        code: ErrorCode,
        /// Its reason.
        reason: String<REASON_MAX>,
    },
    /// A reply the protocol does not allow for the request.
    Unexpected,
}

impl IommuFailure {
    /// The code a client is refused with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Absent => ErrorCode::NotFound,
            Self::Unreachable(code) | Self::Refused { code, .. } => *code,
            Self::Unexpected => ErrorCode::Malformed,
        }
    }
}

impl fmt::Display for IommuFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Absent => f.write_str("no IOMMU server"),
            Self::Unreachable(code) => write!(f, "the IOMMU server is unreachable ({})", code.name()),
            Self::Refused { code, reason } => write!(f, "the IOMMU server refused ({}): {reason}", code.name()),
            Self::Unexpected => f.write_str("the IOMMU server sent a reply its protocol does not allow here"),
        }
    }
}

/// Calls the IOMMU server; a refusal becomes an error. The capability that
/// came with the reply, if any, is the caller's.
fn call<I: IommuLink, K: Kernel>(
    link: Option<&mut I>,
    kernel: &mut K,
    request: &Request,
) -> Result<(Reply, Option<Slot>), IommuFailure> {
    let link = link.ok_or(IommuFailure::Absent)?;
    match link.call(request).map_err(IommuFailure::Unreachable)? {
        (Reply::Refused { code, reason }, cap) => {
            if let Some(slot) = cap {
                kernel.delete(slot);
            }
            Err(IommuFailure::Refused { code, reason })
        }
        answer => Ok(answer),
    }
}

/// Calls and expects no capability back.
fn call_plain<I: IommuLink, K: Kernel>(
    link: Option<&mut I>,
    kernel: &mut K,
    request: &Request,
) -> Result<Reply, IommuFailure> {
    let (reply, cap) = call(link, kernel, request)?;
    if let Some(slot) = cap {
        kernel.delete(slot);
        return Err(IommuFailure::Unexpected);
    }
    Ok(reply)
}

/// Claims `device`'s group's default domain for `driver`: the group and
/// the DMA handle.
pub fn claim_kernel<I: IommuLink, K: Kernel>(
    link: Option<&mut I>,
    kernel: &mut K,
    device: Bdf,
    driver: u16,
) -> Result<(u16, Slot), IommuFailure> {
    match call(link, kernel, &Request::ClaimKernel { device, driver })? {
        (Reply::Group { group }, Some(handle)) => Ok((group, handle)),
        (_, cap) => {
            if let Some(slot) = cap {
                kernel.delete(slot);
            }
            Err(IommuFailure::Unexpected)
        }
    }
}

/// Releases `driver`'s claim on `device`'s group.
pub fn release_kernel<I: IommuLink, K: Kernel>(
    link: Option<&mut I>,
    kernel: &mut K,
    device: Bdf,
    driver: u16,
) -> Result<(), IommuFailure> {
    match call_plain(link, kernel, &Request::ReleaseKernel { device, driver })? {
        Reply::Done => Ok(()),
        _ => Err(IommuFailure::Unexpected),
    }
}

/// `device`'s group and its owner.
pub fn owner<I: IommuLink, K: Kernel>(
    link: Option<&mut I>,
    kernel: &mut K,
    device: Bdf,
) -> Result<(u16, OwnerReport), IommuFailure> {
    match call_plain(link, kernel, &Request::Owner { device })? {
        Reply::Owner { group, owner } => Ok((group, owner)),
        _ => Err(IommuFailure::Unexpected),
    }
}

/// A page of the members of the first group from `group` on whose devices
/// must be quiesced, from member `offset` on if it is `group` itself;
/// `None` when no such group waits. A page that does not follow from the
/// request (an earlier group, another offset, no progress) is
/// [`IommuFailure::Unexpected`].
pub fn pending_reclaims<I: IommuLink, K: Kernel>(
    link: Option<&mut I>,
    kernel: &mut K,
    group: u16,
    offset: u16,
) -> Result<Option<ReclaimPage>, IommuFailure> {
    let page = match call_plain(link, kernel, &Request::PendingReclaims { group, offset })? {
        Reply::Reclaims { page } => page,
        _ => return Err(IommuFailure::Unexpected),
    };
    let Some(page) = page else { return Ok(None) };
    let expected = if page.group == group { offset } else { 0 };
    let stuck = page.members.is_empty() && page.offset < page.total;
    let past = usize::from(page.offset) + page.members.len() > usize::from(page.total);
    if page.group < group || page.offset != expected || stuck || past {
        return Err(IommuFailure::Unexpected);
    }
    Ok(Some(page))
}

/// Tells the IOMMU server `group`'s devices are quiesced, `quiesced` of them.
pub fn reclaimed<I: IommuLink, K: Kernel>(
    link: Option<&mut I>,
    kernel: &mut K,
    group: u16,
    quiesced: u16,
) -> Result<(), IommuFailure> {
    match call_plain(link, kernel, &Request::Reclaimed { group, quiesced })? {
        Reply::Done => Ok(()),
        _ => Err(IommuFailure::Unexpected),
    }
}

/// The message a device must send for one MSI vector, from the IOMMU
/// server: remappable, naming `entry`, when it remaps interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remapped {
    /// Message address.
    pub address: u64,
    /// Message data.
    pub data: u32,
    /// The interrupt entry it names (`None`: no remapping, the kernel's message).
    pub entry: Option<u16>,
}

/// Turns the kernel's message for `device`'s vector (compatibility
/// format) into the one to program, with an interrupt entry for `holder`.
pub fn alloc_interrupt<I: IommuLink, K: Kernel>(
    link: Option<&mut I>,
    kernel: &mut K,
    device: Bdf,
    holder: u16,
    address: u64,
    data: u32,
) -> Result<Remapped, IommuFailure> {
    match call_plain(link, kernel, &Request::AllocInterrupt { device, holder, address, data })? {
        Reply::Interrupt { address, data, entry } => Ok(Remapped { address, data, entry }),
        _ => Err(IommuFailure::Unexpected),
    }
}

/// Gives `device`'s interrupt entry back.
pub fn free_interrupt<I: IommuLink, K: Kernel>(
    link: Option<&mut I>,
    kernel: &mut K,
    device: Bdf,
    entry: u16,
) -> Result<(), IommuFailure> {
    match call_plain(link, kernel, &Request::FreeInterrupt { device, entry })? {
        Reply::Done => Ok(()),
        _ => Err(IommuFailure::Unexpected),
    }
}

/// Reports every function of `topology`, [`TOPOLOGY_CHUNK`] per message,
/// the last one marked (an empty topology is one empty, last chunk).
pub fn report_topology<I: IommuLink, K: Kernel>(
    mut link: Option<&mut I>,
    kernel: &mut K,
    topology: &Topology,
) -> Result<(), IommuFailure> {
    let count = topology.functions.len().div_ceil(TOPOLOGY_CHUNK).max(1);
    for index in 0..count {
        let start = index * TOPOLOGY_CHUNK;
        let chunk = topology.functions.get(start..).unwrap_or(&[]);
        let functions = chunk.iter().take(TOPOLOGY_CHUNK).copied().collect();
        let request = Request::ReportTopology { functions, last: index + 1 == count };
        match call_plain(link.as_deref_mut(), kernel, &request)? {
            Reply::Done => {}
            _ => return Err(IommuFailure::Unexpected),
        }
    }
    Ok(())
}
