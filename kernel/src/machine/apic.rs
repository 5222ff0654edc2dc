//! The local APIC (timer, end of interrupt) and the IO APIC (routing of
//! legacy lines), both reached through the direct map's uncached window.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::memory::PHYS_OFFSET;
use crate::time;

const LOCAL_APIC: u64 = 0xfee0_0000;
const IO_APIC: u64 = 0xfec0_0000;

const ID: u64 = 0x20;
const TASK_PRIORITY: u64 = 0x80;
const EOI: u64 = 0xb0;
/// The in-service register: 256 bits, 32 in each of eight registers 16
/// bytes apart.
const IN_SERVICE: u64 = 0x100;
/// The interrupt-request register, laid out as the in-service register.
const REQUEST: u64 = 0x200;
const SPURIOUS: u64 = 0xf0;
const LVT_TIMER: u64 = 0x320;
const TIMER_INITIAL: u64 = 0x380;
const TIMER_CURRENT: u64 = 0x390;
const TIMER_DIVIDE: u64 = 0x3e0;

/// Vector of the local APIC timer.
pub const TIMER_VECTOR: u8 = 0x20;
/// Vector of spurious interrupts (never acknowledged).
pub const SPURIOUS_VECTOR: u8 = 0xff;

// The task priority lets the kernel's own vectors through.
const _: () = assert!(TIMER_VECTOR >> 4 > kernel::kernel::TASK_PRIORITY >> 4);
const _: () = assert!(SPURIOUS_VECTOR >> 4 > kernel::kernel::TASK_PRIORITY >> 4);
const _: () = assert!(kernel::kernel::FIRST_DEVICE_VECTOR >> 4 > kernel::kernel::TASK_PRIORITY >> 4);

const MASKED: u32 = 1 << 16;

/// Where the direct map shows the in-service bits of vectors 0-31.
pub const IN_SERVICE_0: u64 = PHYS_OFFSET + LOCAL_APIC + IN_SERVICE;
/// Where the direct map shows the end-of-interrupt register.
pub const EOI_ADDRESS: u64 = PHYS_OFFSET + LOCAL_APIC + EOI;

/// Timer ticks per millisecond (divide by 16), measured at boot.
static TIMER_KHZ: AtomicU64 = AtomicU64::new(0);

fn local_read(register: u64) -> u32 {
    // SAFETY: the direct map covers the local APIC page uncached (memory.rs
    // maps the device window); register offsets are from the SDM and aligned.
    unsafe { ((PHYS_OFFSET + LOCAL_APIC + register) as *const u32).read_volatile() }
}

fn local_write(register: u64, value: u32) {
    // SAFETY: as in `local_read`; only the kernel writes the local APIC.
    unsafe { ((PHYS_OFFSET + LOCAL_APIC + register) as *mut u32).write_volatile(value) }
}

fn io_write(register: u32, value: u32) {
    // SAFETY: the IO APIC's select (0x00) and window (0x10) registers are
    // in the uncached device window; only the kernel touches them, with
    // interrupts off, so the select/window pair is not interleaved.
    unsafe {
        ((PHYS_OFFSET + IO_APIC) as *mut u32).write_volatile(register);
        ((PHYS_OFFSET + IO_APIC + 0x10) as *mut u32).write_volatile(value);
    }
}

fn io_read(register: u32) -> u32 {
    // SAFETY: as in `io_write`.
    unsafe {
        ((PHYS_OFFSET + IO_APIC) as *mut u32).write_volatile(register);
        ((PHYS_OFFSET + IO_APIC + 0x10) as *const u32).read_volatile()
    }
}

/// Enables the local APIC with the task priority that holds off vectors
/// below 32 (`kernel::kernel::TASK_PRIORITY`), masks every IO APIC input,
/// and measures the timer's rate against the TSC.
pub fn init() {
    local_write(TASK_PRIORITY, u32::from(kernel::kernel::TASK_PRIORITY));
    local_write(SPURIOUS, (1 << 8) | u32::from(SPURIOUS_VECTOR));
    let inputs = (io_read(0x01) >> 16) & 0xff;
    for gsi in 0..=inputs {
        io_write(0x10 + 2 * gsi, MASKED);
    }
    local_write(TIMER_DIVIDE, 0b0011); // divide by 16
    local_write(LVT_TIMER, MASKED | u32::from(TIMER_VECTOR));
    local_write(TIMER_INITIAL, u32::MAX);
    let start = time::rdtsc();
    let wait = time::tsc_khz() * 5; // 5 ms
    while time::rdtsc() - start < wait {
        core::hint::spin_loop();
    }
    let elapsed = u32::MAX - local_read(TIMER_CURRENT);
    local_write(TIMER_INITIAL, 0);
    local_write(LVT_TIMER, u32::from(TIMER_VECTOR)); // one-shot, unmasked
    TIMER_KHZ.store(u64::from(elapsed / 5).max(1), Ordering::Relaxed);
}

/// Timer ticks per millisecond.
pub fn timer_khz() -> u64 {
    TIMER_KHZ.load(Ordering::Relaxed)
}

/// This CPU's local APIC id.
pub fn id() -> u8 {
    (local_read(ID) >> 24) as u8
}

/// Whether the local APIC has accepted `vector` from a device or an IPI
/// and not yet seen its end of interrupt: for a vector below 32 (which the
/// kernel never hands to devices), whether it came from a device rather
/// than from the CPU's exception of that number.
pub fn in_service(vector: u8) -> bool {
    let register = IN_SERVICE + 0x10 * u64::from(vector / 32);
    local_read(register) & (1 << (vector % 32)) != 0
}

/// The highest vector the local APIC has in service, if any: the one whose
/// delivery the CPU is in the middle of, when a fault interrupted it.
pub fn highest_in_service() -> Option<u8> {
    (0..8u8).rev().find_map(|register| {
        let bits = local_read(IN_SERVICE + 0x10 * u64::from(register));
        (bits != 0).then(|| register * 32 + (31 - bits.leading_zeros() as u8))
    })
}

/// The vectors below 32 on which messages wait, held off by the task
/// priority (bit `n` for vector `n`).
pub fn held_exception_vectors() -> u32 {
    local_read(REQUEST)
}

/// Acknowledges the interrupt being handled.
pub fn end_of_interrupt() {
    local_write(EOI, 0);
}

/// The absolute deadline (µs) the timer is armed for; `u64::MAX` when stopped.
static ARMED: AtomicU64 = AtomicU64::new(u64::MAX);

/// Makes the timer fire at `deadline` (µs since start; `None` stops it).
/// Register writes are skipped when it is already set so: on the IPC path
/// the deadline rarely changes, and each APIC write is costly (a VM exit
/// under virtualisation, a device-model call under TCG).
pub fn arm_timer(deadline: Option<u64>, now: u64) {
    let wanted = deadline.unwrap_or(u64::MAX);
    if ARMED.swap(wanted, Ordering::Relaxed) == wanted && wanted > now {
        return;
    }
    match deadline {
        None => local_write(TIMER_INITIAL, 0),
        Some(deadline) => {
            let micros = deadline.saturating_sub(now);
            let ticks = (micros.saturating_mul(timer_khz()) / 1000).clamp(1, u64::from(u32::MAX));
            local_write(TIMER_INITIAL, ticks as u32);
        }
    }
}

/// Sends IO APIC input `gsi` to `vector` on this CPU, masked.
pub fn route(gsi: u8, vector: u8, level: bool) {
    let trigger = if level { (1 << 15) | (1 << 13) } else { 0 }; // level, active low
    io_write(0x11 + 2 * u32::from(gsi), u32::from(id()) << 24);
    io_write(0x10 + 2 * u32::from(gsi), MASKED | trigger | u32::from(vector));
}

/// Sends IO APIC input `gsi` through interrupt-remapping entry `handle`:
/// the redirection entry in remappable format (VT-d 5.1.5.1: handle bits
/// 14:0 in bits 63:49, format bit 48, handle bit 15 in bit 11; the vector
/// and trigger mode as the entry has them). The input is masked while the
/// two halves change and keeps its mask state after.
pub fn route_remapped(gsi: u8, vector: u8, level: bool, handle: u16) {
    let register = 0x10 + 2 * u32::from(gsi);
    let entry = io_read(register);
    io_write(register, entry | MASKED);
    let trigger = if level { (1 << 15) | (1 << 13) } else { 0 }; // level, active low
    io_write(register + 1, u32::from(handle & 0x7fff) << 17 | 1 << 16);
    io_write(register, (entry & MASKED) | trigger | u32::from(handle >> 15) << 11 | u32::from(vector));
}

/// Masks or unmasks IO APIC input `gsi`.
pub fn mask(gsi: u8, masked: bool) {
    let register = 0x10 + 2 * u32::from(gsi);
    let entry = io_read(register);
    io_write(register, if masked { entry | MASKED } else { entry & !MASKED });
}
