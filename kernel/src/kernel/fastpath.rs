//! The IPC fast path: a `Call` that finds its server waiting, and a
//! `ReplyRecv` whose caller is the next task to run.
//!
//! Each either finishes the system call exactly as the general path
//! (`send`, `reply`, `receive`, then [`Kernel::schedule`]) would, and
//! returns the partner it made current, or changes nothing and returns
//! `None` so that the general path runs. It applies only where the general
//! path's outcome is a direct switch to the partner:
//!
//! * the partner is blocked where the operation expects it: a receiver
//!   queued on the endpoint (whose reply slot is empty), or a caller
//!   awaiting this very reply;
//! * after the switch no runnable task has the partner's priority or a
//!   higher one, so the scheduler would pick the partner too;
//! * for `ReplyRecv`: no timeout, no flags, no pending notification bits
//!   and no sender queued on the endpoint (the server blocks).
//!
//! # Invariants
//!
//! * On `Some(next)`: the kernel state equals the general path's after
//!   its `schedule(now)`, except that other tasks' expired timeouts are
//!   not processed here. They stay queued until the next general entry;
//!   the fast path never makes a deadline earlier, so the timer the
//!   machine armed for the earliest one still fires in time.
//! * On `None`: nothing was changed.

use capabilities::abi::ipc::MSG_MAX;
use capabilities::abi::{Syscall, rights, slots};

use super::ipc::Message;
use super::{Kernel, Machine, QUANTUM_US};
use crate::cspace::{Object, SlotId};
use crate::objects::Waiting;
use crate::task::{TaskId, TaskState};

impl Kernel {
    /// Tries the running task's system call (in its saved registers) on
    /// the fast path; the task to resume if it was done there.
    #[inline]
    pub fn fastpath(&mut self, m: &mut impl Machine) -> Option<TaskId> {
        let id = self.current?;
        if self.reap_pending {
            return None;
        }
        let (number, args) = self.task(id).frame.syscall_args();
        if number == Syscall::Call as u64 {
            self.fast_call(m, id, args[0], args[1])
        } else if number == Syscall::ReplyRecv as u64 {
            self.fast_reply_recv(m, id, args)
        } else {
            None
        }
    }

    /// Whether the scheduler, with `current` cleared, would pick a task of
    /// `priority` made runnable at the back of its queue.
    fn next_to_run(&self, priority: u8) -> bool {
        self.sched.highest_priority().is_none_or(|highest| highest < priority)
    }

    /// Makes the blocked `id` the running task with `result`, as
    /// [`Kernel::wake`] followed by [`Kernel::schedule`] would.
    #[unsafe(link_section = ".text.hot.ipc")]
    fn switch_to_woken(&mut self, m: &impl Machine, id: TaskId, result: [u64; 3]) -> Option<TaskId> {
        self.set_result(id, Ok(result));
        let task = self.task_mut(id);
        task.state = TaskState::Runnable;
        task.deadline = None;
        self.current = Some(id);
        self.quantum_end = m.now().saturating_add(QUANTUM_US);
        Some(id)
    }

    /// `Call` on `slot` with a `len`-byte message, to a queued receiver.
    #[unsafe(link_section = ".text.hot.ipc")]
    fn fast_call(&mut self, m: &mut impl Machine, id: TaskId, slot: u64, len: u64) -> Option<TaskId> {
        let (_, cap) = self.caps.lookup(id, slot).ok()?;
        let Object::Endpoint(handle) = cap.object else { return None };
        if !cap.has(rights::SEND) || len > MSG_MAX as u64 {
            return None;
        }
        let endpoint = self.endpoints.get(handle)?;
        if endpoint.receivers == 0 || endpoint.waiting != Waiting::Receivers {
            return None;
        }
        let receiver = *endpoint.queue.front()?;
        let reply_slot = SlotId::new(receiver, u64::from(slots::REPLY)).ok()?;
        if self.caps.get(reply_slot).is_some() || !self.next_to_run(self.task(receiver).priority) {
            return None;
        }
        // Committed: the first change is the one that could still fail.
        let endpoint = self.endpoints.get_mut(handle)?;
        endpoint.queue.pop_front();
        if endpoint.queue.is_empty() {
            endpoint.waiting = Waiting::Nobody;
        }
        let message = Message { badge: cap.badge, len: len as u32, grant: cap.has(rights::GRANT) };
        let info = self.transfer(m, id, receiver, message);
        self.start_reply(m, id, receiver, message.grant);
        self.switch_to_woken(m, receiver, [cap.badge, len, info])
    }

    /// `ReplyRecv`: `[reply slot, length, endpoint slot, flags, timeout]`,
    /// replying to a caller that runs next while the server blocks.
    #[unsafe(link_section = ".text.hot.ipc")]
    fn fast_reply_recv(&mut self, m: &mut impl Machine, id: TaskId, args: [u64; 6]) -> Option<TaskId> {
        let [reply_slot, len, endpoint_slot, flags, timeout, _] = args;
        if flags != 0 || timeout != 0 || len > MSG_MAX as u64 {
            return None;
        }
        // The receive must block; checked before the reply changes anything.
        let (endpoint_slot, endpoint_cap) = self.caps.lookup(id, endpoint_slot).ok()?;
        let Object::Endpoint(handle) = endpoint_cap.object else { return None };
        if !endpoint_cap.has(rights::RECEIVE) {
            return None;
        }
        if let Some((bound, _)) = self.task(id).bound
            && self.notifications.get(bound).is_some_and(|notification| notification.word != 0)
        {
            return None;
        }
        let endpoint = self.endpoints.get(handle)?;
        if endpoint.waiting == Waiting::Senders || endpoint.queue.is_full() {
            return None;
        }
        let (reply, reply_cap) = self.caps.lookup(id, reply_slot).ok()?;
        let Object::Reply { caller, call } = reply_cap.object else { return None };
        let TaskState::AwaitingReply { call: waited, grant } = self.task(caller).state else { return None };
        if waited != call || !self.next_to_run(self.task(caller).priority) {
            return None;
        }
        // Committed: the first change is the one that could still fail.
        let endpoint = self.endpoints.get_mut(handle)?;
        endpoint.queue.push_back(id).ok()?;
        endpoint.waiting = Waiting::Receivers;
        self.caps.remove(reply);
        let info = self.transfer(m, id, caller, Message { badge: 0, len: len as u32, grant });
        let server = self.task_mut(id);
        server.state = TaskState::Receiving { endpoint: handle, cap: endpoint_slot };
        server.deadline = None;
        self.switch_to_woken(m, caller, [0, len, info])
    }
}
