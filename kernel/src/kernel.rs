//! The kernel state and its entry points: boot, system calls, interrupts,
//! faults, and the choice of what runs next.
//!
//! The machine layer calls into [`Kernel`] on every entry from user mode and
//! carries out the [`Next`] it returns. Nothing here touches hardware
//! directly; memory, ports, interrupt routing and the clock go through
//! [`Machine`]. The submodules each hold one group of operations.

mod accounting;
mod boot;
mod caps;
mod fastpath;
mod interrupts;
mod ipc;
mod lifecycle;
mod memory;
mod notify;
mod pins;
mod platform;
mod remapping;
mod syscall;

use capabilities::ErrorCode;
use capabilities::manifest::MAX_TASKS;
use heapless::Vec;

use crate::context::TrapFrame;
use crate::cspace::{CapTable, PIN_NODES};
use crate::frames::FrameAllocator;
use crate::objects::{Arena, Endpoint, FrameObject, Handle, Interrupt, Notification, Pin};
use crate::phys::{Frame, PAGE_SIZE as PAGE, PhysMem};
use crate::sched::Scheduler;
use crate::task::{MAX_WATCHES, Task, TaskId, TaskState, Watch};

pub use boot::LoadError;
pub use interrupts::{FIRST_DEVICE_VECTOR, TASK_PRIORITY, undelivered_interrupt};
pub use platform::Platform;

/// Highest physical address (exclusive) whose RAM the kernel manages: on
/// q35 a machine of 6 GiB ends there (2 GiB below the PCI hole, 4 above).
pub const MAX_PHYSICAL: u64 = 8 << 30;

/// The frame allocator the kernel uses: all RAM below [`MAX_PHYSICAL`]
/// (a bitmap of 256 KiB).
pub type Frames = FrameAllocator<{ MAX_PHYSICAL as usize / PAGE / 64 }>;

/// System status when the init task was killed by a fault.
pub const STATUS_INIT_KILLED: u8 = 126;

/// Length of a time slice among tasks of equal priority, in µs.
pub const QUANTUM_US: u64 = 10_000;

/// Endpoints the machine can hold.
pub const MAX_ENDPOINTS: usize = 128;
/// Notifications the machine can hold.
pub const MAX_NOTIFICATIONS: usize = 128;
/// Frame objects the machine can hold.
pub const MAX_FRAME_OBJECTS: usize = 1024;
/// Interrupt objects the machine can hold.
pub const MAX_INTERRUPTS: usize = 64;
/// MSI vectors one task may hold (`IrqAllocMsi`), so that no holder of the
/// IRQ right takes every vector and interrupt object.
pub const MSI_PER_TASK: usize = 32;

/// The hardware services the logic needs beyond physical memory.
pub trait Machine: PhysMem {
    /// Writes one log record, tagged `tag`, to the console.
    fn log_record(&mut self, tag: u8, payload: &[u8]);
    /// Microseconds since the machine started.
    fn now(&self) -> u64;
    /// Drops stale translations of `pages` pages at `virt` in the address
    /// space rooted at `root` (only needed if it is the one loaded).
    fn flush_tlb(&mut self, root: Frame, virt: u64, pages: u64);
    /// Reads an I/O port, `width` bytes (1, 2 or 4).
    fn port_read(&mut self, port: u16, width: u8) -> u32;
    /// Writes an I/O port, `width` bytes (1, 2 or 4).
    fn port_write(&mut self, port: u16, width: u8, value: u32);
    /// Routes IO APIC input `gsi` to `vector`, masked.
    fn route_gsi(&mut self, gsi: u8, vector: u8, level: bool);
    /// Masks or unmasks IO APIC input `gsi`.
    fn mask_gsi(&mut self, gsi: u8, masked: bool);
    /// The address a device writes to raise an MSI at this CPU.
    fn msi_address(&self) -> u64;
    /// Routes IO APIC input `gsi` (vector `vector`) through
    /// interrupt-remapping entry `handle`, in remappable format, keeping
    /// its mask.
    fn remap_gsi(&mut self, gsi: u8, vector: u8, level: bool, handle: u16);
}

/// What the machine layer should do after an entry into the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Switch to this task's address space and resume its saved registers.
    Resume(TaskId),
    /// Nothing can run now: wait for an interrupt.
    Idle,
    /// The system is over; exit with this status.
    Shutdown(u8),
}

/// The whole kernel state.
///
/// The fields are laid out in this order (`repr(C)`), what every IPC
/// touches first: under emulation each 4 KiB page the kernel reads after
/// an address-space switch costs a TLB refill, so the scheduler state,
/// the tasks and the endpoints share as few pages as possible, and the
/// large tables (capabilities, frames) come last.
#[repr(C)]
pub struct Kernel {
    current: Option<TaskId>,
    init: Option<TaskId>,
    reap_pending: bool,
    quantum_end: u64,
    sched: Scheduler,
    tasks: Vec<Task, MAX_TASKS>,
    endpoints: Arena<Endpoint, MAX_ENDPOINTS>,
    notifications: Arena<Notification, MAX_NOTIFICATIONS>,
    caps: CapTable,
    frame_objects: Arena<FrameObject, MAX_FRAME_OBJECTS>,
    pins: Arena<Pin, PIN_NODES>,
    interrupts: Arena<Interrupt, MAX_INTERRUPTS>,
    vectors: [Option<Handle>; 256],
    stray_vectors: u64,
    platform: Platform,
    kernel_root: Option<Frame>,
    no_execute: u64,
    watches: Vec<Watch, MAX_WATCHES>,
    frames: Frames,
}

impl Default for Kernel {
    fn default() -> Self {
        Self::new()
    }
}

impl Kernel {
    /// A kernel with no memory and no tasks.
    pub const fn new() -> Self {
        Self {
            frames: Frames::new(),
            kernel_root: None,
            no_execute: 0,
            watches: Vec::new(),
            tasks: Vec::new(),
            caps: CapTable::new(),
            endpoints: Arena::new(),
            notifications: Arena::new(),
            frame_objects: Arena::new(),
            pins: Arena::new(),
            interrupts: Arena::new(),
            vectors: [None; 256],
            stray_vectors: 0,
            platform: Platform::new(),
            sched: Scheduler::new(),
            current: None,
            quantum_end: 0,
            init: None,
            reap_pending: false,
        }
    }

    /// The frame allocator, for the boot code to fill.
    pub fn frames(&mut self) -> &mut Frames {
        &mut self.frames
    }

    /// The running task.
    #[inline]
    pub fn current(&self) -> Option<TaskId> {
        self.current
    }

    /// The saved registers of `task`.
    #[inline]
    pub fn frame(&self, task: TaskId) -> &TrapFrame {
        &self.tasks[task.index()].frame
    }

    /// The top-level page table of `task`.
    #[inline]
    pub fn root(&self, task: TaskId) -> Frame {
        self.tasks[task.index()].root
    }

    /// The tasks, in manifest order.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Records the registers the running task entered the kernel with.
    #[inline]
    pub fn save_frame(&mut self, frame: &TrapFrame) {
        if let Some(id) = self.current {
            self.tasks[id.index()].frame = *frame;
        }
    }

    #[inline]
    fn task(&self, id: TaskId) -> &Task {
        &self.tasks[id.index()]
    }

    #[inline]
    fn task_mut(&mut self, id: TaskId) -> &mut Task {
        &mut self.tasks[id.index()]
    }

    /// Sets `task`'s system-call result registers.
    #[inline]
    fn set_result(&mut self, id: TaskId, result: Result<[u64; 3], ErrorCode>) {
        let frame = &mut self.task_mut(id).frame;
        match result {
            Ok(values) => frame.set_result(0, values),
            Err(code) => frame.set_result(u64::from(code.code()), [0; 3]),
        }
    }

    /// Blocks the running task `id` in `state` until woken or `deadline`.
    fn block(&mut self, id: TaskId, state: TaskState, deadline: Option<u64>) {
        let task = self.task_mut(id);
        task.state = state;
        task.deadline = deadline;
        if self.current == Some(id) {
            self.current = None;
        }
    }

    /// Ends `id`'s blocking operation with `result` and makes it runnable.
    /// A task that is not blocked is left alone: one that runs or waits
    /// for the CPU is in a run queue or current already, and a dead one
    /// must never run again (its tables may be freed), so no path that
    /// wakes by mistake can queue a task twice or bring one back.
    fn wake(&mut self, id: TaskId, result: Result<[u64; 3], ErrorCode>) {
        if !self.task(id).is_blocked() {
            return;
        }
        self.set_result(id, result);
        let task = self.task_mut(id);
        task.state = TaskState::Runnable;
        task.deadline = None;
        let priority = task.priority;
        self.sched.enqueue(id, priority);
    }

    /// Takes `id` out of whatever queue its blocking state put it in.
    fn unqueue(&mut self, id: TaskId) {
        match self.task(id).state {
            TaskState::Sending { endpoint, .. } | TaskState::Receiving { endpoint, .. } => {
                if let Some(endpoint) = self.endpoints.get_mut(endpoint) {
                    remove_from(&mut endpoint.queue, id);
                    if endpoint.queue.is_empty() {
                        endpoint.waiting = crate::objects::Waiting::Nobody;
                    }
                }
            }
            TaskState::Waiting { notification, .. } => {
                if let Some(notification) = self.notifications.get_mut(notification) {
                    remove_from(&mut notification.waiters, id);
                }
            }
            TaskState::Runnable | TaskState::AwaitingReply { .. } | TaskState::Dead { .. } => {}
        }
    }

    /// Ends blocking operations whose timeouts have passed.
    fn expire_timeouts(&mut self, now: u64) {
        for index in 0..self.tasks.len() {
            let id = TaskId::new(index as u8);
            if self.task(id).deadline.is_some_and(|deadline| deadline <= now) {
                self.unqueue(id);
                self.wake(id, Err(ErrorCode::TimedOut));
            }
        }
    }

    /// Chooses what runs next at time `now` (µs).
    pub fn schedule(&mut self, now: u64) -> Next {
        self.expire_timeouts(now);
        if let Some(status) = self.shutdown_status() {
            return Next::Shutdown(status);
        }
        if let Some(id) = self.current {
            let priority = self.task(id).priority;
            match self.sched.highest_priority() {
                Some(highest) if highest > priority => self.sched.enqueue_front(id, priority),
                Some(highest) if highest == priority && now >= self.quantum_end => self.sched.enqueue(id, priority),
                _ => return Next::Resume(id),
            }
            self.current = None;
        }
        match self.sched.pop() {
            Some(id) => {
                debug_assert!(self.task(id).state == TaskState::Runnable, "{id:?} scheduled while not runnable");
                self.current = Some(id);
                self.quantum_end = now.saturating_add(QUANTUM_US);
                Next::Resume(id)
            }
            None => Next::Idle,
        }
    }

    /// When the machine must next enter the kernel by timer: the end of the
    /// running task's slice if a peer waits, or the earliest timeout.
    pub fn next_deadline(&self) -> Option<u64> {
        let slice = match (self.current, self.sched.highest_priority()) {
            (Some(id), Some(highest)) if highest >= self.task(id).priority => Some(self.quantum_end),
            _ => None,
        };
        let timeouts = self.tasks.iter().filter_map(|task| task.deadline);
        slice.into_iter().chain(timeouts).min()
    }

    fn shutdown_status(&self) -> Option<u8> {
        use crate::task::Death;
        if let Some(init) = self.init {
            return match self.task(init).state {
                TaskState::Dead { death: Death::Exited(code), .. } => Some(code.min(125) as u8),
                TaskState::Dead { death: Death::Killed(_) | Death::Terminated { .. }, .. } => Some(STATUS_INIT_KILLED),
                _ => None,
            };
        }
        let mut failed = false;
        for task in &self.tasks {
            match task.state {
                TaskState::Dead { death, .. } => failed |= death != Death::Exited(0),
                _ => return None,
            }
        }
        Some(u8::from(failed))
    }
}

/// Removes `id` from a wait queue, keeping the others' order.
fn remove_from<const N: usize>(queue: &mut heapless::Deque<TaskId, N>, id: TaskId) {
    for _ in 0..queue.len() {
        if let Some(head) = queue.pop_front()
            && head != id
        {
            let _ = queue.push_back(head);
        }
    }
}

#[cfg(test)]
mod tests;
