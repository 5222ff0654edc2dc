//! Host tests of task loading, system calls, faults and shutdown.

use super::*;
use crate::testing::{TestMemory, TestTables};
use capabilities::manifest::{MAGIC, ManifestHeader, Segment, SegmentFlags, VERSION};

const MEMORY_PAGES: usize = 512;

struct TestMachine {
    mem: TestMemory,
    records: std::vec::Vec<(u8, std::vec::Vec<u8>)>,
}

impl PhysMem for TestMachine {
    fn page(&self, frame: Frame) -> &[u8; PAGE] {
        self.mem.page(frame)
    }

    fn page_mut(&mut self, frame: Frame) -> &mut [u8; PAGE] {
        self.mem.page_mut(frame)
    }
}

impl Machine for TestMachine {
    fn log_record(&mut self, tag: u8, payload: &[u8]) {
        self.records.push((tag, payload.to_vec()));
    }
}

fn spec(name: &str, priority: u8, memory_pages: u32) -> TaskImage {
    TaskImage {
        name: name.try_into().expect("short name"),
        priority,
        entry: 0x40_0000,
        stack_pages: 2,
        memory_pages,
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
    }
}

fn image(tasks: &[TaskImage], init_task: Option<u16>) -> std::vec::Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    let header = ManifestHeader { version: VERSION, task_count: tasks.len() as u16, init_task };
    bytes.extend(postcard::to_stdvec(&header).expect("encodes"));
    for task in tasks {
        bytes.extend(postcard::to_stdvec(task).expect("encodes"));
    }
    bytes.resize(0x1000, 0);
    bytes.extend(b"CODE!DAT");
    bytes
}

/// A kernel with every frame above the first 16 free and a kernel root
/// whose upper half maps one marker entry.
fn boot(tasks: &[TaskImage], init_task: Option<u16>) -> (Box<Kernel>, TestMachine) {
    let mut m = TestMachine { mem: TestMemory::new(MEMORY_PAGES), records: vec![] };
    let mut kernel = Box::new(Kernel::new());
    let mut tables = TestTables::new(&mut m.mem, 1);
    let root = tables.alloc_zeroed(&mut m.mem);
    m.mem.write_u64(root, 511 * 8, 0xabc0_0003);
    kernel.frames().add_free(16 * PAGE as u64, (MEMORY_PAGES - 1) as u64 * PAGE as u64);
    kernel.set_kernel_space(root, true);
    let bytes = image(tasks, init_task);
    let image = BootImage::parse(&bytes).expect("valid image");
    kernel.load(&mut m, &image).expect("valid tasks");
    (kernel, m)
}

fn call(kernel: &mut Kernel, m: &mut TestMachine, number: u64, args: [u64; 2]) -> u64 {
    let id = kernel.current().expect("a task runs");
    let mut frame = *kernel.frame(id);
    frame.rax = number;
    frame.rdi = args[0];
    frame.rsi = args[1];
    kernel.save_frame(&frame);
    kernel.syscall(m);
    kernel.current().map_or(0, |id| kernel.frame(id).rax)
}

#[test]
fn tasks_get_their_image_stack_ipc_buffer_and_the_kernel_half() {
    let (mut kernel, m) = boot(&[spec("one", 1, 64)], None);
    assert_eq!(kernel.schedule(), Next::Resume(TaskId::new(0)));
    let root = kernel.root(TaskId::new(0));
    let read = |virt: u64, len: usize| {
        let mut bytes = vec![0u8; len];
        usermem::copy_from_user(&m, root, virt, &mut bytes).map(|()| bytes)
    };
    assert_eq!(read(0x40_0000, 6).expect("code"), b"CODE!\0");
    assert_eq!(read(0x40_1000, 4).expect("data"), b"DAT\0");
    assert_eq!(read(0x40_2fff, 1).expect("bss end"), [0]);
    assert!(read(layout::STACK_TOP - 2 * PAGE_SIZE, 8).is_ok());
    assert!(read(layout::STACK_TOP - 3 * PAGE_SIZE, 8).is_err(), "guard page below the stack");
    assert!(read(layout::IPC_BUFFER, 8).is_ok());
    assert_eq!(m.mem.read_u64(root, 511 * 8), 0xabc0_0003, "kernel half is shared");
    let code = paging::translate(&m, root, 0x40_0000).expect("mapped");
    assert_eq!(code.flags & (flags::WRITABLE | flags::NO_EXECUTE), 0, "code is read-only, executable");
    let data = paging::translate(&m, root, 0x40_1000).expect("mapped");
    assert_eq!(data.flags & (flags::WRITABLE | flags::NO_EXECUTE), flags::WRITABLE | flags::NO_EXECUTE);
    // 3 image pages, 2 stack, 1 IPC buffer, the root, one level-3 and one
    // level-2 table, and a level-1 table each for the image, the stack and
    // the IPC buffer (they lie in different 2 MiB ranges).
    assert_eq!(kernel.tasks()[0].memory.used, 3 + 2 + 1 + 1 + 2 + 3);
}

#[test]
fn higher_priority_runs_first_and_the_rest_in_order() {
    let (mut kernel, mut m) = boot(&[spec("low", 1, 64), spec("high", 5, 64), spec("low2", 1, 64)], None);
    let mut order = vec![];
    while let Next::Resume(id) = kernel.schedule() {
        order.push(kernel.tasks()[id.index()].name.to_string());
        call(&mut kernel, &mut m, Syscall::Exit as u64, [0, 0]);
    }
    assert_eq!(order, ["high", "low", "low2"]);
    assert_eq!(kernel.schedule(), Next::Shutdown(0));
}

#[test]
fn log_write_tags_the_frame_and_checks_the_buffer() {
    let (mut kernel, mut m) = boot(&[spec("logger", 1, 64)], None);
    kernel.schedule();
    assert_eq!(call(&mut kernel, &mut m, Syscall::LogWrite as u64, [0x40_0000, 5]), 0);
    assert_eq!(m.records, [(1, b"CODE!".to_vec())]);
    let bad_address = u64::from(ErrorCode::BadAddress.code());
    assert_eq!(call(&mut kernel, &mut m, Syscall::LogWrite as u64, [0, 5]), bad_address);
    assert_eq!(call(&mut kernel, &mut m, Syscall::LogWrite as u64, [0xffff_ffff_8000_0000, 5]), bad_address);
    assert_eq!(call(&mut kernel, &mut m, Syscall::LogWrite as u64, [u64::MAX, 5]), bad_address);
    let too_large = u64::from(ErrorCode::TooLarge.code());
    assert_eq!(call(&mut kernel, &mut m, Syscall::LogWrite as u64, [0x40_0000, 1 << 40]), too_large);
    let no_such = u64::from(ErrorCode::NoSuchCall.code());
    assert_eq!(call(&mut kernel, &mut m, 999, [0, 0]), no_such);
    assert_eq!(m.records.len(), 1, "failed calls log nothing");
}

#[test]
fn a_fault_kills_only_that_task_and_its_memory_comes_back() {
    let (mut kernel, mut m) = boot(&[spec("faulter", 5, 64), spec("next", 1, 64)], None);
    let free_with_tasks = kernel.frames().free_frames();
    let faulter_pages = kernel.tasks()[0].memory.used as usize;
    assert_eq!(kernel.schedule(), Next::Resume(TaskId::new(0)));
    kernel.fault(Fault { vector: 14, error_code: 4, address: 0, rip: 0x40_0000 });
    assert_eq!(kernel.schedule(), Next::Resume(TaskId::new(1)), "the next task runs");
    kernel.reap(&mut m);
    assert_eq!(kernel.frames().free_frames(), free_with_tasks + faulter_pages);
    assert_eq!(kernel.tasks()[0].memory.used, 0);
    call(&mut kernel, &mut m, Syscall::Exit as u64, [0, 0]);
    assert_eq!(kernel.schedule(), Next::Shutdown(1), "a killed task makes the run fail");
}

#[test]
fn a_task_whose_quota_is_too_small_is_skipped_and_leaks_nothing() {
    let (mut kernel, mut m) = boot(&[spec("tiny", 1, 8), spec("fine", 1, 64)], None);
    assert_eq!(kernel.tasks().len(), 1);
    assert_eq!(kernel.tasks()[0].name.as_str(), "fine");
    let used = kernel.tasks()[0].memory.used as usize;
    kernel.schedule();
    call(&mut kernel, &mut m, Syscall::Exit as u64, [0, 0]);
    kernel.reap(&mut m);
    assert_eq!(kernel.frames().free_frames(), MEMORY_PAGES - 1 - 16, "all {used} pages returned");
}

#[test]
fn the_init_task_ends_the_system_with_its_status() {
    let (mut kernel, mut m) = boot(&[spec("server", 1, 64), spec("init", 5, 64)], Some(1));
    assert_eq!(kernel.schedule(), Next::Resume(TaskId::new(1)));
    call(&mut kernel, &mut m, Syscall::Exit as u64, [7, 0]);
    assert_eq!(kernel.schedule(), Next::Shutdown(7), "init's code even though a task still runs");

    let (mut kernel, _m) = boot(&[spec("init", 5, 64)], Some(0));
    kernel.schedule();
    kernel.fault(Fault { vector: 6, error_code: 0, address: 0, rip: 0x40_0000 });
    assert_eq!(kernel.schedule(), Next::Shutdown(STATUS_INIT_KILLED));
}
