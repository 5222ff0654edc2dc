//! A simulated machine for the kernel logic, built from its public API.
//!
//! Memory is a vector of pages; the top page is the kernel's top-level
//! table and never handed to the frame allocator, the bottom
//! [`RESERVED_PAGES`] stand for the kernel image. A page the kernel asks
//! for outside the vector panics, which is a kernel bug (see
//! [`kernel::phys::PhysMem`]).

use capabilities::abi::Syscall;
use kernel::image::BootImage;
use kernel::kernel::{Kernel, Machine, Next};
use kernel::phys::{Frame, PAGE_SIZE, PhysMem};
use kernel::task::{TaskId, TaskState};

/// Frames below this are never handed out (the "kernel image").
pub const RESERVED_PAGES: usize = 16;

/// Physical memory, a clock, and nothing else the kernel can observe.
pub struct FuzzMachine {
    pages: Vec<[u8; PAGE_SIZE]>,
    /// Microseconds since the machine started.
    pub now: u64,
}

impl FuzzMachine {
    /// A machine with `pages` zeroed frames of memory.
    pub fn new(pages: usize) -> Self {
        Self { pages: vec![[0; PAGE_SIZE]; pages], now: 0 }
    }

    /// Frames of memory.
    pub fn frames(&self) -> usize {
        self.pages.len()
    }
}

impl PhysMem for FuzzMachine {
    fn page(&self, frame: Frame) -> &[u8; PAGE_SIZE] {
        &self.pages[frame.number() as usize]
    }

    fn page_mut(&mut self, frame: Frame) -> &mut [u8; PAGE_SIZE] {
        &mut self.pages[frame.number() as usize]
    }
}

impl Machine for FuzzMachine {
    fn log_record(&mut self, _tag: u8, payload: &[u8]) {
        assert!(payload.len() <= capabilities::abi::LOG_FRAME_MAX, "log records are bounded");
    }

    fn now(&self) -> u64 {
        self.now
    }

    fn flush_tlb(&mut self, _root: Frame, _virt: u64, _pages: u64) {}

    fn port_read(&mut self, port: u16, width: u8) -> u32 {
        assert!(matches!(width, 1 | 2 | 4), "port widths are checked before the machine sees them");
        u32::from(port).wrapping_mul(3)
    }

    fn port_write(&mut self, _port: u16, width: u8, _value: u32) {
        assert!(matches!(width, 1 | 2 | 4), "port widths are checked before the machine sees them");
    }

    fn route_gsi(&mut self, _gsi: u8, _vector: u8, _level: bool) {}

    fn mask_gsi(&mut self, _gsi: u8, _masked: bool) {}

    fn msi_address(&self) -> u64 {
        0xfee0_0000
    }

    fn remap_gsi(&mut self, _gsi: u8, _vector: u8, _level: bool, _handle: u16) {}
}

/// A kernel booted from an image on a [`FuzzMachine`].
pub struct Sim {
    /// The kernel state.
    pub kernel: Box<Kernel>,
    /// The machine it runs on.
    pub machine: FuzzMachine,
    /// Free frames before any task was created.
    pub initial_free: usize,
}

impl Sim {
    /// A machine of `pages` frames with an empty kernel, ready to load.
    pub fn new(pages: usize) -> Self {
        let mut machine = FuzzMachine::new(pages.max(RESERVED_PAGES + 2));
        let top = machine.frames() - 1;
        let root = Frame::containing((top * PAGE_SIZE) as u64);
        // A kernel-half entry every task's top-level table must share.
        machine.write_u64(root, 511 * 8, 0xabc0_0003);
        let mut kernel = Box::new(Kernel::new());
        kernel.frames().add_free((RESERVED_PAGES * PAGE_SIZE) as u64, (top * PAGE_SIZE) as u64);
        kernel.set_kernel_space(root, true);
        let initial_free = kernel.frames().free_frames();
        Self { kernel, machine, initial_free }
    }

    /// Loads `image`; `None` if it does not decode or a task record is bad.
    pub fn load(&mut self, image: &[u8]) -> Option<usize> {
        let image = BootImage::parse(image).ok()?;
        self.kernel.load(&mut self.machine, &image).ok()
    }

    /// Makes system call `number` with `args` as the running task; returns
    /// the task's result registers if it did not block.
    pub fn syscall(&mut self, number: u64, args: [u64; 6]) -> Option<(u64, [u64; 3])> {
        let id = self.kernel.current()?;
        let mut frame = *self.kernel.frame(id);
        frame.rax = number;
        [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9] = args;
        self.kernel.save_frame(&frame);
        self.kernel.syscall(&mut self.machine);
        if self.kernel.current() != Some(id) {
            return None;
        }
        let frame = self.kernel.frame(id);
        Some((frame.rax, [frame.rdi, frame.rsi, frame.rdx]))
    }

    /// Runs the scheduler now and checks what it chose.
    pub fn schedule(&mut self) -> Next {
        let next = self.kernel.schedule(self.machine.now);
        if let Next::Resume(id) = next {
            let task = &self.kernel.tasks()[id.index()];
            assert_eq!(task.state, TaskState::Runnable, "the scheduler chose a task that cannot run");
            assert_eq!(self.kernel.current(), Some(id));
        }
        next
    }

    /// Checks what must hold between any two entries into the kernel.
    pub fn check(&mut self) {
        let mut used = 0usize;
        for (index, task) in self.kernel.tasks().iter().enumerate() {
            assert!(task.memory.used <= task.memory.limit, "task {index} is over its memory quota");
            assert!(task.objects.used <= task.objects.limit, "task {index} is over its object quota");
            if task.state == TaskState::Runnable && Some(TaskId::new(index as u8)) != self.kernel.current() {
                let rax = task.frame.rax;
                assert!(
                    rax == 0 || capabilities::ErrorCode::from_code(rax).is_some(),
                    "task {index} was handed result {rax}, which is no error code"
                );
            }
            used += task.memory.used as usize;
        }
        let free = self.kernel.frames().free_frames();
        assert!(free <= self.initial_free, "more frames free ({free}) than at boot ({})", self.initial_free);
        // Frames a task's quota is charged for are not free; pinned frames
        // of dead owners are no one's, so this is only a lower bound.
        assert!(free + used <= self.initial_free, "quotas account for {used} frames, {free} are free");
    }

    /// Ends every task that can still run (it calls `Exit`), lets time pass
    /// for those waiting with a timeout, and returns their memory. True if
    /// every task is then dead and reaped.
    pub fn wind_down(&mut self) -> bool {
        let rounds = 8 * self.kernel.tasks().len() + 64;
        for _ in 0..rounds {
            match self.schedule() {
                Next::Resume(_) => {
                    let _ = self.syscall(Syscall::Exit as u64, [0; 6]);
                }
                Next::Idle => match self.kernel.next_deadline() {
                    Some(deadline) => self.machine.now = self.machine.now.max(deadline),
                    None => break,
                },
                Next::Shutdown(_) => break,
            }
            self.kernel.reap(&mut self.machine);
            self.check();
        }
        self.kernel.reap(&mut self.machine);
        self.kernel.tasks().iter().all(|task| matches!(task.state, TaskState::Dead { reaped: true, .. }))
    }
}
