//! Synchronous IPC: send, receive, call and reply through endpoints, with
//! message copies between IPC buffers and capability transfer.
//!
//! An endpoint queues either blocked senders or blocked receivers, never
//! both. A message waits in its sender's IPC buffer until a receiver takes
//! it, so nothing is buffered in the kernel. A call leaves the caller
//! waiting for a reply and gives the receiver a one-shot reply capability.

use capabilities::ErrorCode;
use capabilities::abi::ipc::{self, DATA_OFFSET, Info, MAX_CAPS, MSG_MAX, header};
use capabilities::abi::{rights, slots};

use super::caps::Removal;
use super::{Kernel, Machine};
use crate::cspace::{Capability, Object, SlotId};
use crate::objects::{Handle, Waiting};
use crate::task::{TaskId, TaskState};

/// A message about to be delivered.
#[derive(Clone, Copy)]
pub(super) struct Message {
    /// The sending capability's badge (0 for a reply).
    pub(super) badge: u64,
    /// Bytes of message.
    pub(super) len: u32,
    /// Whether capabilities may travel with it.
    pub(super) grant: bool,
}

impl Kernel {
    fn endpoint_cap(&self, id: TaskId, slot: u64, needed: u32) -> Result<(Handle, SlotId, Capability), ErrorCode> {
        let (slot, cap) = self.caps.lookup(id, slot)?;
        let Object::Endpoint(handle) = cap.object else { return Err(ErrorCode::WrongKind) };
        if !cap.has(needed) {
            return Err(ErrorCode::PermissionDenied);
        }
        Ok((handle, slot, cap))
    }

    fn deadline(m: &impl Machine, timeout_us: u64) -> Option<u64> {
        (timeout_us != 0).then(|| m.now().saturating_add(timeout_us))
    }

    /// `Send` (`call` false) and `Call` (`call` true) by the running task:
    /// `[endpoint slot, length, flags, timeout]`. `None` when it blocked.
    pub(super) fn send(
        &mut self,
        m: &mut impl Machine,
        id: TaskId,
        [slot, len, flags, timeout]: [u64; 4],
        call: bool,
    ) -> Option<Result<[u64; 3], ErrorCode>> {
        let (handle, used, cap) = match self.endpoint_cap(id, slot, rights::SEND) {
            Ok(found) => found,
            Err(error) => return Some(Err(error)),
        };
        if len > MSG_MAX as u64 {
            return Some(Err(ErrorCode::TooLarge));
        }
        let message = Message { badge: cap.badge, len: len as u32, grant: cap.has(rights::GRANT) };
        let Some(endpoint) = self.endpoints.get_mut(handle) else { return Some(Err(ErrorCode::ObjectDeleted)) };
        if endpoint.receivers == 0 {
            return Some(Err(ErrorCode::PeerDied));
        }
        if endpoint.waiting == Waiting::Receivers
            && let Some(receiver) = endpoint.queue.pop_front()
        {
            if endpoint.queue.is_empty() {
                endpoint.waiting = Waiting::Nobody;
            }
            let info = self.transfer(m, id, receiver, message);
            // Woken first: the receive is over, so emptying the reply slot
            // for the reply capability (which ends what was made with the
            // capability there) cannot end it a second time.
            self.wake(receiver, Ok([message.badge, u64::from(message.len), info]));
            if call {
                self.start_reply(m, id, receiver, message.grant);
            }
            return if call { None } else { Some(Ok([0; 3])) };
        }
        if flags & ipc::NONBLOCK != 0 {
            return Some(Err(ErrorCode::WouldBlock));
        }
        if endpoint.queue.push_back(id).is_err() {
            return Some(Err(ErrorCode::OutOfMemory));
        }
        endpoint.waiting = Waiting::Senders;
        let deadline = if call { None } else { Self::deadline(m, timeout) };
        let state = TaskState::Sending {
            endpoint: handle,
            cap: used,
            badge: message.badge,
            len: message.len,
            grant: message.grant,
            call,
        };
        self.block(id, state, deadline);
        None
    }

    /// `Recv` by the running task. `None` when it blocked.
    pub(super) fn receive(
        &mut self,
        m: &mut impl Machine,
        id: TaskId,
        slot: u64,
        flags: u64,
        timeout: u64,
    ) -> Option<Result<[u64; 3], ErrorCode>> {
        let (handle, used) = match self.endpoint_cap(id, slot, rights::RECEIVE) {
            Ok((handle, used, _)) => (handle, used),
            Err(error) => return Some(Err(error)),
        };
        if let Some(bits) = self.take_bound_bits(id) {
            return Some(Ok([bits, 0, Info::NOTIFICATION]));
        }
        let Some(endpoint) = self.endpoints.get_mut(handle) else { return Some(Err(ErrorCode::ObjectDeleted)) };
        if endpoint.waiting == Waiting::Senders
            && let Some(sender) = endpoint.queue.pop_front()
        {
            if endpoint.queue.is_empty() {
                endpoint.waiting = Waiting::Nobody;
            }
            let TaskState::Sending { badge, len, grant, call, .. } = self.task(sender).state else {
                return Some(Err(ErrorCode::InvalidArgument));
            };
            let message = Message { badge, len, grant };
            let info = self.transfer(m, sender, id, message);
            if call {
                self.start_reply(m, sender, id, grant);
            } else {
                self.wake(sender, Ok([0; 3]));
            }
            return Some(Ok([badge, u64::from(len), info]));
        }
        if flags & ipc::NONBLOCK != 0 {
            return Some(Err(ErrorCode::WouldBlock));
        }
        if endpoint.queue.push_back(id).is_err() {
            return Some(Err(ErrorCode::OutOfMemory));
        }
        endpoint.waiting = Waiting::Receivers;
        self.block(id, TaskState::Receiving { endpoint: handle, cap: used }, Self::deadline(m, timeout));
        None
    }

    /// The caller now waits for a reply; the receiver gets the capability
    /// to give it, replacing (and so abandoning) any reply it left there.
    /// `grant`: the call's capability had GRANT, so the reply may carry
    /// capabilities.
    #[unsafe(link_section = ".text.hot.ipc")]
    pub(super) fn start_reply(&mut self, m: &mut impl Machine, caller: TaskId, receiver: TaskId, grant: bool) {
        let task = self.task_mut(caller);
        task.calls = task.calls.wrapping_add(1);
        let call = task.calls;
        task.state = TaskState::AwaitingReply { call, grant };
        task.deadline = None;
        if self.current == Some(caller) {
            self.current = None;
        }
        let Ok(slot) = SlotId::new(receiver, u64::from(slots::REPLY)) else { return };
        self.delete_slot(m, slot, Removal::Deleted);
        let reply = Capability { object: Object::Reply { caller, call }, rights: 0, badge: 0 };
        let _ = self.install(slot, reply, None);
    }

    /// `Reply` by the running task with the reply capability in `slot`.
    pub(super) fn reply(
        &mut self,
        m: &mut impl Machine,
        id: TaskId,
        slot: u64,
        len: u64,
    ) -> Result<[u64; 3], ErrorCode> {
        let (slot, cap) = self.caps.lookup(id, slot)?;
        let Object::Reply { caller, call } = cap.object else { return Err(ErrorCode::WrongKind) };
        if len > MSG_MAX as u64 {
            return Err(ErrorCode::TooLarge);
        }
        // One-shot: the capability is used up whatever happens next.
        self.caps.remove(slot);
        let TaskState::AwaitingReply { call: waited, grant } = self.task(caller).state else {
            return Err(ErrorCode::PeerDied);
        };
        if waited != call {
            return Err(ErrorCode::PeerDied);
        }
        let info = self.transfer(m, id, caller, Message { badge: 0, len: len as u32, grant });
        self.wake(caller, Ok([0, len, info]));
        Ok([0; 3])
    }

    /// Copies the message from `from`'s IPC buffer to `to`'s and moves the
    /// capabilities `from` listed into `to`'s receive window. Returns the
    /// receive [`Info`] word.
    #[unsafe(link_section = ".text.hot.ipc")]
    pub(super) fn transfer(&mut self, m: &mut impl Machine, from: TaskId, to: TaskId, message: Message) -> u64 {
        let (source, dest) = (self.task(from).ipc_buffer, self.task(to).ipc_buffer);
        m.copy(source, DATA_OFFSET, dest, DATA_OFFSET, message.len as usize);
        let mut received = 0u32;
        if message.grant {
            let count = (m.read_u32(source, header::SEND_COUNT) as usize).min(MAX_CAPS);
            let base = u64::from(m.read_u32(dest, header::WINDOW_BASE));
            let window = u64::from(m.read_u32(dest, header::WINDOW_LEN));
            for index in 0..count {
                let sent = u64::from(m.read_u32(source, header::SEND_SLOTS + 4 * index));
                let Ok((parent, cap)) = self.caps.lookup(from, sent) else { continue };
                if matches!(cap.object, Object::Reply { .. }) {
                    continue;
                }
                let Some(target) = self.caps.find_empty(to, base, window) else { break };
                if self.install(target, cap, Some(parent)).is_ok() {
                    m.write_u32(dest, header::RECEIVED_SLOTS + 4 * received as usize, target.index());
                    received += 1;
                }
            }
        }
        m.write_u32(dest, header::RECEIVED_COUNT, received);
        u64::from(received)
    }
}

impl Kernel {
    /// `EndpointCreate` into empty slot `slot`.
    pub(super) fn create_endpoint(&mut self, id: TaskId, slot: u64) -> Result<[u64; 3], ErrorCode> {
        let slot = self.caps.empty_slot(id, slot)?;
        self.charge_object(id)?;
        let Ok(handle) = self.endpoints.insert(crate::objects::Endpoint::new(Some(id))) else {
            self.task_mut(id).objects.release(1);
            return Err(ErrorCode::OutOfMemory);
        };
        let all = rights::SEND | rights::RECEIVE | rights::GRANT | rights::MINT;
        self.install(slot, Capability { object: Object::Endpoint(handle), rights: all, badge: 0 }, None)?;
        Ok([0; 3])
    }
}
