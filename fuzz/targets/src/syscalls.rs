//! Random system calls with random arguments on a simulated machine.
//!
//! The input first describes a boot image (tasks, their quotas and boot
//! capabilities, boot endpoints and notifications), then a sequence of
//! events: system calls by whichever task runs, the clock moving, faults,
//! interrupts, IPC-buffer contents. After every event the kernel must not
//! have panicked and [`Sim::check`] must hold; at the end every task that
//! can be ended is, and if all of them ended and no frame is pinned for
//! DMA, every frame must be free again.

use capabilities::abi::ipc::{DATA_OFFSET, NONBLOCK, header};
use capabilities::abi::{CSPACE_SLOTS, PAGE_SIZE, Syscall, layout, rights};
use capabilities::accounting::{MACHINE, MachineFigures, TaskFigures};
use capabilities::manifest::{BootCap, BootObject, ManifestHeader, TaskImage, VERSION};
use kernel::kernel::Next;
use kernel::phys::PhysMem;
use kernel::task::Fault;

use crate::image;
use crate::input::Input;
use crate::sim::Sim;

/// Most events one input drives.
const MAX_EVENTS: usize = 400;

/// Boot capability rights worth trying, besides raw masks.
const RIGHTS: [u32; 9] = [
    rights::SEND | rights::GRANT,
    rights::RECEIVE,
    rights::SEND | rights::RECEIVE | rights::GRANT | rights::MINT,
    rights::READ | rights::WRITE,
    rights::WATCH,
    rights::DMA | rights::IRQ,
    rights::ACK,
    rights::ACCOUNT,
    rights::ALL,
];

/// A boot capability drawn from `input`.
fn boot_cap(input: &mut Input<'_>) -> BootCap {
    let slot = match input.below(4) {
        0 => u16::from(input.u8()),
        _ => 8 + input.below(24) as u16,
    };
    let small = |input: &mut Input<'_>| input.below(5) as u16;
    let object = match input.below(11) {
        0 | 1 => BootObject::Endpoint(small(input)),
        2 => BootObject::Notification(small(input)),
        3 => BootObject::Task(small(input)),
        4 => BootObject::DeviceMemory {
            base: [0xfed9_0000, 0xfeb0_0000, 0x1000, 0x8000, !0xfff][input.below(5)],
            pages: [1, 2, 16, u32::MAX][input.below(4)],
        },
        5 => BootObject::IoPorts { base: [0x70, 0x3f8, 0xcf8, 0xfff0][input.below(4)], count: input.below(9) as u16 },
        6 => BootObject::Interrupt { gsi: input.below(26) as u8, level: input.bool() },
        7 => BootObject::Control,
        8 => BootObject::AcpiTables,
        9 => BootObject::Ecam(input.below(3) as u8),
        _ => BootObject::RemappingUnit(input.below(3) as u8),
    };
    let rights = match input.below(3) {
        0 => u32::from(input.u16()),
        _ => RIGHTS[input.below(RIGHTS.len())],
    };
    let badge = if input.bool() { u64::from(input.u8()) } else { 0 };
    BootCap { slot, object, rights, badge }
}

/// A task drawn from `input`, with the segments every image has.
fn task_image(index: usize, input: &mut Input<'_>) -> TaskImage {
    let caps = (0..input.below(7)).map(|_| boot_cap(input)).collect();
    TaskImage {
        name: ["t0", "t1", "t2", "t3"][index % 4].try_into().unwrap_or_default(),
        priority: input.below(4) as u8,
        entry: layout::IMAGE_BASE,
        stack_pages: 2,
        memory_pages: [24, 40, 64, 128][input.below(4)],
        object_quota: input.below(17) as u16,
        segments: image::segments(),
        caps,
        config: Default::default(),
    }
}

/// A boot image of up to four tasks drawn from `input`.
fn boot_image(input: &mut Input<'_>) -> Vec<u8> {
    let tasks: Vec<TaskImage> = (0..1 + input.below(4)).map(|index| task_image(index, input)).collect();
    let init_task = if input.below(4) == 0 { Some(input.below(tasks.len()) as u16) } else { None };
    let header = ManifestHeader {
        version: VERSION,
        task_count: tasks.len() as u16,
        init_task,
        endpoints: input.below(4) as u16,
        notifications: input.below(4) as u16,
    };
    image::build(&header, &tasks)
}

/// One system-call argument: mostly values the kernel treats specially.
fn argument(input: &mut Input<'_>) -> u64 {
    match input.below(16) {
        0 => 0,
        1 => input.below(8) as u64,
        2 => 8 + input.below(24) as u64,
        3 => u64::from(input.u8()),
        4 => 1 << input.below(64),
        5 => u64::from(input.u16()) & u64::from(rights::ALL),
        6 => [
            layout::USER_MAP_BASE + u64::from(input.u8()) * PAGE_SIZE,
            layout::IPC_BUFFER + DATA_OFFSET as u64,
            layout::BOOT_INFO,
            layout::IMAGE_BASE,
            layout::IMAGE_BASE + 0x1ff8,
            layout::STACK_TOP - 0x100,
            layout::USER_END - PAGE_SIZE,
            0xffff_8000_0000_0000,
        ][input.below(8)],
        7 => 1 << input.below(11),
        8 => u64::from(input.u16() % 4200),
        9 => u64::from(input.u8()) * 100,
        10 => input.u64(),
        11 => u64::from(input.u32()),
        12 => 32 + input.below(224) as u64,
        13 => NONBLOCK,
        14 => u64::MAX,
        _ => 0x70 + input.below(4) as u64,
    }
}

/// Writes the current task's IPC-buffer header: capabilities to send and
/// the window to receive them in.
fn write_ipc_header(sim: &mut Sim, input: &mut Input<'_>) {
    let Some(id) = sim.kernel.current() else { return };
    let frame = sim.kernel.tasks()[id.index()].ipc_buffer;
    let count = input.below(6) as u32;
    sim.machine.write_u32(frame, header::SEND_COUNT, count);
    for index in 0..4 {
        let slot = if input.bool() { 8 + input.below(24) as u32 } else { u32::from(input.u8()) };
        sim.machine.write_u32(frame, header::SEND_SLOTS + 4 * index, slot);
    }
    let (base, len) = match input.below(3) {
        0 => (0, 0),
        1 => (8 + input.below(24) as u32, input.below(6) as u32),
        _ => (input.u32(), input.u32()),
    };
    sim.machine.write_u32(frame, header::WINDOW_BASE, base);
    sim.machine.write_u32(frame, header::WINDOW_LEN, len);
}

/// What `Accounting` reported for `scope` must be what the kernel holds:
/// the allocator's free frames and the quotas' use, and capabilities no
/// more than the tasks' slots.
fn check_figures(sim: &mut Sim, scope: u64, results: [u64; 3]) {
    let free = sim.kernel.frames().free_frames() as u64;
    let tasks = sim.kernel.tasks();
    if scope == MACHINE {
        let figures = MachineFigures::from_registers(results);
        assert_eq!(figures.free_frames, free, "free frames misreported");
        assert!(figures.capabilities <= (tasks.len() * CSPACE_SLOTS as usize) as u64, "more capabilities than slots");
        return;
    }
    let task = &tasks[usize::try_from(scope).expect("a task index")];
    let figures = TaskFigures::from_registers(results);
    assert_eq!(figures.objects, u64::from(task.objects.used), "object-quota use misreported");
    assert_eq!(figures.memory_pages, u64::from(task.memory.used), "memory-quota use misreported");
    assert!(figures.capabilities <= u64::from(CSPACE_SLOTS), "more capabilities than a task has slots");
}

/// `kernel-syscalls`: boots the image the input describes and replays its
/// events.
pub fn syscalls(data: &[u8]) {
    let mut input = Input::new(data);
    let pages = [96, 256, 1024][input.below(3)];
    let image = boot_image(&mut input);
    let mut sim = Sim::new(pages);
    let Some(_) = sim.load(&image) else { panic!("the harness's own boot image did not load") };
    sim.check();
    let mut pins: u64 = 0;
    for _ in 0..MAX_EVENTS {
        if input.is_empty() {
            break;
        }
        match input.below(16) {
            0..=10 => {
                if sim.kernel.current().is_none() && !matches!(sim.schedule(), Next::Resume(_)) {
                    continue;
                }
                let number = match input.below(8) {
                    0 => u64::from(input.u8()),
                    _ => input.below(Syscall::ALL.len()) as u64,
                };
                let args = core::array::from_fn(|_| argument(&mut input));
                if let Some((rax, results)) = sim.syscall(number, args) {
                    assert!(
                        rax == 0 || capabilities::ErrorCode::from_code(rax).is_some(),
                        "system call {number} returned {rax}, which is no error code"
                    );
                    if rax == 0 && number == Syscall::DmaPin as u64 {
                        pins += 1;
                        assert!(results[2] >= 1, "a pin covers at least one page");
                    }
                    if rax == 0 && number == Syscall::DmaUnpin as u64 {
                        pins = pins.saturating_sub(1);
                    }
                    if rax == 0 && number == Syscall::Accounting as u64 {
                        check_figures(&mut sim, args[1], results);
                    }
                }
            }
            11 => {
                let step = u64::from(input.u16());
                sim.machine.now = sim.machine.now.saturating_add(step);
                sim.schedule();
            }
            12 => {
                if let Some(deadline) = sim.kernel.next_deadline() {
                    sim.machine.now = sim.machine.now.max(deadline);
                }
                sim.schedule();
            }
            13 => write_ipc_header(&mut sim, &mut input),
            14 => {
                let fault = Fault {
                    vector: input.u8() % 32,
                    error_code: u64::from(input.u8()),
                    address: argument(&mut input),
                    rip: layout::IMAGE_BASE,
                };
                sim.kernel.fault(&mut sim.machine, fault);
            }
            _ => {
                if input.bool() {
                    let vector = if input.bool() { 32 + input.below(64) as u8 } else { input.u8() };
                    sim.kernel.interrupt(&mut sim.machine, vector);
                } else {
                    sim.kernel.reap(&mut sim.machine);
                }
            }
        }
        sim.check();
    }
    if sim.wind_down() && pins == 0 {
        assert_eq!(
            sim.kernel.frames().free_frames(),
            sim.initial_free,
            "every task ended and was reaped, nothing is pinned, yet frames are missing"
        );
    }
}
