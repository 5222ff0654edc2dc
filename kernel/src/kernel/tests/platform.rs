//! What the kernel knows of the machine: device memory may cover neither
//! RAM nor the devices the kernel and the boot grants hold.

use capabilities::ErrorCode;
use capabilities::abi::{Syscall, rights};
use capabilities::manifest::BootObject;

use super::sim::{Sim, cap, task};

const GIB: u64 = 1 << 30;

fn device_task() -> Sim {
    let caps = [
        cap(8, BootObject::Control, rights::DEVICE, 0),
        cap(9, BootObject::DeviceMemory { base: 0xfeb0_0000, pages: 4 }, rights::READ, 0),
    ];
    let mut sim = Sim::boot(&[task("pci", 1, &caps)], None, 0, 0);
    sim.schedule();
    sim
}

/// `DeviceMemoryCreate` of `pages` at `base` into slot 20 (deleted again).
fn create(sim: &mut Sim, base: u64, pages: u64) -> Result<(), ErrorCode> {
    let outcome = sim.sys(Syscall::DeviceMemoryCreate, [8, 20, base, pages, 0, 0]);
    match outcome {
        super::sim::Outcome::Returned(0, _) => {
            sim.sys(Syscall::CapDelete, [20, 0, 0, 0, 0, 0]).ok();
            Ok(())
        }
        other => Err(other.error()),
    }
}

#[test]
fn device_memory_never_covers_any_ram_range_of_a_long_memory_map() {
    let mut sim = device_task();
    // A fragmented map: 40 RAM ranges of 1 GiB with 1 GiB holes between.
    let ram: Vec<(u64, u64)> = (0..40).map(|n| (8 * GIB + 2 * n * GIB, 9 * GIB + 2 * n * GIB)).collect();
    sim.kernel.set_ram(&ram).expect("40 ranges fit");
    for (index, &(start, end)) in ram.iter().enumerate() {
        assert_eq!(create(&mut sim, start, 1), Err(ErrorCode::PermissionDenied), "RAM range {index}");
        assert_eq!(create(&mut sim, end - 0x1000, 2), Err(ErrorCode::PermissionDenied), "the end of range {index}");
        assert_eq!(create(&mut sim, end, 1), Ok(()), "the hole after range {index}");
    }
}

#[test]
fn device_memory_never_covers_low_memory_the_interrupt_window_or_a_boot_grant() {
    let mut sim = device_task();
    sim.kernel.set_ram(&[(0x10_0000, 0x800_0000)]).expect("one range fits");
    let refused = [(0, 1), (0xf_f000, 1), (0x400_0000, 1), (0xfec0_0000, 1), (0xfee0_0000, 1), (0xfeb0_3000, 1)];
    for (base, pages) in refused {
        assert_eq!(create(&mut sim, base, pages), Err(ErrorCode::PermissionDenied), "{base:#x}");
    }
    for (base, pages) in [(0xfe00_0000, 16), (0xfeb0_4000, 1), (0x1_0000_0000, 1)] {
        assert_eq!(create(&mut sim, base, pages), Ok(()), "{base:#x}");
    }
    for (base, pages) in [(0x1001, 1), (0xfe00_0000, 0), (u64::MAX - 0xfff, 2)] {
        assert_eq!(create(&mut sim, base, pages), Err(ErrorCode::InvalidArgument), "{base:#x}");
    }
}

#[test]
fn a_memory_map_longer_than_the_kernel_keeps_is_refused_whole() {
    let mut sim = device_task();
    let ram: Vec<(u64, u64)> = (0..65).map(|n| (n * 2 * GIB, n * 2 * GIB + GIB)).collect();
    assert!(sim.kernel.set_ram(&ram).is_err(), "no range may be dropped");
}
