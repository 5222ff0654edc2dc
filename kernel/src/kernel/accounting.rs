//! Accounting: the figures a test compares before and after to find leaks.
//!
//! `Accounting` reports what the machine has in use (free frames, DMA
//! pins, capabilities) and what each task has (objects, memory pages,
//! capabilities), so a test can show that churn, hostile requests and
//! deaths leave nothing behind anywhere, not only in the servers' own
//! counters. The figures reveal what every task holds, so only a control
//! capability with the ACCOUNT right, which the policy grants on its own,
//! may read them. Each call is one pass over the capability table at
//! most, which its fixed size bounds.

use capabilities::ErrorCode;
use capabilities::abi::rights;
use capabilities::accounting::{MACHINE, MachineFigures, TaskFigures};

use super::Kernel;
use crate::task::TaskId;

impl Kernel {
    /// `Accounting`: the machine's figures for `scope` [`MACHINE`], or
    /// those of the task with index `scope`; `NotFound` past the last.
    pub(super) fn accounting(&self, id: TaskId, control: u64, scope: u64) -> Result<[u64; 3], ErrorCode> {
        self.require_control(id, control, rights::ACCOUNT)?;
        if scope == MACHINE {
            return Ok(self.machine_figures().to_registers());
        }
        let index = usize::try_from(scope).ok().filter(|&index| index < self.tasks.len()).ok_or(ErrorCode::NotFound)?;
        Ok(self.task_figures(TaskId::new(index as u8)).to_registers())
    }

    /// What the machine has in use.
    fn machine_figures(&self) -> MachineFigures {
        MachineFigures {
            free_frames: self.frames.free_frames() as u64,
            pins: self.pins.len() as u64,
            capabilities: self.caps.task_capabilities() as u64,
        }
    }

    /// What task `id` has in use.
    fn task_figures(&self, id: TaskId) -> TaskFigures {
        let task = self.task(id);
        TaskFigures {
            objects: u64::from(task.objects.used),
            memory_pages: u64::from(task.memory.used),
            capabilities: self.caps.occupied(id).count() as u64,
        }
    }
}
