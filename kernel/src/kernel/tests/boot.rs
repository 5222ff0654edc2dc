//! Loading tasks from the boot image, logging, and how the system ends.

use capabilities::ErrorCode;
use capabilities::abi::{PAGE_SIZE, Syscall, layout};

use super::sim::{MEMORY_PAGES, Outcome, RESERVED_PAGES, Sim, task};
use crate::kernel::{Next, STATUS_INIT_KILLED};
use crate::paging::{self, flags};
use crate::task::Fault;
use crate::usermem;

#[test]
fn tasks_get_their_image_stack_ipc_buffer_and_the_kernel_half() {
    let mut sim = Sim::boot(&[task("one", 1, &[])], None, 0, 0);
    let id = sim.expect_running("one");
    let root = sim.kernel.root(id);
    let read = |virt: u64, len: usize| {
        let mut bytes = vec![0u8; len];
        usermem::copy_from_user(&sim.m, root, virt, &mut bytes).map(|()| bytes)
    };
    assert_eq!(read(0x40_0000, 6).expect("code"), b"CODE!\0");
    assert_eq!(read(0x40_1000, 4).expect("data"), b"DAT\0");
    assert_eq!(read(0x40_2fff, 1).expect("bss end"), [0]);
    assert!(read(layout::STACK_TOP - 2 * PAGE_SIZE, 8).is_ok());
    assert!(read(layout::STACK_TOP - 3 * PAGE_SIZE, 8).is_err(), "guard page below the stack");
    assert!(read(layout::IPC_BUFFER, 8).is_ok());
    use crate::phys::PhysMem;
    assert_eq!(sim.m.mem.read_u64(root, 511 * 8), 0xabc0_0003, "kernel half is shared");
    let code = paging::translate(&sim.m, root, 0x40_0000).expect("mapped");
    assert_eq!(code.flags & (flags::WRITABLE | flags::NO_EXECUTE), 0, "code is read-only, executable");
    let data = paging::translate(&sim.m, root, 0x40_1000).expect("mapped");
    assert_eq!(data.flags & (flags::WRITABLE | flags::NO_EXECUTE), flags::WRITABLE | flags::NO_EXECUTE);
    let info = paging::translate(&sim.m, root, layout::BOOT_INFO).expect("boot information mapped");
    assert_eq!(info.flags & flags::WRITABLE, 0, "boot information is read-only");
    assert_eq!(read(layout::BOOT_INFO, 4).expect("readable"), [0; 4], "an empty configuration");
    // 3 image pages, 2 stack, the IPC buffer and the boot-information page,
    // the root, one level-3 and one level-2 table, and a level-1 table each
    // for the image, the stack and the IPC buffer (they lie in different
    // 2 MiB ranges; the boot-information page shares the IPC buffer's).
    assert_eq!(sim.kernel.tasks()[0].memory.used, 3 + 2 + 2 + 1 + 2 + 3);
}

#[test]
fn higher_priority_runs_first_and_the_rest_in_order() {
    let mut sim = Sim::boot(&[task("low", 1, &[]), task("high", 5, &[]), task("low2", 1, &[])], None, 0, 0);
    let mut order = vec![];
    while let Next::Resume(id) = sim.schedule() {
        order.push(sim.kernel.tasks()[id.index()].name.to_string());
        assert_eq!(sim.sys(Syscall::Exit, [0; 6]), Outcome::Blocked);
    }
    assert_eq!(order, ["high", "low", "low2"]);
    assert_eq!(sim.schedule(), Next::Shutdown(0));
}

#[test]
fn log_write_tags_the_frame_and_checks_the_buffer() {
    let mut sim = Sim::boot(&[task("logger", 1, &[])], None, 0, 0);
    sim.schedule();
    assert_eq!(sim.sys(Syscall::LogWrite, [0x40_0000, 5, 0, 0, 0, 0]).ok(), [0; 3]);
    assert_eq!(sim.m.records, [(1, b"CODE!".to_vec())]);
    for address in [0, 0xffff_ffff_8000_0000, u64::MAX] {
        assert_eq!(sim.sys(Syscall::LogWrite, [address, 5, 0, 0, 0, 0]).error(), ErrorCode::BadAddress);
    }
    assert_eq!(sim.sys(Syscall::LogWrite, [0x40_0000, 1 << 40, 0, 0, 0, 0]).error(), ErrorCode::TooLarge);
    assert_eq!(sim.sys_number(999, [0; 6]).error(), ErrorCode::NoSuchCall);
    assert_eq!(sim.sys_number(u64::MAX, [u64::MAX; 6]).error(), ErrorCode::NoSuchCall);
    assert_eq!(sim.m.records.len(), 1, "failed calls log nothing");
}

#[test]
fn a_fault_kills_only_that_task_and_its_memory_comes_back() {
    let mut sim = Sim::boot(&[task("faulter", 5, &[]), task("next", 1, &[])], None, 0, 0);
    let free_with_tasks = sim.kernel.frames().free_frames();
    let faulter_pages = sim.kernel.tasks()[0].memory.used as usize;
    sim.expect_running("faulter");
    sim.kernel.fault(&mut sim.m, Fault { vector: 14, error_code: 4, address: 0, rip: 0x40_0000 });
    sim.expect_running("next");
    sim.kernel.reap(&mut sim.m);
    assert_eq!(sim.kernel.frames().free_frames(), free_with_tasks + faulter_pages);
    assert_eq!(sim.kernel.tasks()[0].memory.used, 0);
    sim.sys(Syscall::Exit, [0; 6]);
    assert_eq!(sim.schedule(), Next::Shutdown(1), "a killed task makes the run fail");
}

#[test]
fn a_task_whose_quota_is_too_small_is_skipped_and_leaks_nothing() {
    let mut tiny = task("tiny", 1, &[]);
    tiny.memory_pages = 8;
    let mut sim = Sim::boot(&[tiny, task("fine", 1, &[])], None, 0, 0);
    assert_eq!(sim.kernel.tasks().len(), 1);
    assert_eq!(sim.kernel.tasks()[0].name.as_str(), "fine");
    sim.schedule();
    sim.sys(Syscall::Exit, [0; 6]);
    sim.kernel.reap(&mut sim.m);
    assert_eq!(sim.kernel.frames().free_frames(), MEMORY_PAGES - 1 - RESERVED_PAGES, "every page returned");
}

#[test]
fn the_init_task_ends_the_system_with_its_status() {
    let mut sim = Sim::boot(&[task("server", 1, &[]), task("init", 5, &[])], Some(1), 0, 0);
    sim.expect_running("init");
    sim.sys(Syscall::Exit, [7, 0, 0, 0, 0, 0]);
    assert_eq!(sim.schedule(), Next::Shutdown(7), "init's code even though a task still runs");

    let mut sim = Sim::boot(&[task("init", 5, &[])], Some(0), 0, 0);
    sim.schedule();
    sim.kernel.fault(&mut sim.m, Fault { vector: 6, error_code: 0, address: 0, rip: 0x40_0000 });
    assert_eq!(sim.schedule(), Next::Shutdown(STATUS_INIT_KILLED));
}

#[test]
fn log_write_from_device_memory_is_a_bad_address_not_a_kernel_panic() {
    use capabilities::abi::{rights, slots};
    use capabilities::manifest::BootObject;
    // A BAR beyond the machine's RAM, and one the policy placed over RAM:
    // user copies reach neither, only RAM the kernel manages.
    let bar = super::sim::cap(8, BootObject::DeviceMemory { base: 0xfeb0_0000, pages: 1 }, rights::READ, 0);
    let over_ram = super::sim::cap(9, BootObject::DeviceMemory { base: 0x20_0000, pages: 1 }, rights::READ, 0);
    let mut sim = Sim::boot(&[task("driver", 1, &[bar, over_ram])], None, 0, 0);
    sim.schedule();
    let space = u64::from(slots::SELF_SPACE);
    sim.sys(Syscall::Map, [space, 8, 0x2000_0000, 0, 0, 0]).ok();
    sim.sys(Syscall::Map, [space, 9, 0x2000_1000, 0, 0, 0]).ok();
    for address in [0x2000_0000, 0x2000_1000, 0x2000_0ff0] {
        assert_eq!(sim.sys(Syscall::LogWrite, [address, 32, 0, 0, 0, 0]).error(), ErrorCode::BadAddress);
    }
    assert!(sim.m.records.is_empty());
}
