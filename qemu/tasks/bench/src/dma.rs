//! Map and unmap throughput through the IOMMU server, on the DMA handle of
//! the edu device the policy binds to this task.
//!
//! One sample of a figure times a whole phase: [`SINGLES`] one-page frames
//! mapped one request each, then unmapped one request each; or [`BATCHES`]
//! frames of [`BATCH_PAGES`] pages mapped one request each (one request
//! maps the whole frame), then unmapped. An unmap returns only once the
//! server has invalidated the IOTLB and released the pin. The frames stay
//! allocated between samples; only the mappings come and go.

use capabilities::ErrorCode;
use iommu_api::{Reply, Request};
use userlib::cap::{Cap, Endpoint};
use userlib::ipc::Buffer;
use userlib::objects;

use crate::timing::rdtsc;

/// One-page frames mapped per sample (a domain's address allocator tracks
/// 64 ranges, one of them the interrupt window).
pub const SINGLES: usize = 48;
/// Frames of [`BATCH_PAGES`] pages mapped per sample.
pub const BATCHES: usize = 32;
/// Pages per batched request.
pub const BATCH_PAGES: u64 = 64;
/// Samples of each figure per boot.
const SAMPLES: usize = 7;
/// The edu device's DMA address width.
pub const EDU_MASK_BITS: u8 = 28;

/// The frames this task maps, by slot.
pub struct Frames {
    singles: [u32; SINGLES],
    batches: [u32; BATCHES],
}

impl Frames {
    /// Allocates the frames into consecutive slots from `first`.
    pub fn allocate(first: u32) -> Result<Self, ErrorCode> {
        let mut frames = Self { singles: [0; SINGLES], batches: [0; BATCHES] };
        let mut slot = first;
        for single in &mut frames.singles {
            *single = objects::alloc_frame(slot, 1)?.slot();
            slot += 1;
        }
        for batch in &mut frames.batches {
            *batch = objects::alloc_frame(slot, BATCH_PAGES)?.slot();
            slot += 1;
        }
        Ok(frames)
    }

    /// One slot past the last frame's.
    pub const fn end(first: u32) -> u32 {
        first + (SINGLES + BATCHES) as u32
    }
}

/// Maps the frame in `frame` (sent with the request); its I/O address.
pub fn map(handle: Cap<Endpoint>, buffer: &mut Buffer, frame: u32) -> Result<u64, ErrorCode> {
    buffer.set_send_caps(&[frame]);
    let received = handle.call_with(buffer, &Request::DmaMap { writable: true, mask_bits: EDU_MASK_BITS });
    buffer.set_send_caps(&[]);
    match buffer.decode::<Reply>(received?.len)? {
        Reply::Mapped { iova } => Ok(iova),
        Reply::Refused { code, .. } => Err(code),
        _ => Err(ErrorCode::Malformed),
    }
}

/// Unmaps what `map` mapped at `iova`.
pub fn unmap(handle: Cap<Endpoint>, buffer: &mut Buffer, iova: u64) -> Result<(), ErrorCode> {
    let received = handle.call_with(buffer, &Request::DmaUnmap { iova })?;
    match buffer.decode::<Reply>(received.len)? {
        Reply::Done => Ok(()),
        Reply::Refused { code, .. } => Err(code),
        _ => Err(ErrorCode::Malformed),
    }
}

/// Maps every frame of `frames`, then unmaps them; returns the cycles each
/// phase took.
fn phase(
    handle: Cap<Endpoint>,
    buffer: &mut Buffer,
    frames: &[u32],
    iovas: &mut [u64],
) -> Result<(u64, u64), ErrorCode> {
    let start = rdtsc();
    for (frame, iova) in frames.iter().zip(iovas.iter_mut()) {
        *iova = map(handle, buffer, *frame)?;
    }
    let mapped = rdtsc();
    for iova in iovas.iter().take(frames.len()) {
        unmap(handle, buffer, *iova)?;
    }
    Ok((mapped - start, rdtsc() - mapped))
}

/// Runs every sample and logs one `BENCH dma` line per figure and sample.
pub fn run(handle: Cap<Endpoint>, buffer: &mut Buffer, frames: &Frames) -> Result<(), ErrorCode> {
    let mut iovas = [0u64; SINGLES];
    // Warm-up: table pages, the server's code and data.
    phase(handle, buffer, &frames.singles, &mut iovas)?;
    phase(handle, buffer, &frames.batches, &mut iovas)?;
    for _ in 0..SAMPLES {
        let (map1, unmap1) = phase(handle, buffer, &frames.singles, &mut iovas)?;
        let (map64, unmap64) = phase(handle, buffer, &frames.batches, &mut iovas)?;
        let singles = SINGLES as u64;
        let batched = BATCHES as u64 * BATCH_PAGES;
        defmt::info!("BENCH dma map-1 cycles {=u64} pages {=u64}", map1, singles);
        defmt::info!("BENCH dma unmap-1 cycles {=u64} pages {=u64}", unmap1, singles);
        defmt::info!("BENCH dma map-64 cycles {=u64} pages {=u64}", map64, batched);
        defmt::info!("BENCH dma unmap-64 cycles {=u64} pages {=u64}", unmap64, batched);
    }
    Ok(())
}
