//! The kernel state and its entry points: load tasks, handle system calls
//! and faults, and choose what runs next.
//!
//! The machine layer calls into [`Kernel`] on every entry from user mode and
//! carries out the [`Next`] it returns. Nothing here touches hardware
//! directly; memory goes through [`Machine`], which is [`PhysMem`] plus the
//! console.

use capabilities::ErrorCode;
use capabilities::abi::{LOG_FRAME_MAX, PAGE_SIZE, Syscall, layout};
use capabilities::manifest::{MAX_TASKS, TaskImage};
use heapless::Vec;

use crate::context::TrapFrame;
use crate::frames::FrameAllocator;
use crate::image::{BootImage, ImageError};
use crate::paging::{self, MapError, TableFrames, flags};
use crate::phys::{Frame, PAGE_SIZE as PAGE, PhysMem};
use crate::sched::Scheduler;
use crate::task::{Death, Fault, Quota, Task, TaskId, TaskState};
use crate::usermem;

/// The frame allocator the kernel uses: all RAM below 4 GiB.
pub type Frames = FrameAllocator<{ (4usize << 30) / PAGE / 64 }>;

/// System status when the init task was killed by a fault.
pub const STATUS_INIT_KILLED: u8 = 126;

/// The hardware services the logic needs beyond physical memory.
pub trait Machine: PhysMem {
    /// Writes one log record, tagged `tag`, to the console.
    fn log_record(&mut self, tag: u8, payload: &[u8]);
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

/// Why a task could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LoadError {
    /// Its memory quota cannot hold its image, stack and tables.
    QuotaTooSmall,
    /// The machine ran out of frames.
    OutOfMemory,
    /// A mapping could not be made.
    Map(MapError),
}

/// The whole kernel state.
pub struct Kernel {
    frames: Frames,
    kernel_root: Option<Frame>,
    no_execute: u64,
    tasks: Vec<Task, MAX_TASKS>,
    sched: Scheduler,
    current: Option<TaskId>,
    init: Option<TaskId>,
    reap_pending: bool,
}

impl Default for Kernel {
    fn default() -> Self {
        Self::new()
    }
}

/// Frames for one task's page tables, charged to its quota.
struct TaskTables<'a> {
    frames: &'a mut Frames,
    quota: &'a mut Quota,
}

impl TableFrames for TaskTables<'_> {
    fn alloc_table(&mut self) -> Option<Frame> {
        if !self.quota.charge(1) {
            return None;
        }
        let frame = self.frames.alloc();
        if frame.is_none() {
            self.quota.release(1);
        }
        frame
    }

    fn free_table(&mut self, frame: Frame) {
        // Table frames come from this allocator, so returning them succeeds.
        let _ = self.frames.free(frame);
        self.quota.release(1);
    }
}

impl Kernel {
    /// A kernel with no memory and no tasks.
    pub const fn new() -> Self {
        Self {
            frames: Frames::new(),
            kernel_root: None,
            no_execute: 0,
            tasks: Vec::new(),
            sched: Scheduler::new(),
            current: None,
            init: None,
            reap_pending: false,
        }
    }

    /// The frame allocator, for the boot code to fill.
    pub fn frames(&mut self) -> &mut Frames {
        &mut self.frames
    }

    /// Sets the top-level table whose upper half every address space shares,
    /// and whether the CPU supports no-execute pages.
    pub fn set_kernel_space(&mut self, root: Frame, no_execute: bool) {
        self.kernel_root = Some(root);
        self.no_execute = if no_execute { flags::NO_EXECUTE } else { 0 };
    }

    /// Creates every task of the boot image. A task that cannot be created
    /// is reported and skipped; the others still start. Returns how many
    /// started.
    pub fn load(&mut self, m: &mut impl Machine, image: &BootImage) -> Result<usize, ImageError> {
        let init = image.header().init_task;
        for task in image.tasks() {
            let task = task?;
            let index = self.tasks.len();
            match self.create_task(m, image.bytes(), &task) {
                Ok(id) => {
                    info!(
                        "task {=str} loaded: priority {=u8}, {=u32} of {=u32} pages",
                        task.name.as_str(),
                        task.priority,
                        self.tasks[id.index()].memory.used,
                        task.memory_pages
                    );
                    if init == Some(index as u16) {
                        self.init = Some(id);
                    }
                }
                Err(problem) => error!("task {=str} not started: {}", task.name.as_str(), problem),
            }
        }
        Ok(self.tasks.len())
    }

    fn create_task(&mut self, m: &mut impl Machine, image: &[u8], spec: &TaskImage) -> Result<TaskId, LoadError> {
        let kernel_root = self.kernel_root.ok_or(LoadError::OutOfMemory)?;
        let mut quota = Quota::new(spec.memory_pages);
        let root = self.alloc_page(m, &mut quota)?;
        for slot in 256..512 {
            let entry = m.read_u64(kernel_root, slot * 8);
            m.write_u64(root, slot * 8, entry);
        }
        let built = self.build_space(m, image, spec, root, &mut quota);
        if let Err(problem) = built {
            self.free_space(m, root, &mut quota);
            return Err(problem);
        }
        let id = TaskId::new(self.tasks.len() as u8);
        let task = Task {
            name: spec.name.clone(),
            priority: spec.priority,
            state: TaskState::Runnable,
            frame: TrapFrame::new_user(spec.entry, layout::STACK_TOP),
            root,
            memory: quota,
        };
        if self.tasks.push(task).is_err() {
            // The image checker allows at most MAX_TASKS records.
            return Err(LoadError::OutOfMemory);
        }
        self.sched.enqueue(id, spec.priority);
        Ok(id)
    }

    fn build_space(
        &mut self,
        m: &mut impl Machine,
        image: &[u8],
        spec: &TaskImage,
        root: Frame,
        quota: &mut Quota,
    ) -> Result<(), LoadError> {
        let user = flags::PRESENT | flags::USER | flags::OWNED;
        for segment in &spec.segments {
            let mut leaf = user;
            if segment.flags.write {
                leaf |= flags::WRITABLE;
            }
            if !segment.flags.execute {
                leaf |= self.no_execute;
            }
            let pages = u64::from(segment.mem_size).div_ceil(PAGE_SIZE);
            for page in 0..pages {
                let frame = self.alloc_page(m, quota)?;
                let start = page * PAGE_SIZE;
                if start < u64::from(segment.file_size) {
                    let len = (u64::from(segment.file_size) - start).min(PAGE_SIZE) as usize;
                    let from = segment.offset as usize + start as usize;
                    // The image checker bounds offset + file_size by the image length.
                    m.page_mut(frame)[..len].copy_from_slice(&image[from..from + len]);
                }
                self.map_owned(m, root, quota, segment.vaddr + start, frame, leaf)?;
            }
        }
        let data = user | flags::WRITABLE | self.no_execute;
        for page in 1..=u64::from(spec.stack_pages) {
            let frame = self.alloc_page(m, quota)?;
            self.map_owned(m, root, quota, layout::STACK_TOP - page * PAGE_SIZE, frame, data)?;
        }
        let ipc = self.alloc_page(m, quota)?;
        self.map_owned(m, root, quota, layout::IPC_BUFFER, ipc, data)
    }

    fn map_owned(
        &mut self,
        m: &mut impl Machine,
        root: Frame,
        quota: &mut Quota,
        virt: u64,
        frame: Frame,
        leaf: u64,
    ) -> Result<(), LoadError> {
        let mut tables = TaskTables { frames: &mut self.frames, quota };
        paging::map(m, &mut tables, root, virt, frame, leaf).map_err(|error| {
            // The frame is not in the tables yet, so free it here.
            let _ = tables.frames.free(frame);
            tables.quota.release(1);
            match error {
                MapError::OutOfMemory => LoadError::QuotaTooSmall,
                other => LoadError::Map(other),
            }
        })
    }

    /// A zeroed frame charged to `quota`.
    fn alloc_page(&mut self, m: &mut impl Machine, quota: &mut Quota) -> Result<Frame, LoadError> {
        if !quota.charge(1) {
            return Err(LoadError::QuotaTooSmall);
        }
        let Some(frame) = self.frames.alloc() else {
            quota.release(1);
            return Err(LoadError::OutOfMemory);
        };
        m.page_mut(frame).fill(0);
        Ok(frame)
    }

    /// Frees every owned frame and table of the space at `root`, and `root`.
    fn free_space(&mut self, m: &mut impl Machine, root: Frame, quota: &mut Quota) {
        // Unmap in batches: the walk cannot free while it visits.
        let mut batch: Vec<u64, 64> = Vec::new();
        loop {
            batch.clear();
            paging::for_each_user_leaf(m, root, |virt, leaf| {
                if leaf.flags & flags::OWNED != 0 {
                    let _ = batch.push(virt);
                }
            });
            if batch.is_empty() {
                break;
            }
            for &virt in &batch {
                if let Ok(leaf) = paging::unmap(m, root, virt) {
                    let _ = self.frames.free(Frame::containing(leaf.physical));
                    quota.release(1);
                }
            }
        }
        paging::free_user_tables(m, &mut TaskTables { frames: &mut self.frames, quota }, root);
        let _ = self.frames.free(root);
        quota.release(1);
    }

    /// The running task.
    pub fn current(&self) -> Option<TaskId> {
        self.current
    }

    /// The saved registers of `task`.
    pub fn frame(&self, task: TaskId) -> &TrapFrame {
        &self.tasks[task.index()].frame
    }

    /// The top-level page table of `task`.
    pub fn root(&self, task: TaskId) -> Frame {
        self.tasks[task.index()].root
    }

    /// The tasks, in manifest order.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Records the registers the running task entered the kernel with.
    pub fn save_frame(&mut self, frame: &TrapFrame) {
        if let Some(id) = self.current {
            self.tasks[id.index()].frame = *frame;
        }
    }

    /// Carries out the system call in the running task's saved registers.
    pub fn syscall(&mut self, m: &mut impl Machine) {
        let Some(id) = self.current else { return };
        let (number, args) = self.tasks[id.index()].frame.syscall_args();
        let result = match Syscall::from_number(number) {
            None => Err(ErrorCode::NoSuchCall),
            Some(Syscall::LogWrite) => self.log_write(m, id, args[0], args[1]),
            Some(Syscall::Exit) => {
                self.end_task(id, Death::Exited(args[0]));
                return;
            }
        };
        let frame = &mut self.tasks[id.index()].frame;
        match result {
            Ok(results) => frame.set_result(0, results),
            Err(code) => frame.set_result(u64::from(code.code()), [0; 3]),
        }
    }

    fn log_write(&mut self, m: &mut impl Machine, id: TaskId, address: u64, len: u64) -> Result<[u64; 3], ErrorCode> {
        if len > LOG_FRAME_MAX as u64 {
            return Err(ErrorCode::TooLarge);
        }
        let mut buffer = [0u8; LOG_FRAME_MAX];
        let buffer = &mut buffer[..len as usize];
        usermem::copy_from_user(m, self.tasks[id.index()].root, address, buffer)?;
        m.log_record(id.log_tag(), buffer);
        Ok([0; 3])
    }

    /// Kills the running task for a CPU exception it raised.
    pub fn fault(&mut self, fault: Fault) {
        if let Some(id) = self.current {
            self.end_task(id, Death::Killed(fault));
        }
    }

    fn end_task(&mut self, id: TaskId, death: Death) {
        let task = &mut self.tasks[id.index()];
        if task.is_dead() {
            return;
        }
        match death {
            Death::Exited(code) => info!("task {=str} exited with code {=u64}", task.name.as_str(), code),
            Death::Killed(fault) => error!(
                "task {=str} killed: {=str} ({=str}) at address {=u64:#x}, rip {=u64:#x}, error code {=u64:#x}",
                task.name.as_str(),
                fault.name(),
                fault.access(),
                fault.address,
                fault.rip,
                fault.error_code
            ),
        }
        task.state = TaskState::Dead { death, reaped: false };
        self.sched.remove(id, task.priority);
        if self.current == Some(id) {
            self.current = None;
        }
        self.reap_pending = true;
    }

    /// Chooses what runs next.
    pub fn schedule(&mut self) -> Next {
        if let Some(status) = self.shutdown_status() {
            return Next::Shutdown(status);
        }
        if let Some(id) = self.current {
            return Next::Resume(id);
        }
        match self.sched.pop() {
            Some(id) => {
                self.current = Some(id);
                Next::Resume(id)
            }
            None => Next::Idle,
        }
    }

    fn shutdown_status(&self) -> Option<u8> {
        if let Some(init) = self.init {
            return match self.tasks[init.index()].state {
                TaskState::Dead { death: Death::Exited(code), .. } => Some(code.min(125) as u8),
                TaskState::Dead { death: Death::Killed(_), .. } => Some(STATUS_INIT_KILLED),
                TaskState::Runnable => None,
            };
        }
        let mut failed = false;
        for task in &self.tasks {
            match task.state {
                TaskState::Runnable => return None,
                TaskState::Dead { death, .. } => failed |= death != Death::Exited(0),
            }
        }
        Some(u8::from(failed))
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

#[cfg(test)]
mod tests;
