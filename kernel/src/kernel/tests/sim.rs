//! A simulated machine and helpers to run tasks' system calls by hand.

use capabilities::abi::ipc::{DATA_OFFSET, header};
use capabilities::abi::{Syscall, rights};
use capabilities::manifest::{BootCap, BootObject, MAGIC, ManifestHeader, Segment, SegmentFlags, TaskImage, VERSION};

use crate::image::BootImage;
use crate::kernel::{Kernel, Machine, Next};
use crate::phys::{Frame, PAGE_SIZE, PhysMem};
use crate::task::TaskId;
use crate::testing::{TestMemory, TestTables};

/// Frames of simulated RAM.
pub const MEMORY_PAGES: usize = 2048;
/// Frames below this are never handed out (the "kernel image").
pub const RESERVED_PAGES: usize = 16;

/// Physical memory plus records of everything the kernel asked of the machine.
pub struct TestMachine {
    pub mem: TestMemory,
    pub records: Vec<(u8, Vec<u8>)>,
    pub now: u64,
    pub flushes: Vec<(u64, u64)>,
    pub port_writes: Vec<(u16, u8, u32)>,
    pub routes: Vec<(u8, u8, bool)>,
    pub masked: std::collections::HashMap<u8, bool>,
    /// IO APIC lines routed through interrupt-remapping entries: gsi, vector, level, handle.
    pub remapped: Vec<(u8, u8, bool, u16)>,
}

impl PhysMem for TestMachine {
    fn manages(&self, frame: Frame) -> bool {
        self.mem.manages(frame)
    }

    fn page(&self, frame: Frame) -> &[u8; PAGE_SIZE] {
        self.mem.page(frame)
    }

    fn page_mut(&mut self, frame: Frame) -> &mut [u8; PAGE_SIZE] {
        self.mem.page_mut(frame)
    }
}

impl Machine for TestMachine {
    fn log_record(&mut self, tag: u8, payload: &[u8]) {
        self.records.push((tag, payload.to_vec()));
    }

    fn now(&self) -> u64 {
        self.now
    }

    fn flush_tlb(&mut self, _root: Frame, virt: u64, pages: u64) {
        self.flushes.push((virt, pages));
    }

    fn port_read(&mut self, port: u16, _width: u8) -> u32 {
        u32::from(port) * 3
    }

    fn port_write(&mut self, port: u16, width: u8, value: u32) {
        self.port_writes.push((port, width, value));
    }

    fn route_gsi(&mut self, gsi: u8, vector: u8, level: bool) {
        self.routes.push((gsi, vector, level));
        self.masked.insert(gsi, true);
    }

    fn mask_gsi(&mut self, gsi: u8, masked: bool) {
        self.masked.insert(gsi, masked);
    }

    fn msi_address(&self) -> u64 {
        0xfee0_0000
    }

    fn remap_gsi(&mut self, gsi: u8, vector: u8, level: bool, handle: u16) {
        self.remapped.push((gsi, vector, level, handle));
    }
}

/// A task image: one code page, one data page, and `caps`.
pub fn task(name: &str, priority: u8, caps: &[BootCap]) -> TaskImage {
    TaskImage {
        name: name.try_into().expect("short name"),
        priority,
        entry: 0x40_0000,
        stack_pages: 2,
        memory_pages: 64,
        object_quota: 8,
        segments: [
            Segment {
                vaddr: 0x40_0000,
                offset: 0x1000,
                file_size: 5,
                mem_size: 0x1000,
                flags: SegmentFlags { write: false, execute: true },
            },
            Segment {
                vaddr: 0x40_1000,
                offset: 0x1005,
                file_size: 3,
                mem_size: 0x2000,
                flags: SegmentFlags { write: true, execute: false },
            },
        ]
        .into_iter()
        .collect(),
        caps: caps.iter().copied().collect(),
        config: Default::default(),
    }
}

/// A boot capability in `slot`.
pub fn cap(slot: u16, object: BootObject, rights: u32, badge: u64) -> BootCap {
    BootCap { slot, object, rights, badge }
}

/// A server's receive capability on boot endpoint `n` in `slot`.
pub fn serve(slot: u16, n: u16) -> BootCap {
    cap(slot, BootObject::Endpoint(n), rights::RECEIVE, 0)
}

/// A client's send capability on boot endpoint `n` with `badge`.
pub fn client(slot: u16, n: u16, badge: u64) -> BootCap {
    cap(slot, BootObject::Endpoint(n), rights::SEND | rights::GRANT, badge)
}

/// A server (priority 2) receiving on boot endpoint 0 in slot 8, and a
/// client (priority 1) calling it from slot 8 with badge 0x77.
pub fn server_and_client() -> [TaskImage; 2] {
    [task("server", 2, &[serve(8, 0)]), task("client", 1, &[client(8, 0, 0x77)])]
}

/// A server (priority 1) receiving on boot endpoint 0 in slot 8, and two
/// clients (priority 2) calling it from slot 8, each named with its badge.
pub fn two_clients(first: (&str, u64), second: (&str, u64)) -> [TaskImage; 3] {
    [
        task("server", 1, &[serve(8, 0)]),
        task(first.0, 2, &[client(8, 0, first.1)]),
        task(second.0, 2, &[client(8, 0, second.1)]),
    ]
}

/// Encodes a boot image of `tasks` with `endpoints` and `notifications`.
pub fn image(tasks: &[TaskImage], init_task: Option<u16>, endpoints: u16, notifications: u16) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    let header =
        ManifestHeader { version: VERSION, task_count: tasks.len() as u16, init_task, endpoints, notifications };
    bytes.extend(postcard::to_stdvec(&header).expect("encodes"));
    for task in tasks {
        bytes.extend(postcard::to_stdvec(task).expect("encodes"));
    }
    assert!(bytes.len() <= 0x1000, "manifest fits its page");
    bytes.resize(0x1000, 0);
    bytes.extend(b"CODE!DAT");
    bytes
}

/// The outcome of a system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It returned `rax` and three results.
    Returned(u64, [u64; 3]),
    /// The task blocked (or ended).
    Blocked,
}

impl Outcome {
    /// The results, asserting success.
    pub fn ok(self) -> [u64; 3] {
        match self {
            Outcome::Returned(0, values) => values,
            other => panic!("expected success, got {other:?}"),
        }
    }

    /// The error code, asserting failure.
    pub fn error(self) -> capabilities::ErrorCode {
        match self {
            Outcome::Returned(code, _) if code != 0 => {
                capabilities::ErrorCode::from_code(code).expect("a known error code")
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }
}

/// A booted kernel on a simulated machine.
pub struct Sim {
    pub kernel: Box<Kernel>,
    pub m: TestMachine,
}

impl Sim {
    /// Boots `tasks` with the given boot objects.
    pub fn boot(tasks: &[TaskImage], init_task: Option<u16>, endpoints: u16, notifications: u16) -> Self {
        let mut m = TestMachine {
            mem: TestMemory::new(MEMORY_PAGES),
            records: vec![],
            now: 0,
            flushes: vec![],
            port_writes: vec![],
            routes: vec![],
            masked: Default::default(),
            remapped: vec![],
        };
        let mut kernel = Box::new(Kernel::new());
        let mut tables = TestTables::new(&mut m.mem, 1);
        let root = tables.alloc_zeroed(&mut m.mem);
        m.mem.write_u64(root, 511 * 8, 0xabc0_0003);
        kernel.frames().add_free((RESERVED_PAGES * PAGE_SIZE) as u64, ((MEMORY_PAGES - 1) * PAGE_SIZE) as u64);
        kernel.set_kernel_space(root, true);
        let bytes = image(tasks, init_task, endpoints, notifications);
        let image = BootImage::parse(&bytes).expect("valid image");
        kernel.load(&mut m, &image).expect("valid tasks");
        Self { kernel, m }
    }

    /// The id of the task called `name`.
    pub fn id(&self, name: &str) -> TaskId {
        let index = self.kernel.tasks().iter().position(|t| t.name.as_str() == name).expect("task exists");
        TaskId::new(index as u8)
    }

    /// Runs the scheduler at the current time.
    pub fn schedule(&mut self) -> Next {
        self.kernel.schedule(self.m.now)
    }

    /// Schedules and asserts `name` is chosen.
    pub fn expect_running(&mut self, name: &str) -> TaskId {
        let id = self.id(name);
        assert_eq!(self.schedule(), Next::Resume(id), "expected {name} to run");
        id
    }

    /// Makes the runnable task `name` the running one, whatever the
    /// priorities say (the test drives the order by hand).
    pub fn run(&mut self, name: &str) -> TaskId {
        let id = self.id(name);
        let kernel = &mut self.kernel;
        assert!(kernel.task(id).state == crate::task::TaskState::Runnable, "{name} is not runnable");
        if kernel.current == Some(id) {
            return id;
        }
        if let Some(current) = kernel.current.take() {
            let priority = kernel.task(current).priority;
            kernel.sched.enqueue_front(current, priority);
        }
        let priority = kernel.task(id).priority;
        kernel.sched.remove(id, priority);
        kernel.current = Some(id);
        id
    }

    /// Makes system call `call` as the running task.
    pub fn sys(&mut self, call: Syscall, args: [u64; 6]) -> Outcome {
        self.sys_number(call as u64, args)
    }

    /// Makes system call number `number` as the running task.
    pub fn sys_number(&mut self, number: u64, args: [u64; 6]) -> Outcome {
        let id = self.kernel.current().expect("a task runs");
        let mut frame = *self.kernel.frame(id);
        frame.rax = number;
        [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9] = args;
        self.kernel.save_frame(&frame);
        self.kernel.syscall(&mut self.m);
        if self.kernel.current() == Some(id) { self.result(id) } else { Outcome::Blocked }
    }

    /// The result `task` was woken with, asserting that it no longer blocks.
    pub fn woken(&self, task: TaskId) -> Outcome {
        let state = self.kernel.tasks()[task.index()].state;
        assert!(!self.kernel.tasks()[task.index()].is_blocked(), "task {} still blocks: {state:?}", task.index());
        self.result(task)
    }

    /// The result registers `task` holds now (after being woken).
    pub fn result(&self, task: TaskId) -> Outcome {
        let frame = self.kernel.frame(task);
        Outcome::Returned(frame.rax, [frame.rdi, frame.rsi, frame.rdx])
    }

    fn ipc_frame(&self, task: TaskId) -> Frame {
        self.kernel.tasks()[task.index()].ipc_buffer
    }

    /// Writes `bytes` as `task`'s outgoing message.
    pub fn write_message(&mut self, task: TaskId, bytes: &[u8]) {
        let frame = self.ipc_frame(task);
        self.m.page_mut(frame)[DATA_OFFSET..DATA_OFFSET + bytes.len()].copy_from_slice(bytes);
    }

    /// The first `len` bytes of `task`'s message area.
    pub fn message(&self, task: TaskId, len: usize) -> Vec<u8> {
        let frame = self.ipc_frame(task);
        self.m.page(frame)[DATA_OFFSET..DATA_OFFSET + len].to_vec()
    }

    /// Lists the capabilities `task` sends with its next message.
    pub fn send_caps(&mut self, task: TaskId, slots: &[u32]) {
        let frame = self.ipc_frame(task);
        self.m.write_u32(frame, header::SEND_COUNT, slots.len() as u32);
        for (index, slot) in slots.iter().enumerate() {
            self.m.write_u32(frame, header::SEND_SLOTS + 4 * index, *slot);
        }
    }

    /// Sets where `task` accepts capabilities.
    pub fn window(&mut self, task: TaskId, base: u32, len: u32) {
        let frame = self.ipc_frame(task);
        self.m.write_u32(frame, header::WINDOW_BASE, base);
        self.m.write_u32(frame, header::WINDOW_LEN, len);
    }

    /// The slots `task` received capabilities into on its last receive.
    pub fn received(&self, task: TaskId) -> Vec<u32> {
        let frame = self.ipc_frame(task);
        let count = self.m.read_u32(frame, header::RECEIVED_COUNT) as usize;
        (0..count).map(|index| self.m.read_u32(frame, header::RECEIVED_SLOTS + 4 * index)).collect()
    }
}
