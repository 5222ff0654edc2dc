//! Capability operations: installing, copying, minting, moving, splitting,
//! deleting and revoking, with the object bookkeeping each implies.

use capabilities::ErrorCode;
use capabilities::abi::{PAGE_SIZE, rights};
use capabilities::range::{PortRange, RegisterRange};

use super::{Kernel, Machine};
use crate::cspace::{Capability, Object, SlotId};
use crate::objects::Waiting;
use crate::paging;
use crate::task::{TaskId, TaskState};

/// Why a capability goes away: decides what its reply capability's caller
/// is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Removal {
    /// Deleted, revoked or replaced.
    Deleted,
    /// Its holder died.
    HolderDied,
}

impl Kernel {
    /// Puts `cap` into the empty `slot` (child of `parent`), counting the
    /// reference to its object.
    #[unsafe(link_section = ".text.hot.ipc")]
    pub(super) fn install(&mut self, slot: SlotId, cap: Capability, parent: Option<SlotId>) -> Result<(), ErrorCode> {
        self.caps.insert(slot, cap, parent)?;
        match cap.object {
            Object::Endpoint(handle) => {
                if let Some(endpoint) = self.endpoints.get_mut(handle) {
                    endpoint.refs += 1;
                    if cap.has(rights::RECEIVE) {
                        endpoint.receivers += 1;
                    }
                }
            }
            Object::Notification(handle) => {
                if let Some(notification) = self.notifications.get_mut(handle) {
                    notification.refs += 1;
                }
            }
            Object::Frame(handle) => {
                if let Some(frame) = self.frame_objects.get_mut(handle) {
                    frame.refs += 1;
                }
            }
            Object::Interrupt(handle) => {
                if let Some(interrupt) = self.interrupts.get_mut(handle) {
                    interrupt.refs += 1;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Empties `slot` and releases what its capability held: its mapping,
    /// its reference to the object, and for a reply capability the caller
    /// still waiting on it.
    #[unsafe(link_section = ".text.hot.ipc")]
    pub(super) fn delete_slot(&mut self, m: &mut impl Machine, slot: SlotId, why: Removal) {
        let Some((cap, mapping)) = self.caps.remove(slot) else { return };
        if let Some(pin) = slot.pin_index() {
            // Only a revocation reaches a pin's node (a release removes it
            // itself): the pin is revoked, and its frame stays for now.
            self.pin_revoked(pin);
            return;
        }
        if let Some(mapping) = mapping {
            self.unmap_pages(m, mapping.space, mapping.virt, mapping.pages);
        }
        match cap.object {
            Object::Endpoint(handle) => {
                self.cancel_made_with(slot);
                self.release_endpoint(handle, cap.has(rights::RECEIVE));
            }
            Object::Notification(handle) => {
                self.cancel_made_with(slot);
                self.release_notification(handle);
            }
            Object::Frame(handle) => self.release_frame(handle),
            Object::Interrupt(handle) => {
                self.cancel_made_with(slot);
                self.release_interrupt(m, handle);
            }
            Object::Reply { caller, call } => {
                if matches!(self.task(caller).state, TaskState::AwaitingReply { call: waited, .. } if waited == call) {
                    let error = match why {
                        Removal::Deleted => ErrorCode::NoReply,
                        Removal::HolderDied => ErrorCode::PeerDied,
                    };
                    self.wake(caller, Err(error));
                }
            }
            Object::Task(_)
            | Object::AddressSpace(_)
            | Object::DeviceMemory { .. }
            | Object::IoPorts { .. }
            | Object::Control => {}
        }
    }

    /// Ends what was made with the capability that was in `slot`, as seL4
    /// cancels the sends made with a badge it revokes: a send, receive or
    /// wait of its task blocked on it ends with `InvalidCapability` (a
    /// queued message is withdrawn), a notification bound with it is
    /// unbound, and an interrupt routed with it (its notification or its
    /// interrupt capability), a death watch or a pin watch made through it
    /// signals nothing more.
    /// Only the slot's own task can have blocked or bound with it; the
    /// interrupt table is a fixed size.
    fn cancel_made_with(&mut self, slot: SlotId) {
        let holder = slot.task();
        if holder.index() >= self.tasks.len() {
            return;
        }
        let blocked_on_it = match self.task(holder).state {
            TaskState::Sending { cap, .. } | TaskState::Receiving { cap, .. } | TaskState::Waiting { cap, .. } => {
                cap == slot
            }
            _ => false,
        };
        if blocked_on_it {
            self.unqueue(holder);
            self.wake(holder, Err(ErrorCode::InvalidCapability));
        }
        if let Some((handle, cap)) = self.task(holder).bound
            && cap == slot
        {
            self.task_mut(holder).bound = None;
            if let Some(notification) = self.notifications.get_mut(handle) {
                notification.bound = None;
            }
        }
        for (_, interrupt) in self.interrupts.iter_mut() {
            if interrupt.target.is_some_and(|route| route.made_with(slot)) {
                interrupt.target = None;
            }
        }
        self.watches.retain(|watch| watch.cap != slot);
        if self.task(holder).pin_watch.is_some_and(|watch| watch.cap == slot) {
            self.task_mut(holder).pin_watch = None;
        }
    }

    /// After a capability moved from `from` to `to`: what was made with it
    /// (a binding, an interrupt route, a death watch) follows it. Its task runs, so no
    /// operation of its is blocked on it.
    fn follow_move(&mut self, from: SlotId, to: SlotId) {
        let holder = self.task_mut(from.task());
        if let Some((handle, cap)) = holder.bound
            && cap == from
        {
            holder.bound = Some((handle, to));
        }
        for (_, interrupt) in self.interrupts.iter_mut() {
            if let Some(route) = interrupt.target.as_mut() {
                if route.notification_cap == from {
                    route.notification_cap = to;
                }
                if route.interrupt_cap == from {
                    route.interrupt_cap = to;
                }
            }
        }
        for watch in self.watches.iter_mut().filter(|watch| watch.cap == from) {
            watch.cap = to;
        }
        if let Some(watch) = self.task_mut(from.task()).pin_watch.as_mut()
            && watch.cap == from
        {
            watch.cap = to;
        }
    }

    fn release_endpoint(&mut self, handle: crate::objects::Handle, receiver: bool) {
        let Some(endpoint) = self.endpoints.get_mut(handle) else { return };
        endpoint.refs = endpoint.refs.saturating_sub(1);
        if receiver {
            endpoint.receivers = endpoint.receivers.saturating_sub(1);
        }
        // Senders wait for a receiver; when none can ever come, tell them.
        let stranded = endpoint.receivers == 0 && endpoint.waiting == Waiting::Senders;
        let gone = endpoint.refs == 0;
        if stranded || gone {
            let error = if gone { ErrorCode::ObjectDeleted } else { ErrorCode::PeerDied };
            while let Some(task) = self.endpoints.get_mut(handle).and_then(|e| e.queue.pop_front()) {
                self.wake(task, Err(error));
            }
            if let Some(endpoint) = self.endpoints.get_mut(handle) {
                endpoint.waiting = Waiting::Nobody;
            }
        }
        if gone && let Some(endpoint) = self.endpoints.remove(handle) {
            self.release_object_quota(endpoint.creator);
        }
    }

    fn release_notification(&mut self, handle: crate::objects::Handle) {
        let Some(notification) = self.notifications.get_mut(handle) else { return };
        notification.refs = notification.refs.saturating_sub(1);
        if notification.refs > 0 {
            return;
        }
        let Some(mut notification) = self.notifications.remove(handle) else { return };
        while let Some(task) = notification.waiters.pop_front() {
            self.wake(task, Err(ErrorCode::ObjectDeleted));
        }
        if let Some(bound) = notification.bound {
            self.task_mut(bound).bound = None;
        }
        // Watches that would signal it go too: a handle must not outlive
        // its object inside the kernel.
        self.watches.retain(|watch| watch.notification != handle);
        for (_, interrupt) in self.interrupts.iter_mut() {
            if interrupt.target.is_some_and(|route| route.notification == handle) {
                interrupt.target = None;
            }
        }
        self.release_object_quota(notification.creator);
    }

    pub(super) fn release_object_quota(&mut self, creator: Option<TaskId>) {
        if let Some(creator) = creator {
            self.task_mut(creator).objects.release(1);
        }
    }

    /// Charges one kernel object to `id`'s object quota.
    pub(super) fn charge_object(&mut self, id: TaskId) -> Result<(), ErrorCode> {
        if self.task_mut(id).objects.charge(1) { Ok(()) } else { Err(ErrorCode::QuotaExceeded) }
    }

    /// `CapCopy`: a child of `source` in `dest` with rights `source & mask`.
    pub(super) fn cap_copy(&mut self, id: TaskId, source: u64, dest: u64, mask: u64) -> Result<[u64; 3], ErrorCode> {
        let (from, cap) = self.caps.lookup(id, source)?;
        let to = self.caps.empty_slot(id, dest)?;
        if matches!(cap.object, Object::Reply { .. }) {
            return Err(ErrorCode::WrongKind);
        }
        let copy = Capability { rights: cap.rights & mask as u32, ..cap };
        self.install(to, copy, Some(from))?;
        Ok([0; 3])
    }

    /// `CapMint`: like a copy, with a badge. Only a capability with the
    /// MINT right can be minted, and a badged one keeps its badge.
    pub(super) fn cap_mint(&mut self, id: TaskId, args: [u64; 6]) -> Result<[u64; 3], ErrorCode> {
        let [source, dest, mask, badge, ..] = args;
        let (from, cap) = self.caps.lookup(id, source)?;
        let to = self.caps.empty_slot(id, dest)?;
        if matches!(cap.object, Object::Reply { .. }) {
            return Err(ErrorCode::WrongKind);
        }
        if !cap.has(rights::MINT) || (cap.badge != 0 && cap.badge != badge) {
            return Err(ErrorCode::PermissionDenied);
        }
        let minted = Capability { rights: cap.rights & mask as u32, badge, ..cap };
        self.install(to, minted, Some(from))?;
        Ok([0; 3])
    }

    /// `CapMove`.
    pub(super) fn cap_move(&mut self, id: TaskId, source: u64, dest: u64) -> Result<[u64; 3], ErrorCode> {
        let (from, _) = self.caps.lookup(id, source)?;
        let to = self.caps.empty_slot(id, dest)?;
        self.caps.move_slot(from, to)?;
        self.follow_move(from, to);
        Ok([0; 3])
    }

    /// `CapDelete`.
    #[unsafe(link_section = ".text.hot.caps")]
    pub(super) fn cap_delete(&mut self, m: &mut impl Machine, id: TaskId, slot: u64) -> Result<[u64; 3], ErrorCode> {
        let (slot, _) = self.caps.lookup(id, slot)?;
        self.delete_slot(m, slot, Removal::Deleted);
        Ok([0; 3])
    }

    /// `CapRevoke`: deletes every capability derived from `slot`.
    pub(super) fn cap_revoke(&mut self, m: &mut impl Machine, id: TaskId, slot: u64) -> Result<[u64; 3], ErrorCode> {
        let (slot, _) = self.caps.lookup(id, slot)?;
        self.revoke(m, slot);
        Ok([0; 3])
    }

    pub(super) fn revoke(&mut self, m: &mut impl Machine, slot: SlotId) {
        while let Some(child) = self.caps.first_child(slot) {
            self.delete_slot(m, child, Removal::Deleted);
        }
    }

    /// `CapInfo`: kind and rights, badge, and the extent of memory and
    /// port capabilities (base, length), a frame's pages, or the index of
    /// the task a task or address-space capability names.
    #[unsafe(link_section = ".text.hot.caps")]
    pub(super) fn cap_info(&self, id: TaskId, slot: u64) -> Result<[u64; 3], ErrorCode> {
        let (_, cap) = self.caps.lookup(id, slot)?;
        let kind_rights = cap.object.kind() as u64 | u64::from(cap.rights) << 8;
        let (second, third) = match cap.object {
            Object::DeviceMemory { base, pages } => (base, u64::from(pages)),
            Object::IoPorts { base, count } => (u64::from(base), u64::from(count)),
            Object::Frame(handle) => (cap.badge, self.frame_objects.get(handle).map_or(0, |f| u64::from(f.pages))),
            // A server checks that a task capability it was shown names
            // the caller (whose index its badge carries).
            Object::Task(task) | Object::AddressSpace(task) => (cap.badge, task.index() as u64),
            _ => (cap.badge, 0),
        };
        Ok([kind_rights, second, third])
    }

    /// `CapSplit`: a child covering part of a device-memory range (in
    /// pages) or an I/O-port range (in ports).
    pub(super) fn cap_split(&mut self, id: TaskId, args: [u64; 6]) -> Result<[u64; 3], ErrorCode> {
        let [source, dest, offset, length, ..] = args;
        let (from, cap) = self.caps.lookup(id, source)?;
        let to = self.caps.empty_slot(id, dest)?;
        let object = match cap.object {
            Object::DeviceMemory { base, pages } => RegisterRange { base, pages }
                .slice(offset, length)
                .map(|part| Object::DeviceMemory { base: part.base, pages: part.pages }),
            Object::IoPorts { base, count } => PortRange { base, count }
                .slice(offset, length)
                .map(|part| Object::IoPorts { base: part.base, count: part.count }),
            _ => return Err(ErrorCode::WrongKind),
        };
        let object = object.ok_or(ErrorCode::InvalidArgument)?;
        self.install(to, Capability { object, ..cap }, Some(from))?;
        Ok([0; 3])
    }

    /// Removes `pages` pages at `virt` from `space`'s tables (nothing once
    /// the space has been freed: its root may belong to someone else).
    pub(super) fn unmap_pages(&mut self, m: &mut impl Machine, space: TaskId, virt: u64, pages: u32) {
        if matches!(self.task(space).state, TaskState::Dead { reaped: true, .. }) {
            return;
        }
        let root = self.task(space).root;
        for page in 0..u64::from(pages) {
            let _ = paging::unmap(m, root, virt + page * PAGE_SIZE);
        }
        m.flush_tlb(root, virt, u64::from(pages));
    }
}
