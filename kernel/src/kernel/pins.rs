//! DMA pins: frames held in place for devices, and taken back by revocation.
//!
//! A pin (`DmaPin`) is derived from the frame capability it is made with,
//! as a copy is: a node of the derivation tree ([`SlotId::pin`]) below
//! that capability, so deleting the capability hands the pin to its
//! parent and revoking the capability, or any it came from, revokes the
//! pin. The IOMMU server deletes the frame capability a map request
//! brought once it has pinned it, and the pin stays within reach of every
//! capability the frame came through: a lender that revokes what it lent
//! takes back the device access made with it too.
//!
//! A revoked pin leaves the tree, and its pinner is signalled (`DmaWatch`)
//! and learns which pin it was (`DmaRevoked`); the frame's memory stays
//! allocated, never reused, until the pinner has removed the frame from
//! every device and releases the pin (`DmaUnpin`).
//!
//! # Invariants
//!
//! * A pin is [`PinState::Live`] exactly while its node (the slot of its
//!   arena index) holds a capability; only its release or a revocation
//!   empties the node.
//! * A frame's `pins` counts its pin records, whatever their state, and
//!   its memory is freed only when that count and its capability count
//!   are both zero.

use capabilities::ErrorCode;
use capabilities::abi::rights;

use super::Kernel;
use crate::cspace::{Capability, Object, SlotId};
use crate::objects::{Handle, Pin, PinState, PinWatch};
use crate::task::TaskId;

impl Kernel {
    /// `DmaPin`: keeps frame `frame_slot`'s memory allocated for device
    /// access and reveals where it is: (pin handle, physical, pages). A
    /// device may do to the frame only what its capability allows: reading
    /// needs READ, and `access` WRITE (the device writes it) needs WRITE.
    /// The pin is a child of that capability in the derivation tree.
    #[unsafe(link_section = ".text.hot.dma")]
    pub(super) fn dma_pin(
        &mut self,
        id: TaskId,
        control: u64,
        frame_slot: u64,
        access: u64,
    ) -> Result<[u64; 3], ErrorCode> {
        self.require_control(id, control, rights::DMA)?;
        if access & !u64::from(rights::WRITE) != 0 {
            return Err(ErrorCode::InvalidArgument);
        }
        let (slot, cap) = self.caps.lookup(id, frame_slot)?;
        let Object::Frame(handle) = cap.object else { return Err(ErrorCode::WrongKind) };
        let allowed = rights::READ | access as u32;
        if !cap.has(allowed) {
            return Err(ErrorCode::PermissionDenied);
        }
        let frame = self.frame_objects.get(handle).ok_or(ErrorCode::ObjectDeleted)?;
        if frame.pinner.is_some_and(|pinner| pinner != id) {
            return Err(ErrorCode::Busy);
        }
        let (base, pages) = (frame.base.address(), u64::from(frame.pages));
        let pin = self
            .pins
            .insert(Pin { frame: handle, pinner: id, state: PinState::Live })
            .map_err(|_| ErrorCode::OutOfMemory)?;
        // The node is empty (see the invariants); it names the frame with
        // the rights the device was given, and counts in no reference:
        // the pin record holds the frame.
        let node = SlotId::pin(pin.index()).ok_or(ErrorCode::OutOfMemory)?;
        let node_cap = Capability { object: Object::Frame(handle), rights: allowed, badge: 0 };
        if let Err(error) = self.caps.insert(node, node_cap, Some(slot)) {
            self.pins.remove(pin);
            return Err(error);
        }
        if let Some(frame) = self.frame_objects.get_mut(handle) {
            // At most one per pin record: no overflow.
            frame.pins += 1;
            frame.pinner = Some(id);
        }
        Ok([pin.to_word(), base, pages])
    }

    /// `DmaUnpin`: releases one of the caller's pins, live or revoked; the
    /// memory is freed if nothing else holds it. Another task's pin is
    /// not the caller's to release: a device may still be using the frame.
    #[unsafe(link_section = ".text.hot.dma")]
    pub(super) fn dma_unpin(&mut self, id: TaskId, control: u64, pin: u64) -> Result<[u64; 3], ErrorCode> {
        self.require_control(id, control, rights::DMA)?;
        let handle = Handle::from_word(pin).ok_or(ErrorCode::InvalidArgument)?;
        let record = *self.pins.get(handle).ok_or(ErrorCode::InvalidArgument)?;
        if record.pinner != id {
            return Err(ErrorCode::InvalidArgument);
        }
        if record.state == PinState::Live
            && let Some(node) = SlotId::pin(handle.index())
        {
            // A leaf: no capability is derived from a pin.
            self.caps.remove(node);
        }
        self.pins.remove(handle);
        if let Some(frame) = self.frame_objects.get_mut(record.frame) {
            frame.pins = frame.pins.saturating_sub(1);
            if frame.pins == 0 {
                frame.pinner = None;
            }
        }
        self.free_frame_if_unused(record.frame);
        Ok([0; 3])
    }

    /// A revocation removed pin `index`'s node: the pin is revoked, its
    /// frame stays allocated, and its pinner is told.
    pub(super) fn pin_revoked(&mut self, index: usize) {
        let Some(handle) = self.pins.handle_at(index) else { return };
        let Some(pin) = self.pins.get_mut(handle) else { return };
        if pin.state != PinState::Live {
            return;
        }
        pin.state = PinState::Revoked;
        let pinner = pin.pinner;
        if let Some(watch) = self.task(pinner).pin_watch {
            self.signal_object(watch.notification, watch.bits);
        }
    }

    /// `DmaWatch`: sets `bits` in notification `target` (SEND right)
    /// whenever one of the caller's pins is revoked, and at once if one
    /// was revoked and is not yet reported. One watch per task: a new one
    /// replaces the last.
    pub(super) fn dma_watch(
        &mut self,
        id: TaskId,
        control: u64,
        target: u64,
        bits: u64,
    ) -> Result<[u64; 3], ErrorCode> {
        self.require_control(id, control, rights::DMA)?;
        let (notification, slot) = self.signal_target(id, target, bits)?;
        self.task_mut(id).pin_watch = Some(PinWatch { notification, bits, cap: slot });
        if self.pins.iter().any(|(_, pin)| pin.pinner == id && pin.state == PinState::Revoked) {
            self.signal_object(notification, bits);
        }
        Ok([0; 3])
    }

    /// `DmaRevoked`: one of the caller's revoked pins it has not been told
    /// of (handle, physical, pages), now told; `WouldBlock` if none. One
    /// pass over the pin table, which its fixed size bounds.
    pub(super) fn dma_revoked(&mut self, id: TaskId, control: u64) -> Result<[u64; 3], ErrorCode> {
        self.require_control(id, control, rights::DMA)?;
        let found = self.pins.iter_mut().find(|(_, pin)| pin.pinner == id && pin.state == PinState::Revoked);
        let Some((handle, pin)) = found else { return Err(ErrorCode::WouldBlock) };
        pin.state = PinState::Reported;
        let frame = pin.frame;
        let (base, pages) = self.frame_objects.get(frame).map_or((0, 0), |f| (f.base.address(), u64::from(f.pages)));
        Ok([handle.to_word(), base, pages])
    }
}
