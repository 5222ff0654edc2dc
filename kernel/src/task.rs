//! Task control blocks: identity, state, saved registers and memory quota.

use capabilities::logframe;
use capabilities::manifest::{MAX_TASKS, NAME_MAX};
use heapless::String;

use crate::context::TrapFrame;
use crate::cspace::SlotId;
use crate::objects::{Handle, PinWatch};
use crate::phys::Frame;

/// Index of a task in the kernel's task table (its boot-manifest index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TaskId(u8);

impl TaskId {
    /// The task at table index `index`.
    pub const fn new(index: u8) -> Self {
        Self(index)
    }

    /// Its table index.
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// The tag its log records carry.
    pub const fn log_tag(self) -> u8 {
        logframe::task_tag(self.0 as usize)
    }
}

/// A CPU exception raised by a task, which ends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Fault {
    /// Exception vector.
    pub vector: u8,
    /// The error code the CPU pushed (0 if none).
    pub error_code: u64,
    /// Faulting address (CR2) for page faults, 0 otherwise.
    pub address: u64,
    /// Instruction that faulted.
    pub rip: u64,
}

impl Fault {
    /// The exception's name.
    pub fn name(&self) -> &'static str {
        exception_name(self.vector)
    }

    /// For page faults, what the access was and why it failed.
    pub fn access(&self) -> &'static str {
        if self.vector != 14 {
            return "";
        }
        let present = self.error_code & 1 != 0;
        match (self.error_code & 2 != 0, self.error_code & 16 != 0, present) {
            (_, true, _) => "instruction fetch",
            (true, _, false) => "write, page not mapped",
            (true, _, true) => "write, page not writable",
            (false, _, false) => "read, page not mapped",
            (false, _, true) => "read, page protected",
        }
    }
}

/// The name of CPU exception `vector`.
pub fn exception_name(vector: u8) -> &'static str {
    match vector {
        0 => "divide error",
        1 => "debug exception",
        2 => "non-maskable interrupt",
        3 => "breakpoint",
        4 => "overflow",
        5 => "bound range exceeded",
        6 => "invalid opcode",
        7 => "device not available",
        8 => "double fault",
        10 => "invalid TSS",
        11 => "segment not present",
        12 => "stack-segment fault",
        13 => "general protection fault",
        14 => "page fault",
        16 => "x87 floating-point error",
        17 => "alignment check",
        18 => "machine check",
        19 => "SIMD floating-point error",
        20 => "virtualization exception",
        21 => "control protection exception",
        _ => "reserved exception",
    }
}

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Death {
    /// It called `exit` with this code.
    Exited(u64),
    /// The kernel killed it for this fault.
    Killed(Fault),
    /// Another task ended it with `TaskKill`.
    Terminated {
        /// The task that did.
        by: TaskId,
    },
}

/// What a task is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Running or waiting for the CPU.
    Runnable,
    /// Blocked in an endpoint's queue until a receiver takes its message.
    Sending {
        /// The endpoint.
        endpoint: Handle,
        /// The capability it sends with: revoking it withdraws the message.
        cap: SlotId,
        /// Badge of the capability it sent with.
        badge: u64,
        /// Message length.
        len: u32,
        /// Whether that capability may transfer capabilities.
        grant: bool,
        /// Whether it then waits for a reply.
        call: bool,
    },
    /// Blocked in an endpoint's queue until a sender arrives.
    Receiving {
        /// The endpoint.
        endpoint: Handle,
        /// The capability it receives with: revoking it ends the receive.
        cap: SlotId,
    },
    /// Its call was received; waiting for the reply.
    AwaitingReply {
        /// Which of its calls (a reply capability names it).
        call: u64,
        /// Whether the capability it called with has GRANT: only then may
        /// the reply carry capabilities.
        grant: bool,
    },
    /// Blocked until a notification bit is set.
    Waiting {
        /// The notification.
        notification: Handle,
        /// The capability it waits with: revoking it ends the wait.
        cap: SlotId,
    },
    /// Ended; `reaped` once its memory has been returned.
    Dead {
        /// How it ended.
        death: Death,
        /// Its address space has been freed.
        reaped: bool,
    },
}

/// Pages a task may use, and pages it uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    /// Pages allowed.
    pub limit: u32,
    /// Pages in use.
    pub used: u32,
}

impl Quota {
    /// A quota of `limit` pages, none used.
    pub const fn new(limit: u32) -> Self {
        Self { limit, used: 0 }
    }

    /// Accounts for `pages` more pages, or refuses if they do not fit.
    pub fn charge(&mut self, pages: u32) -> bool {
        match self.used.checked_add(pages) {
            Some(total) if total <= self.limit => {
                self.used = total;
                true
            }
            _ => false,
        }
    }

    /// Gives back `pages` pages.
    pub fn release(&mut self, pages: u32) {
        self.used = self.used.saturating_sub(pages);
    }
}

/// Most death watches one task may make, of itself or of others. Each is
/// charged to the task that makes it, so however many a task makes, it
/// crowds out no one else's (the IOMMU and PCI servers' watches on the
/// tasks they serve among them).
pub const WATCHES_PER_TASK: usize = MAX_TASKS;

/// Every watch the tasks can make together.
pub const MAX_WATCHES: usize = MAX_TASKS * WATCHES_PER_TASK;

/// A death watch: when `watched` dies, `notification` gets `bits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watch {
    /// The task that made it, whose allowance it takes.
    pub watcher: TaskId,
    /// The task whose death it reports.
    pub watched: TaskId,
    /// The notification.
    pub notification: Handle,
    /// Bits to set.
    pub bits: u64,
    /// The notification capability it was made with: deleting that
    /// capability ends the watch.
    pub cap: SlotId,
}

/// One task: a thread in its own address space.
pub struct Task {
    /// Name from the boot manifest.
    pub name: String<NAME_MAX>,
    /// Scheduling priority.
    pub priority: u8,
    /// What it is doing.
    pub state: TaskState,
    /// Saved user registers while it is not running.
    pub frame: TrapFrame,
    /// Its top-level page table.
    pub root: Frame,
    /// Pages of its stack, which ends at `layout::STACK_TOP`: the bounds a
    /// backtrace of it is walked within.
    pub stack_pages: u16,
    /// The frame of its IPC buffer.
    pub ipc_buffer: Frame,
    /// Its memory quota, in pages.
    pub memory: Quota,
    /// Its quota of kernel objects it may create.
    pub objects: Quota,
    /// When its current blocking operation times out (µs since start).
    pub deadline: Option<u64>,
    /// Notification whose signals also end its receives, and the
    /// capability it was bound with (deleting that unbinds it).
    pub bound: Option<(Handle, SlotId)>,
    /// Where it is told that one of its DMA pins was revoked (`DmaWatch`).
    pub pin_watch: Option<PinWatch>,
    /// Calls made so far; numbers its reply capabilities (64 bits: the
    /// numbers never repeat).
    pub calls: u64,
}

impl Task {
    /// Whether it has ended.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, TaskState::Dead { .. })
    }

    /// Whether it is blocked in an operation another task or time can end.
    pub fn is_blocked(&self) -> bool {
        !matches!(self.state, TaskState::Runnable | TaskState::Dead { .. })
    }
}
