//! The block protocol, served over the controller the cases set up.
//!
//! A client's frame comes with its `Read` or `Write`; it is mapped
//! through the driver's DMA handle only once [`block_api::check`] has
//! found it exactly the transfer's pages, and unmapped before the reply,
//! so the device reaches the client's memory for that command alone.

use block_api::{Geometry, Invalid, REASON_MAX, Reply, Request};
use capabilities::ErrorCode;
use capabilities::badge;
use capabilities::protocol::Refused;
use heapless::String;
use iommu_api::Request as Dma;
use nvme::command::Direction;
use nvme::identify::Namespace;
use userlib::cap::{Cap, Endpoint, Frame, own};
use userlib::ipc::Buffer;

use crate::driver::controller::{Controller, DATA_BYTES};
use crate::{DMA_MASK_BITS, NAMESPACE, PAGE, PAGE_SHIFT};

/// What a request needs: the controller, namespace 1, the DMA handle
/// client frames are mapped through, and the slot they arrive in.
pub struct Server<'a> {
    /// The controller, its I/O queue pair created.
    pub controller: &'a mut Controller,
    /// Namespace 1's geometry.
    pub namespace: &'a Namespace,
    /// The DMA handle on the controller's group.
    pub handle: Cap<Endpoint>,
    /// The empty slot a client's frame arrives in (emptied after each request).
    pub lent: u32,
}

/// Serves `requests` forever.
pub fn serve(server: &mut Server<'_>, requests: Cap<Endpoint>, buffer: &mut Buffer) -> u64 {
    let geometry = Geometry {
        blocks: server.namespace.blocks,
        block_bytes: server.namespace.block_bytes() as u32,
        max_blocks: (DATA_BYTES >> server.namespace.block_shift) as u32,
    };
    defmt::info!("nvme: serving {=u64} blocks of {=u32} bytes", geometry.blocks, geometry.block_bytes);
    buffer.set_window(server.lent, 1);
    let mut next = requests.receive(buffer, 0, 0);
    loop {
        let message = match next {
            Ok(message) => message,
            Err(code) => {
                defmt::warn!("nvme: receive failed: {}", code);
                buffer.set_window(server.lent, 1);
                next = requests.receive(buffer, 0, 0);
                continue;
            }
        };
        let reply = match buffer.decode::<Request>(message.len) {
            Ok(request) if badge::allows(message.badge, request.operation() as u8) => {
                handle(server, &geometry, buffer, request)
            }
            Ok(request) => refused(ErrorCode::PermissionDenied, format_args!("{:?} not granted", request.operation())),
            Err(code) => refused(code, format_args!("not a block request")),
        };
        // The frame stays its client's: the driver keeps no capability to it.
        let _ = Cap::<Frame>::at(server.lent).delete();
        let len = buffer.encode(&reply).unwrap_or(0);
        buffer.set_send_caps(&[]);
        buffer.set_window(server.lent, 1);
        next = own::REPLY.reply_receive(buffer, len, requests, 0, 0);
    }
}

fn handle(server: &mut Server<'_>, geometry: &Geometry, buffer: &mut Buffer, request: Request) -> Reply {
    match request {
        Request::Geometry => Reply::Geometry(*geometry),
        Request::Read { block, count } => transfer(server, geometry, buffer, Direction::Read, block, count),
        Request::Write { block, count } => transfer(server, geometry, buffer, Direction::Write, block, count),
        Request::Flush => match server.controller.flush(NAMESPACE) {
            Ok(()) => Reply::Done,
            Err(error) => refused(ErrorCode::Busy, format_args!("the flush failed: {error:?}")),
        },
    }
}

/// Moves `count` blocks from `block` between the namespace and the frame
/// that came with the request.
fn transfer(
    server: &mut Server<'_>,
    geometry: &Geometry,
    buffer: &mut Buffer,
    direction: Direction,
    block: u64,
    count: u32,
) -> Reply {
    if !buffer.received_caps().contains(&server.lent) {
        return Reply::Invalid(Invalid::NoFrame);
    }
    let frame = Cap::<Frame>::at(server.lent);
    let frame_pages = match frame.info() {
        Ok(info) if info.kind == Some(capabilities::abi::ObjectKind::Frame) => info.extent,
        _ => return refused(ErrorCode::WrongKind, format_args!("send a frame with a read or write")),
    };
    let checked = match block_api::check(geometry, block, count, frame_pages) {
        Ok(checked) => checked,
        Err(invalid) => return Reply::Invalid(invalid),
    };
    // The device writes the frame on a read and only reads it on a write.
    let map = Dma::DmaMap { writable: direction == Direction::Read, mask_bits: DMA_MASK_BITS };
    let iova = match iommu_api::client::request(server.handle, buffer, &map, &[frame.slot()]) {
        Ok(iommu_api::Reply::Mapped { iova }) => iova,
        Ok(_) => return refused(ErrorCode::Malformed, format_args!("DmaMap answered with no IOVA")),
        Err(refusal) => return forward(refusal),
    };
    let pages = [iova, iova + PAGE];
    let moved = nvme::prp::build(&pages[..checked.pages as usize], 0, checked.bytes, PAGE_SHIFT)
        .and_then(|prp| server.controller.transfer_at(direction, NAMESPACE, block, count, prp));
    let unmapped = iommu_api::client::request(server.handle, buffer, &Dma::DmaUnmap { iova }, &[]);
    match (moved, unmapped) {
        (Ok(()), Ok(_)) => Reply::Done,
        (Err(error), _) => refused(ErrorCode::Busy, format_args!("the device failed the transfer: {error:?}")),
        (Ok(()), Err(refusal)) => forward(refusal),
    }
}

/// A refusal from the IOMMU server, passed on.
fn forward(refusal: Refused) -> Reply {
    refused(refusal.code, format_args!("{}", refusal.reason.as_str()))
}

fn refused(code: ErrorCode, reason: core::fmt::Arguments<'_>) -> Reply {
    let mut text = String::<REASON_MAX>::new();
    // A reason longer than the reply holds is cut short.
    let _ = core::fmt::write(&mut text, reason);
    Reply::Refused { code, reason: text }
}
