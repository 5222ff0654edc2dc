//! Time: the TSC, calibrated once at boot against the PIT.
//!
//! QEMU starts the guest TSC at zero when the machine starts, so a TSC
//! reading converted to microseconds is the time since QEMU started the
//! machine, which is what the log stamps show.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;

/// PIT input clock in Hz.
const PIT_HZ: u64 = 1_193_182;
/// Calibration interval in milliseconds.
const CALIBRATION_MS: u64 = 10;

static TSC_KHZ: AtomicU64 = AtomicU64::new(0);

/// Microseconds per TSC tick in 24.40 fixed point: `micros` multiplies
/// instead of dividing (a 128-bit division is a library call, the slowest
/// step of every scheduling decision under TCG). With 40 fraction bits the
/// result is off by less than a microsecond after hours.
static MICROS_PER_TICK: AtomicU64 = AtomicU64::new(0);
const FRACTION_BITS: u32 = 40;

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads the counter (CR4.TSD is clear in ring 0).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Measures the TSC frequency over 10 ms of PIT channel 2.
pub fn calibrate() {
    let mut gate: Port<u8> = Port::new(0x61);
    let mut command: Port<u8> = Port::new(0x43);
    let mut channel2: Port<u8> = Port::new(0x42);
    let count = PIT_HZ * CALIBRATION_MS / 1000;
    // SAFETY: ports 0x42, 0x43 and 0x61 are the PIT's channel 2 and the
    // speaker gate, used by nothing else; this programs a one-shot count
    // with the speaker output off.
    let elapsed = unsafe {
        let speaker_off = (gate.read() & !0x02) | 0x01;
        gate.write(speaker_off & !0x01);
        command.write(0b1011_0000); // channel 2, low then high byte, mode 0
        channel2.write((count & 0xff) as u8);
        channel2.write((count >> 8) as u8);
        gate.write(speaker_off); // raising the gate starts the count
        let start = rdtsc();
        while gate.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
        rdtsc() - start
    };
    let khz = (elapsed / CALIBRATION_MS).max(1);
    TSC_KHZ.store(khz, Ordering::Relaxed);
    MICROS_PER_TICK.store(((1000u128 << FRACTION_BITS) / u128::from(khz)) as u64, Ordering::Relaxed);
}

/// TSC ticks per millisecond.
pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

/// Microseconds since the machine started (0 before calibration).
pub fn micros() -> u64 {
    let factor = MICROS_PER_TICK.load(Ordering::Relaxed);
    ((u128::from(rdtsc()) * u128::from(factor)) >> FRACTION_BITS) as u64
}
