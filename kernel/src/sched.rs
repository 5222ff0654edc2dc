//! Run queues: a FIFO per priority and a bitmap of the non-empty ones.
//!
//! # Invariants
//!
//! * Bit `p` of `ready` is set exactly when queue `p` is non-empty.
//! * A task is in at most one queue, at most once (the kernel enqueues only
//!   tasks it has just made runnable; debug builds check it).

use heapless::Deque;

use crate::image::MAX_PRIORITY;
use crate::task::TaskId;
use capabilities::manifest::MAX_TASKS;

const LEVELS: usize = MAX_PRIORITY as usize + 1;

/// The set of runnable tasks, ordered by priority then arrival.
pub struct Scheduler {
    queues: [Deque<TaskId, MAX_TASKS>; LEVELS],
    ready: u32,
    changes: u32,
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

impl Scheduler {
    /// No task runnable.
    pub const fn new() -> Self {
        Self { queues: [const { Deque::new() }; LEVELS], ready: 0, changes: 0 }
    }

    /// Appends `task` at `priority`. Priorities above [`MAX_PRIORITY`] are
    /// clamped (the image checker refuses them earlier).
    pub fn enqueue(&mut self, task: TaskId, priority: u8) {
        self.insert(task, priority, |queue, task| queue.push_back(task));
    }

    /// Puts `task` first at `priority`: it was preempted by a more urgent
    /// task and resumes before its peers.
    pub fn enqueue_front(&mut self, task: TaskId, priority: u8) {
        self.insert(task, priority, |queue, task| queue.push_front(task));
    }

    /// Puts `task` in the queue of `priority` (clamped) with `push`.
    fn insert(
        &mut self,
        task: TaskId,
        priority: u8,
        push: impl FnOnce(&mut Deque<TaskId, MAX_TASKS>, TaskId) -> Result<(), TaskId>,
    ) {
        debug_assert!(!self.holds(task), "{task:?} is queued already");
        let level = usize::from(priority.min(MAX_PRIORITY));
        self.changes = self.changes.wrapping_add(1);
        // A queue holds each task at most once, so it never fills.
        if push(&mut self.queues[level], task).is_ok() {
            self.ready |= 1 << level;
        }
    }

    /// Removes and returns the first task of the highest non-empty priority.
    pub fn pop(&mut self) -> Option<TaskId> {
        let level = self.highest()?;
        let task = self.queues[level].pop_front();
        if self.queues[level].is_empty() {
            self.ready &= !(1 << level);
        }
        task
    }

    /// Counts changes to the queues (tasks added or taken out other than
    /// by [`Scheduler::pop`]): equal counts mean no task became runnable
    /// or stopped being so in between.
    pub fn changes(&self) -> u32 {
        self.changes
    }

    /// The highest priority with a runnable task.
    pub fn highest_priority(&self) -> Option<u8> {
        self.highest().map(|level| level as u8)
    }

    /// Takes `task` out of the queue of `priority`, if it is there.
    pub fn remove(&mut self, task: TaskId, priority: u8) {
        let level = usize::from(priority.min(MAX_PRIORITY));
        self.changes = self.changes.wrapping_add(1);
        let queue = &mut self.queues[level];
        for _ in 0..queue.len() {
            if let Some(head) = queue.pop_front()
                && head != task
            {
                let _ = queue.push_back(head);
            }
        }
        if queue.is_empty() {
            self.ready &= !(1 << level);
        }
    }

    /// The non-empty queues, highest priority first, each in order (for
    /// tests that compare two kernels' states).
    #[cfg(test)]
    pub fn snapshot(&self) -> Vec<(usize, Vec<TaskId>)> {
        (0..LEVELS)
            .rev()
            .filter(|&level| !self.queues[level].is_empty())
            .map(|level| (level, self.queues[level].iter().copied().collect()))
            .collect()
    }

    /// Whether `task` is in any queue (checked in debug builds, the host
    /// tests among them, before every enqueue: the invariant above).
    fn holds(&self, task: TaskId) -> bool {
        self.queues.iter().any(|queue| queue.iter().any(|&queued| queued == task))
    }

    fn highest(&self) -> Option<usize> {
        (self.ready != 0).then(|| 31 - self.ready.leading_zeros() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> TaskId {
        TaskId::new(n)
    }

    #[test]
    fn highest_priority_first_then_fifo() {
        let mut sched = Scheduler::new();
        sched.enqueue(id(1), 3);
        sched.enqueue(id(2), 7);
        sched.enqueue(id(3), 3);
        sched.enqueue(id(4), 7);
        assert_eq!(sched.highest_priority(), Some(7));
        let order: Vec<_> = core::iter::from_fn(|| sched.pop()).collect();
        assert_eq!(order, [id(2), id(4), id(1), id(3)]);
        assert_eq!(sched.highest_priority(), None);
    }

    #[test]
    fn removing_keeps_the_others_in_order() {
        let mut sched = Scheduler::new();
        for n in 1..=3 {
            sched.enqueue(id(n), 5);
        }
        sched.remove(id(2), 5);
        sched.remove(id(9), 5);
        assert_eq!(sched.pop(), Some(id(1)));
        assert_eq!(sched.pop(), Some(id(3)));
        sched.enqueue(id(1), 0);
        sched.remove(id(1), 0);
        assert_eq!(sched.pop(), None, "an emptied level leaves the bitmap");
    }

    #[test]
    fn a_preempted_task_goes_first_among_its_peers() {
        let mut sched = Scheduler::new();
        sched.enqueue(id(1), 2);
        sched.enqueue_front(id(2), 2);
        assert_eq!(sched.pop(), Some(id(2)));
        assert_eq!(sched.pop(), Some(id(1)));
    }

    #[test]
    fn out_of_range_priorities_are_clamped() {
        let mut sched = Scheduler::new();
        sched.enqueue(id(1), 200);
        assert_eq!(sched.highest_priority(), Some(MAX_PRIORITY));
    }
}
