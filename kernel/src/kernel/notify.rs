//! Notifications: a word of bits tasks signal and wait on, which can also
//! be bound to a task so its receives return when a bit is set.

use capabilities::ErrorCode;
use capabilities::abi::{ipc, ipc::Info, rights};

use super::{Kernel, Machine};
use crate::cspace::{Object, SlotId};
use crate::objects::{Handle, Notification};
use crate::task::{TaskId, TaskState};

impl Kernel {
    fn notification_cap(&self, id: TaskId, slot: u64, needed: u32) -> Result<(Handle, SlotId, u64), ErrorCode> {
        let (slot, cap) = self.caps.lookup(id, slot)?;
        let Object::Notification(handle) = cap.object else { return Err(ErrorCode::WrongKind) };
        if !cap.has(needed) {
            return Err(ErrorCode::PermissionDenied);
        }
        Ok((handle, slot, cap.badge))
    }

    /// The notification in `slot` (SEND right) that a binding is to set
    /// `bits` in later, for an interrupt, a death watch or a pin watch;
    /// `InvalidArgument` for no bits, which would make the binding silent.
    pub(super) fn signal_target(&self, id: TaskId, slot: u64, bits: u64) -> Result<(Handle, SlotId), ErrorCode> {
        let (handle, slot, _) = self.notification_cap(id, slot, rights::SEND)?;
        if bits == 0 {
            return Err(ErrorCode::InvalidArgument);
        }
        Ok((handle, slot))
    }

    /// Sets `bits` in a notification and wakes whoever it should wake.
    pub(super) fn signal_object(&mut self, handle: Handle, bits: u64) {
        let Some(notification) = self.notifications.get_mut(handle) else { return };
        notification.word |= bits;
        if let Some(waiter) = notification.waiters.pop_front() {
            let word = core::mem::take(&mut notification.word);
            self.wake(waiter, Ok([word, 0, 0]));
            return;
        }
        let bound = notification.bound;
        if let Some(bound) = bound
            && matches!(self.task(bound).state, TaskState::Receiving { .. })
        {
            let word = self.notifications.get_mut(handle).map_or(0, |n| core::mem::take(&mut n.word));
            self.unqueue(bound);
            self.wake(bound, Ok([word, 0, Info::NOTIFICATION]));
        }
    }

    /// `Signal`: sets the capability's badge bits (bit 0 if unbadged).
    pub(super) fn signal(&mut self, id: TaskId, slot: u64) -> Result<[u64; 3], ErrorCode> {
        let (handle, _, badge) = self.notification_cap(id, slot, rights::SEND)?;
        self.signal_object(handle, if badge == 0 { 1 } else { badge });
        Ok([0; 3])
    }

    /// `Wait`: returns and clears the bits, blocking until one is set.
    pub(super) fn wait(
        &mut self,
        m: &impl Machine,
        id: TaskId,
        slot: u64,
        flags: u64,
        timeout: u64,
    ) -> Option<Result<[u64; 3], ErrorCode>> {
        let (handle, used) = match self.notification_cap(id, slot, rights::RECEIVE) {
            Ok((handle, used, _)) => (handle, used),
            Err(error) => return Some(Err(error)),
        };
        let Some(notification) = self.notifications.get_mut(handle) else {
            return Some(Err(ErrorCode::ObjectDeleted));
        };
        if notification.word != 0 {
            return Some(Ok([core::mem::take(&mut notification.word), 0, 0]));
        }
        if flags & ipc::NONBLOCK != 0 {
            return Some(Err(ErrorCode::WouldBlock));
        }
        if notification.waiters.push_back(id).is_err() {
            return Some(Err(ErrorCode::OutOfMemory));
        }
        let deadline = (timeout != 0).then(|| m.now().saturating_add(timeout));
        self.block(id, TaskState::Waiting { notification: handle, cap: used }, deadline);
        None
    }

    /// `NotificationBind`: the caller's receives also return its bits.
    pub(super) fn bind_notification(&mut self, id: TaskId, slot: u64) -> Result<[u64; 3], ErrorCode> {
        let (handle, used, _) = self.notification_cap(id, slot, rights::RECEIVE)?;
        let notification = self.notifications.get_mut(handle).ok_or(ErrorCode::ObjectDeleted)?;
        if notification.bound.is_some_and(|bound| bound != id) {
            return Err(ErrorCode::Busy);
        }
        notification.bound = Some(id);
        if let Some((previous, _)) = self.task_mut(id).bound.replace((handle, used))
            && previous != handle
            && let Some(old) = self.notifications.get_mut(previous)
        {
            old.bound = None;
        }
        Ok([0; 3])
    }

    /// Takes the pending bits of the caller's bound notification, if any.
    pub(super) fn take_bound_bits(&mut self, id: TaskId) -> Option<u64> {
        let (handle, _) = self.task(id).bound?;
        let notification = self.notifications.get_mut(handle)?;
        (notification.word != 0).then(|| core::mem::take(&mut notification.word))
    }

    /// `NotificationCreate` into empty slot `slot`.
    pub(super) fn create_notification(&mut self, id: TaskId, slot: u64) -> Result<[u64; 3], ErrorCode> {
        let slot = self.caps.empty_slot(id, slot)?;
        self.charge_object(id)?;
        let Ok(handle) = self.notifications.insert(Notification::new(Some(id))) else {
            self.task_mut(id).objects.release(1);
            return Err(ErrorCode::OutOfMemory);
        };
        let cap = crate::cspace::Capability {
            object: Object::Notification(handle),
            rights: rights::SEND | rights::RECEIVE | rights::MINT,
            badge: 0,
        };
        self.install(slot, cap, None)?;
        Ok([0; 3])
    }
}
