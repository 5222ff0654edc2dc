//! The edu protocol's requests, served over one device and one DMA buffer.

use capabilities::ErrorCode;
use capabilities::badge;
use capabilities::pci::Bdf;
use capabilities::protocol::Refused;
use edu_api::{REASON_MAX, Reply, Request, canary};
use heapless::{String, Vec};
use iommu_api::{FAULTS_PER_REPLY, Fault};
use userlib::cap::{Cap, DeviceMemory, Endpoint, Frame, Interrupt, Notification, own};
use userlib::ipc::Buffer;
use userlib::mmio::Mapping;

use crate::device::{DEVICE_BUFFER, Edu};

/// Where BAR0 is mapped.
const BAR_VIRT: u64 = 0x2000_0000;
/// Where the DMA buffer is mapped.
const BUFFER_VIRT: u64 = 0x2100_0000;
/// The DMA buffer's second half receives what comes back from the device.
const RETURN_OFFSET: u64 = 2048;
/// Bytes a `DmaAt` or `Start` moves.
const PROBE_BYTES: u64 = 64;
/// Bytes of the DMA buffer (one page).
const BUFFER_BYTES: u64 = 4096;

/// A device taken by [`Mapper::adopt`].
pub struct Taken {
    /// The device.
    pub device: Bdf,
    /// Its IOMMU group.
    pub group: u16,
    /// Its BAR0.
    pub bar: Cap<DeviceMemory>,
    /// Its MSI.
    pub interrupt: Cap<Interrupt>,
}

/// How the device and its DMA buffer are obtained and mapped: the
/// difference between a trusted driver and a user-assigned task.
pub trait Mapper {
    /// A name for logs.
    fn role(&self) -> &'static str;
    /// Takes `device` (`None`: whatever the policy binds to this task).
    fn adopt(&mut self, buffer: &mut Buffer, device: Option<Bdf>) -> Result<Taken, Refused>;
    /// Maps the one-page `frame` for the device; its IOVA.
    fn map(&mut self, buffer: &mut Buffer, frame: Cap<Frame>) -> Result<u64, Refused>;
    /// Maps a frame another task lent (`MapLent`) beside the buffer; its IOVA.
    fn map_lent(&mut self, buffer: &mut Buffer, frame: Cap<Frame>) -> Result<u64, Refused>;
    /// Unmaps what `map` mapped at `iova`.
    fn unmap(&mut self, buffer: &mut Buffer, iova: u64) -> Result<(), Refused>;
    /// Gives `device` back (with the group, for a user task).
    fn release(&mut self, buffer: &mut Buffer, device: Bdf) -> Result<(), Refused>;
    /// Takes the group's recorded faults, and how many were dropped.
    fn faults(&mut self, buffer: &mut Buffer) -> Result<(Vec<Fault, FAULTS_PER_REPLY>, u64), Refused>;
}

/// The server's state: the device once adopted, the buffer and its IOVA,
/// and the slot a lent frame arrives in.
struct State {
    edu: Option<(Edu, Bdf)>,
    frame: Cap<Frame>,
    memory: Mapping<Frame>,
    iova: Option<u64>,
    lent: u32,
}

/// Adopts the policy's device if `adopt_at_start`, then serves `requests`
/// forever. `frame` is a one-page frame for the DMA buffer; `done` a
/// notification for completion interrupts (not bound to the endpoint);
/// `lent` an empty slot, where a request's capability arrives (emptied
/// after every request).
pub fn serve(
    mapper: &mut impl Mapper,
    requests: Cap<Endpoint>,
    frame: Cap<Frame>,
    done: Cap<Notification>,
    lent: u32,
    adopt_at_start: bool,
) -> u64 {
    let Some(mut buffer) = Buffer::take() else { return 1 };
    let memory = match Mapping::map(own::SPACE, frame, BUFFER_VIRT, true) {
        Ok(memory) => memory,
        Err(code) => {
            defmt::error!("{=str}: the DMA buffer cannot be mapped: {}", mapper.role(), code);
            return 1;
        }
    };
    let mut state = State { edu: None, frame, memory, iova: None, lent };
    if adopt_at_start {
        match adopt(mapper, &mut buffer, &mut state, done, None) {
            Reply::Adopted { .. } => {
                if let Reply::Copied { iova, matched } = copy(&state, 1024, 0x5a) {
                    let role = mapper.role();
                    if matched {
                        defmt::info!("{=str}: DMA round trip intact through IOVA {=u64:#x}", role, iova);
                    } else {
                        defmt::error!("{=str}: DMA round trip through IOVA {=u64:#x} came back WRONG", role, iova);
                    }
                }
            }
            Reply::Refused { code: ErrorCode::NotFound, .. } => {
                defmt::info!("{=str}: no device bound yet; waiting for an adopt request", mapper.role());
            }
            Reply::Refused { code, reason } => {
                defmt::error!("{=str}: no device ({}): {=str}", mapper.role(), code, reason.as_str());
            }
            _ => {}
        }
    }
    buffer.set_window(lent, 1);
    let mut next = requests.receive(&mut buffer, 0, 0);
    loop {
        let message = match next {
            Ok(message) => message,
            Err(code) => {
                defmt::warn!("{=str}: receive failed: {}", mapper.role(), code);
                next = requests.receive(&mut buffer, 0, 0);
                continue;
            }
        };
        let reply = match buffer.decode::<Request>(message.len) {
            Ok(request) if badge::allows(message.badge, request.operation() as u8) => {
                handle(mapper, &mut buffer, &mut state, done, request)
            }
            Ok(request) => refused(ErrorCode::PermissionDenied, format_args!("{:?} not granted", request.operation())),
            Err(code) => refused(code, format_args!("not an edu request")),
        };
        // Whatever came with the request is not kept (a lent frame stays
        // its lender's), and the slot is free for the next one.
        let _ = Cap::<Frame>::at(lent).delete();
        let len = buffer.encode(&reply).unwrap_or(0);
        buffer.set_send_caps(&[]);
        buffer.set_window(lent, 1);
        next = own::REPLY.reply_receive(&mut buffer, len, requests, 0, 0);
    }
}

fn handle(
    mapper: &mut impl Mapper,
    buffer: &mut Buffer,
    state: &mut State,
    done: Cap<Notification>,
    request: Request,
) -> Reply {
    match request {
        Request::Adopt { device } => adopt(mapper, buffer, state, done, Some(device)),
        Request::Copy { len, seed } => copy(state, u64::from(len), seed),
        Request::Unmap => match state.iova.take() {
            Some(iova) => match mapper.unmap(buffer, iova) {
                Ok(()) => Reply::Buffer { iova },
                Err(refusal) => {
                    state.iova = Some(iova);
                    forward(refusal)
                }
            },
            None => refused(ErrorCode::NotMapped, format_args!("the buffer is not mapped")),
        },
        Request::Map => match (state.iova, &state.edu) {
            (Some(iova), _) => Reply::Buffer { iova },
            (None, None) => refused(ErrorCode::NotFound, format_args!("no device yet")),
            (None, Some(_)) => match mapper.map(buffer, state.frame) {
                Ok(iova) => {
                    state.iova = Some(iova);
                    Reply::Buffer { iova }
                }
                Err(refusal) => forward(refusal),
            },
        },
        Request::MapLent => {
            if state.edu.is_none() {
                return refused(ErrorCode::NotFound, format_args!("no device yet"));
            }
            if !buffer.received_caps().contains(&state.lent) {
                return refused(ErrorCode::InvalidArgument, format_args!("send the frame to map with the request"));
            }
            match mapper.map_lent(buffer, Cap::at(state.lent)) {
                Ok(iova) => Reply::Buffer { iova },
                Err(refusal) => forward(refusal),
            }
        }
        Request::DmaAt { iova, to_device } => {
            let Some((edu, device)) = &state.edu else {
                return refused(ErrorCode::NotFound, format_args!("no device yet"));
            };
            let (source, destination) = if to_device { (iova, DEVICE_BUFFER) } else { (DEVICE_BUFFER, iova) };
            match edu.dma(source, destination, PROBE_BYTES, !to_device) {
                Ok(()) => Reply::Done,
                Err(code) => refused(code, format_args!("{device}: the DMA did not complete")),
            }
        }
        Request::Faults => match mapper.faults(buffer) {
            Ok((records, dropped)) => Reply::Faults { records, dropped },
            Err(refusal) => forward(refusal),
        },
        Request::Release => {
            let Some((edu, device)) = state.edu.take() else {
                return refused(ErrorCode::NotFound, format_args!("no device to release"));
            };
            if let Some(iova) = state.iova.take() {
                // The release revokes every mapping anyway; this is just tidy.
                let _ = mapper.unmap(buffer, iova);
            }
            edu.close();
            match mapper.release(buffer, device) {
                Ok(()) => {
                    defmt::info!("{=str}: released {}", mapper.role(), device);
                    Reply::Done
                }
                Err(refusal) => forward(refusal),
            }
        }
        Request::Start { iova } => {
            let Some((edu, device)) = &state.edu else {
                return refused(ErrorCode::NotFound, format_args!("no device yet"));
            };
            match edu.start(DEVICE_BUFFER, iova, PROBE_BYTES, true) {
                Ok(()) => {
                    defmt::info!("{=str}: a DMA to {=u64:#x} is in flight", mapper.role(), iova);
                    Reply::Done
                }
                Err(code) => refused(code, format_args!("{device}: the DMA did not start")),
            }
        }
        Request::FillBuffer { seed } => {
            if (0..BUFFER_BYTES).all(|at| state.memory.write8(at, canary(seed, at)).is_some()) {
                Reply::Done
            } else {
                refused(ErrorCode::InvalidArgument, format_args!("the DMA buffer is not writable"))
            }
        }
        Request::CheckBuffer { seed } => {
            let changed = (0..BUFFER_BYTES).filter(|&at| state.memory.read8(at) != Some(canary(seed, at))).count();
            Reply::Checked { changed: changed as u16 }
        }
    }
}

fn adopt(
    mapper: &mut impl Mapper,
    buffer: &mut Buffer,
    state: &mut State,
    done: Cap<Notification>,
    device: Option<Bdf>,
) -> Reply {
    if let Some((_, held)) = &state.edu {
        return refused(ErrorCode::Busy, format_args!("{} already drives {held}", mapper.role()));
    }
    let taken = match mapper.adopt(buffer, device) {
        Ok(taken) => taken,
        Err(refusal) => return forward(refusal),
    };
    let edu = match Edu::new(taken.bar, taken.interrupt, done, BAR_VIRT) {
        Ok(edu) => edu,
        Err(code) => return refused(code, format_args!("{}: BAR0 unusable or not an edu", taken.device)),
    };
    let iova = match mapper.map(buffer, state.frame) {
        Ok(iova) => iova,
        Err(refusal) => {
            edu.close();
            return forward(refusal);
        }
    };
    defmt::info!(
        "{=str}: drives {} (group {=u16}), DMA buffer at IOVA {=u64:#x}",
        mapper.role(),
        taken.device,
        taken.group,
        iova
    );
    state.edu = Some((edu, taken.device));
    state.iova = Some(iova);
    Reply::Adopted { group: taken.group }
}

/// Sends `len` bytes of a pattern to the device and back, and compares.
fn copy(state: &State, len: u64, seed: u8) -> Reply {
    let (Some((edu, device)), Some(iova)) = (&state.edu, state.iova) else {
        return refused(ErrorCode::NotMapped, format_args!("no device or the buffer is not mapped"));
    };
    if len == 0 || len > RETURN_OFFSET {
        return refused(ErrorCode::InvalidArgument, format_args!("copy 1 to {RETURN_OFFSET} bytes, not {len}"));
    }
    let pattern = |at: u64| (at as u8).wrapping_mul(31).wrapping_add(seed);
    for at in 0..len {
        let _ = state.memory.write8(at, pattern(at));
        let _ = state.memory.write8(RETURN_OFFSET + at, 0);
    }
    let moved =
        edu.dma(iova, DEVICE_BUFFER, len, false).and_then(|()| edu.dma(DEVICE_BUFFER, iova + RETURN_OFFSET, len, true));
    if let Err(code) = moved {
        return refused(code, format_args!("{device}: a DMA did not complete"));
    }
    let matched = (0..len).all(|at| state.memory.read8(RETURN_OFFSET + at) == Some(pattern(at)));
    Reply::Copied { iova, matched }
}

/// A refusal from another server, passed on.
fn forward(refusal: Refused) -> Reply {
    let text = refusal.reason.as_str();
    let mut end = text.len().min(REASON_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut reason = String::new();
    let _ = reason.push_str(&text[..end]);
    Reply::Refused { code: refusal.code, reason }
}

fn refused(code: ErrorCode, reason: core::fmt::Arguments<'_>) -> Reply {
    let mut text = String::<REASON_MAX>::new();
    let _ = core::fmt::write(&mut text, reason);
    Reply::Refused { code, reason: text }
}
