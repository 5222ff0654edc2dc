//! The bootable kernel: the x86-64 machine layer around the kernel logic.
//!
//! This binary is the only part of the system that runs in ring 0. Its
//! modules are thin: boot and CPU set-up, entry and exit paths, the console,
//! the stacks, and the [`kernel::kernel::Machine`] implementation (`hardware`).
//! Every decision is made by the `kernel` library.
#![no_std]
#![no_main]
// Unsafe code is allowed here: the machine layer is ring-0 glue: CPU tables, MSRs, port I/O, the direct map.
#![allow(unsafe_code)]

extern crate bare_runtime;

mod acpi;
mod apic;
mod boot;
mod console;
mod cpu;
mod entry;
mod fpu;
mod gdt;
mod hardware;
mod idt;
mod integrity;
mod kernel_space;
mod logger;
mod memory;
mod panic;
mod qemu_exit;
mod serial;
mod stacks;
mod time;

use kernel::bootinfo::BootInfo;
use kernel::image::BootImage;
use kernel::kernel::Kernel;

/// The kernel logic and the one [`hardware::Hardware`] it works through.
pub struct System {
    /// The kernel state.
    pub kernel: Kernel,
    /// Its view of memory and the console.
    pub hardware: hardware::Hardware,
}

/// One CPU runs the kernel with interrupts off, so the lock is never
/// contended; it makes the state a safe `static` and the hardware handle
/// unique.
static SYSTEM: spin::Mutex<System> =
    spin::Mutex::new(System { kernel: Kernel::new(), hardware: hardware::Hardware::new() });

/// Rust entry point, called by the boot code in 64-bit mode on the boot
/// stack with the physical address of `hvm_start_info`.
#[unsafe(no_mangle)]
extern "C" fn kernel_main(start_info: u64) -> ! {
    serial::init();
    time::calibrate();
    let features = cpu::init();
    let selectors = gdt::init();
    idt::init();
    entry::init_syscalls(selectors);
    defmt::info!("kernel started: TSC {=u64} kHz, global pages {=bool}", time::tsc_khz(), features.global_pages);

    let info = match BootInfo::read(&memory::BootWindow, start_info) {
        Ok(info) => info,
        Err(error) => panic!("hvm_start_info at {start_info:#x} unusable: {error:?}"),
    };
    for region in &info.regions {
        defmt::debug!("memory {=u64:#x}..{=u64:#x} {}", region.start, region.start + region.size, region.kind);
    }
    defmt::info!("{=u64} MiB of RAM, ACPI RSDP at {=u64:#x}", info.ram_bytes() >> 20, info.rsdp);
    let Some(module) = info.module else {
        panic!("no boot image: start QEMU with -initrd <image> (cargo xtask run does)");
    };

    let mut system = SYSTEM.lock();
    let System { kernel, hardware } = &mut *system;
    kernel_space::init(kernel, &mut hardware.memory, &info, module, features);
    integrity::record();
    acpi::snapshot(kernel, hardware, info.rsdp);
    apic::init();
    defmt::info!("local APIC {=u8}: timer {=u64} kHz", apic::id(), apic::timer_khz());
    let image = match BootImage::parse(memory::module_bytes(module)) {
        Ok(image) => image,
        Err(error) => panic!("boot image unusable: {error:?}"),
    };
    match kernel.load(hardware, &image) {
        Ok(tasks) => defmt::info!("{=usize} tasks loaded, {=usize} KiB free", tasks, kernel.frames().free_frames() * 4),
        Err(error) => panic!("boot image unusable: {error:?}"),
    }
    drop(system);
    entry::run_next()
}
