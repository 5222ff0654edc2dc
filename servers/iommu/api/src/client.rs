//! Typed calls to the IOMMU server: policy operations, a DMA handle's and a group capability's.
#![expect(clippy::result_large_err, reason = "a refusal carries the server's reason inline; there is no heap")]

pub mod group;

use capabilities::ErrorCode;
use capabilities::protocol::Refused;
use userlib::cap::{Cap, Endpoint};
use userlib::ipc::Buffer;

use crate::{Reply, Request};

/// Calls the IOMMU server through `endpoint` (its policy capability, a DMA
/// handle or a group capability) with `request`, sending `send` along; a
/// capability in the reply lands in `window` (0 for none expected). A
/// refusal comes back as [`Refused`] with the server's reason.
pub fn call(
    endpoint: Cap<Endpoint>,
    buffer: &mut Buffer,
    request: &Request,
    send: &[u32],
    window: u32,
) -> Result<(Reply, Option<u32>), Refused> {
    buffer.set_send_caps(send);
    buffer.set_window(window, u32::from(window != 0));
    let result = endpoint.call_with(buffer, request);
    let received = buffer.received_caps().first().copied().filter(|_| result.is_ok());
    buffer.set_send_caps(&[]);
    buffer.set_window(0, 0);
    let reply = result.and_then(|message| buffer.decode::<Reply>(message.len));
    match reply {
        Ok(Reply::Refused { code, reason }) => Err(Refused { code, reason }),
        Ok(reply) => Ok((reply, received)),
        Err(code) => Err(code.into()),
    }
}

/// Like [`call`], for requests whose reply carries no capability.
pub fn request(
    endpoint: Cap<Endpoint>,
    buffer: &mut Buffer,
    request: &Request,
    send: &[u32],
) -> Result<Reply, Refused> {
    call(endpoint, buffer, request, send, 0).map(|(reply, _)| reply)
}

/// The server's counters, as `Request::Stats` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct Stats {
    /// Mappings in every domain.
    pub mappings: u32,
    /// Page-table pages in use.
    pub table_pages: u32,
    /// Domain ids in use.
    pub domains: u32,
    /// Faults seen since boot.
    pub faults: u64,
    /// Times since boot the unit's fault records overflowed.
    pub fault_overflows: u64,
}

impl Stats {
    /// What the server holds for its clients (mappings, table pages,
    /// domains): what a check for leaks compares.
    pub fn held(&self) -> [u32; 3] {
        [self.mappings, self.table_pages, self.domains]
    }
}

/// Asks the IOMMU server through its policy capability for its counters.
pub fn stats(iommu: Cap<Endpoint>, buffer: &mut Buffer) -> Result<Stats, Refused> {
    match request(iommu, buffer, &Request::Stats, &[])? {
        Reply::Stats { mappings, table_pages, domains, faults, fault_overflows } => {
            Ok(Stats { mappings, table_pages, domains, faults, fault_overflows })
        }
        _ => Err(unexpected()),
    }
}

/// DMA handle: maps `frame` where the server chooses below a
/// `mask_bits`-bit DMA mask, device writes allowed if `writable`; the IOVA.
pub fn dma_map(
    handle: Cap<Endpoint>,
    buffer: &mut Buffer,
    frame: u32,
    writable: bool,
    mask_bits: u8,
) -> Result<u64, Refused> {
    match request(handle, buffer, &Request::DmaMap { writable, mask_bits }, &[frame])? {
        Reply::Mapped { iova } => Ok(iova),
        _ => Err(unexpected()),
    }
}

/// A reply of the wrong kind for its request.
pub fn unexpected() -> Refused {
    ErrorCode::Malformed.into()
}
