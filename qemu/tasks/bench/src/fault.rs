//! The latency from a DMA the IOMMU blocks to the device's owner holding
//! the fault record.
//!
//! The edu device reads a few bytes from an I/O address nothing is mapped
//! at. QEMU's edu model starts a transfer 100 ms (virtual time) after the
//! command, so the command cannot be the start of the clock: this task
//! polls the command register, time-stamping each read, until the start
//! bit clears, which the model does in the same step as the blocked
//! access. The clock starts at the stamp of the last read that still saw
//! the bit set (so one poll period, reported, is the resolution and the
//! figure an upper bound), and stops when a `Faults` request on the DMA
//! handle returns the record. In between: the unit's fault event, the
//! kernel's interrupt delivery, the IOMMU server draining the fault
//! registers into the group's log, and this task's request.

use capabilities::ErrorCode;
use edu::{DEVICE_BUFFER, command, reg};
use iommu_api::{Reply, Request};
use userlib::cap::{Cap, DeviceMemory, Endpoint, own};
use userlib::ipc::Buffer;
use userlib::mmio::Mapping;

use crate::timing::rdtsc;

/// Blocked DMAs per boot, and as many that are not blocked (each waits
/// out the edu model's 100 ms).
const SAMPLES: usize = 5;
/// Where BAR0 is mapped.
const BAR0_AT: u64 = 0x3000_0000;
/// An I/O address below the edu's 28-bit mask that nothing is mapped at
/// (the server allocates from the bottom, and every mapping is gone).
pub const BLOCKED_IOVA: u64 = 0x0ff0_0000;

/// Takes the group's oldest recorded faults: how many came, and whether
/// one is the blocked read's.
fn faults(handle: Cap<Endpoint>, buffer: &mut Buffer) -> Result<(usize, bool), ErrorCode> {
    let received = handle.call_with(buffer, &Request::Faults)?;
    match buffer.decode::<Reply>(received.len)? {
        Reply::Faults { records, .. } => {
            Ok((records.len(), records.iter().any(|record| record.address & !0xfff == BLOCKED_IOVA)))
        }
        Reply::Refused { code, .. } => Err(code),
        _ => Err(ErrorCode::Malformed),
    }
}

/// Starts an 8-byte read by the device from `source` and polls until it
/// ends: (stamp before the last poll that saw it running, stamp before the
/// poll that saw it end, stamp after that poll).
fn transfer(registers: &Mapping<DeviceMemory>, source: u64, limit: u64) -> Result<(u64, u64, u64), ErrorCode> {
    let write = |offset, value| registers.write64(offset, value).ok_or(ErrorCode::BadAddress);
    write(reg::DMA_SOURCE, source)?;
    write(reg::DMA_DESTINATION, DEVICE_BUFFER)?;
    write(reg::DMA_COUNT, 8)?;
    write(reg::DMA_COMMAND, command::RUN)?;
    let issued = rdtsc();
    let mut still_running = issued;
    loop {
        let stamp = rdtsc();
        let state = registers.read64(reg::DMA_COMMAND).ok_or(ErrorCode::BadAddress)?;
        if state & command::RUN == 0 {
            return Ok((still_running, stamp, rdtsc()));
        }
        if stamp - issued > limit {
            return Err(ErrorCode::TimedOut);
        }
        still_running = stamp;
    }
}

/// One blocked read: (latency, poll period) in cycles.
fn sample(
    registers: &Mapping<DeviceMemory>,
    handle: Cap<Endpoint>,
    buffer: &mut Buffer,
    limit: u64,
) -> Result<(u64, u64), ErrorCode> {
    while faults(handle, buffer)?.0 != 0 {}
    let (still_running, done, _) = transfer(registers, BLOCKED_IOVA, limit)?;
    loop {
        let (_, found) = faults(handle, buffer)?;
        let held = rdtsc();
        if found {
            return Ok((held - still_running, done - still_running));
        }
        if held - done > limit {
            return Err(ErrorCode::NotFound);
        }
    }
}

/// Runs the samples and logs one `BENCH fault` line each. First, reads
/// from a mapped page (the frame in `frame`) time how long the poll that
/// sees a transfer end takes when nothing faults: QEMU's edu model does
/// the transfer while that read waits for it, and that share of the
/// latency is the model's, not the fault path's.
pub fn run(
    bar0: Cap<DeviceMemory>,
    handle: Cap<Endpoint>,
    buffer: &mut Buffer,
    frame: u32,
    cycles_per_us: u64,
) -> Result<(), ErrorCode> {
    let registers = Mapping::map(own::SPACE, bar0, BAR0_AT, true)?;
    // Two seconds: far beyond the model's 100 ms.
    let limit = cycles_per_us.saturating_mul(2_000_000);
    let mapped = crate::dma::map(handle, buffer, frame)?;
    for _ in 0..SAMPLES {
        let (_, done, after) = transfer(&registers, mapped, limit)?;
        defmt::info!("BENCH fault-model cycles {=u64}", after - done);
    }
    crate::dma::unmap(handle, buffer, mapped)?;
    for _ in 0..SAMPLES {
        let (latency, poll) = sample(&registers, handle, buffer, limit)?;
        defmt::info!("BENCH fault-record cycles {=u64} poll {=u64}", latency, poll);
    }
    registers.unmap()
}
