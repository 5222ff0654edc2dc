//! Task death: faults and exits, releasing everything the task held,
//! telling its watchers, and returning its memory.

use capabilities::ErrorCode;
use capabilities::abi::{layout, rights, task_state};
use capabilities::backtrace;
use heapless::Vec;

use super::caps::Removal;
use super::{Kernel, Machine};
use crate::cspace::{Object, SlotId};
use crate::phys::PAGE_SIZE;
use crate::task::{Death, Fault, TaskId, TaskState, WATCHES_PER_TASK, Watch};
use crate::usermem;

impl Kernel {
    /// Kills the running task for a CPU exception it raised.
    pub fn fault(&mut self, m: &mut impl Machine, fault: Fault) {
        if let Some(id) = self.current {
            self.end_task(m, id, Death::Killed(fault));
        }
    }

    /// Ends task `id`: it leaves every queue, every capability it held is
    /// deleted (waking whoever waited on it), its watchers are signalled,
    /// and its memory is returned once its address space is not loaded.
    pub(super) fn end_task(&mut self, m: &mut impl Machine, id: TaskId, death: Death) {
        if self.task(id).is_dead() {
            return;
        }
        let name = self.task(id).name.clone();
        match death {
            Death::Exited(code) => info!("task {=str} exited with code {=u64}", name.as_str(), code),
            Death::Terminated { by } => {
                info!("task {=str} ended by {=str}", name.as_str(), self.task(by).name.as_str())
            }
            Death::Killed(fault) => error!(
                "task {=str} killed: {=str} ({=str}) at address {=u64:#x}, rip {=u64:#x}, error code {=u64:#x}",
                name.as_str(),
                fault.name(),
                fault.access(),
                fault.address,
                fault.rip,
                fault.error_code
            ),
        }
        if let Death::Killed(fault) = death {
            self.log_backtrace(m, id, fault.rip);
        }
        self.unqueue(id);
        let priority = self.task(id).priority;
        self.sched.remove(id, priority);
        if self.current == Some(id) {
            self.current = None;
        }
        {
            let task = self.task_mut(id);
            task.state = TaskState::Dead { death, reaped: false };
            task.deadline = None;
        }
        let held: Vec<SlotId, { crate::cspace::SLOTS }> = self.caps.occupied(id).collect();
        for slot in held {
            self.delete_slot(m, slot, Removal::HolderDied);
        }
        // Mappings other tasks made into this space vanish with it, all of
        // them: a record left behind would name tables `reap` frees.
        self.caps.forget_mappings_into(id);
        if let Some((bound, _)) = self.task_mut(id).bound.take()
            && let Some(notification) = self.notifications.get_mut(bound)
        {
            notification.bound = None;
        }
        self.tell_watchers(id);
        self.reap_pending = true;
    }

    /// Logs where task `id`, killed at `rip`, was: `rip` and the return
    /// addresses of its frame chain, read through its own page tables and
    /// only inside its stack, so a corrupt chain ends the list with a note
    /// (the host turns the addresses into functions and lines).
    fn log_backtrace(&self, m: &impl Machine, id: TaskId, rip: u64) {
        let task = self.task(id);
        let stack = layout::STACK_TOP - u64::from(task.stack_pages) * PAGE_SIZE as u64..layout::STACK_TOP;
        let root = task.root;
        let walked = backtrace::walk(task.frame.rbp, &[stack], |at| {
            let mut word = [0u8; 8];
            usermem::copy_from_user(m, root, at, &mut word).ok().map(|()| u64::from_le_bytes(word))
        });
        let mut addresses = [0u64; backtrace::MAX_FRAMES + 1];
        addresses[0] = rip;
        addresses[1..=walked.returns.len()].copy_from_slice(&walked.returns);
        let addresses = &addresses[..=walked.returns.len()];
        let name = task.name.as_str();
        match walked.end.note() {
            None => info!("task {=str} backtrace: {=[?]:#x}", name, addresses),
            Some(note) => info!(
                "task {=str} backtrace: {=[?]:#x} ({=str} at {=u64:#x})",
                name,
                addresses,
                note,
                walked.end.frame_pointer()
            ),
        }
    }

    /// Whether the machine may resume `id` from its saved frame
    /// ([`crate::context::TrapFrame::resumable`]). No task can make a frame
    /// that cannot be returned to (entry points are checked, the top user
    /// page never maps, the CPU writes the rest), so one that cannot is a
    /// kernel bug: the task ends as a general-protection fault would end
    /// it, and the machine chooses again.
    pub fn check_resumable(&mut self, m: &mut impl Machine, id: TaskId) -> bool {
        let frame = self.task(id).frame;
        if frame.resumable() {
            return true;
        }
        let fault = Fault { vector: 13, error_code: 0, address: 0, rip: frame.rip };
        self.end_task(m, id, Death::Killed(fault));
        false
    }

    /// Signals the watches of `id`, which died, and ends them and the
    /// watches it had made. One pass over the table, which its fixed size
    /// bounds.
    fn tell_watchers(&mut self, id: TaskId) {
        let mut index = 0;
        while let Some(&watch) = self.watches.get(index) {
            if watch.watched == id || watch.watcher == id {
                self.watches.swap_remove(index);
            } else {
                index += 1;
                continue;
            }
            if watch.watched == id {
                self.signal_object(watch.notification, watch.bits);
            }
        }
    }

    /// `Exit` by the running task.
    pub(super) fn exit(&mut self, m: &mut impl Machine, id: TaskId, code: u64) {
        self.end_task(m, id, Death::Exited(code));
    }

    /// `TaskWatch`: signal notification `target` with `bits` when task
    /// capability `task` dies (at once if it already has).
    pub(super) fn task_watch(&mut self, id: TaskId, args: [u64; 6]) -> Result<[u64; 3], ErrorCode> {
        let [task_slot, target_slot, bits, ..] = args;
        let (_, task_cap) = self.caps.lookup(id, task_slot)?;
        let Object::Task(watched) = task_cap.object else { return Err(ErrorCode::WrongKind) };
        if !task_cap.has(rights::WATCH) {
            return Err(ErrorCode::PermissionDenied);
        }
        let (notification, target_slot) = self.signal_target(id, target_slot, bits)?;
        if self.task(watched).is_dead() {
            self.signal_object(notification, bits);
            return Ok([0; 3]);
        }
        let watch = Watch { watcher: id, watched, notification, bits, cap: target_slot };
        let same = |other: &Watch| Watch { cap: target_slot, ..*other } == watch;
        if let Some(existing) = self.watches.iter_mut().find(|other| same(other)) {
            existing.cap = target_slot;
            return Ok([0; 3]);
        }
        if self.watches.iter().filter(|other| other.watcher == id).count() >= WATCHES_PER_TASK {
            return Err(ErrorCode::QuotaExceeded);
        }
        // Every task stays within its allowance, so the table has room.
        self.watches.push(watch).map_err(|_| ErrorCode::QuotaExceeded)?;
        Ok([0; 3])
    }

    /// `TaskKill`: ends the task capability `slot` names (KILL right); a
    /// task ends itself with `Exit`.
    pub(super) fn task_kill(&mut self, m: &mut impl Machine, id: TaskId, slot: u64) -> Result<[u64; 3], ErrorCode> {
        let (_, cap) = self.caps.lookup(id, slot)?;
        let Object::Task(target) = cap.object else { return Err(ErrorCode::WrongKind) };
        if !cap.has(rights::KILL) {
            return Err(ErrorCode::PermissionDenied);
        }
        if target == id {
            return Err(ErrorCode::InvalidArgument);
        }
        if self.task(target).is_dead() {
            return Err(ErrorCode::PeerDied);
        }
        self.end_task(m, target, Death::Terminated { by: id });
        Ok([0; 3])
    }

    /// `TaskInfo`: alive, exited (code), or killed (vector, address).
    pub(super) fn task_info(&self, id: TaskId, slot: u64) -> Result<[u64; 3], ErrorCode> {
        let (_, cap) = self.caps.lookup(id, slot)?;
        let Object::Task(task) = cap.object else { return Err(ErrorCode::WrongKind) };
        Ok(match self.task(task).state {
            TaskState::Dead { death: Death::Exited(code), .. } => [task_state::EXITED, code, 0],
            TaskState::Dead { death: Death::Killed(fault), .. } => {
                [task_state::KILLED, u64::from(fault.vector), fault.address]
            }
            TaskState::Dead { death: Death::Terminated { by }, .. } => [task_state::TERMINATED, by.index() as u64, 0],
            _ => [task_state::ALIVE, 0, 0],
        })
    }

    /// Returns the memory of tasks that have ended. The machine layer calls
    /// this only while running on an address space other than theirs.
    pub fn reap(&mut self, m: &mut impl Machine) {
        if !core::mem::take(&mut self.reap_pending) {
            return;
        }
        for index in 0..self.tasks.len() {
            if let TaskState::Dead { death, reaped: false } = self.tasks[index].state {
                let root = self.tasks[index].root;
                let mut quota = self.tasks[index].memory;
                self.free_space(m, root, &mut quota);
                let task = &mut self.tasks[index];
                task.memory = quota;
                task.state = TaskState::Dead { death, reaped: true };
            }
        }
    }
}
