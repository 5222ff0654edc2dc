//! Copying the firmware's ACPI tables for the servers at boot.

use core::cell::UnsafeCell;

use kernel::kernel::Kernel;

use crate::hardware::Hardware;

use acpi_tables::SNAPSHOT_MAX as SNAPSHOT_SIZE;

struct Scratch(UnsafeCell<[u8; SNAPSHOT_SIZE]>);

// SAFETY: used once, by the boot code on the one CPU, before any task runs.
unsafe impl Sync for Scratch {}

static SCRATCH: Scratch = Scratch(UnsafeCell::new([0; SNAPSHOT_SIZE]));

/// Copies the tables behind the RSDP at `rsdp` into a frame the policy can
/// grant (`acpi-tables`), and lets the kernel find the ECAM and remapping
/// unit ranges in them. Without tables the system still boots; grants that
/// need them are reported when installed.
pub fn snapshot(kernel: &mut Kernel, hardware: &mut Hardware, rsdp: u64) {
    if rsdp == 0 {
        defmt::warn!("no ACPI RSDP: servers get no ACPI tables");
        return;
    }
    // SAFETY: boot runs once on one CPU and this is the only use of the
    // scratch buffer, so the reference is unique.
    let out = unsafe { &mut *SCRATCH.0.get() };
    match acpi_tables::snapshot::build(&hardware.memory.firmware(), rsdp, out) {
        Ok(used) => {
            if kernel.set_acpi(hardware, &out[..used]).is_err() {
                defmt::warn!("no memory for the ACPI snapshot");
            } else {
                defmt::info!("ACPI tables copied: {=usize} bytes", used);
            }
            let snapshot = acpi_tables::SnapshotMemory::new(&out[..used]);
            if let Some(length) = snapshot.ok().and_then(|snapshot| snapshot.dsdt_left_out()) {
                defmt::warn!(
                    "the DSDT ({=u32} bytes) does not fit the ACPI snapshot ({=usize} bytes): host bridges other than bus 0's are not found",
                    length,
                    out.len()
                );
            }
        }
        Err(error) => defmt::warn!("ACPI tables unusable: {}", defmt::Debug2Format(&error)),
    }
}
