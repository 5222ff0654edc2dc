//! The system-call sequences that crashed or fooled the kernel (issue 23).
//!
//! Each case here made the kernel panic, hang with interrupts off, or let
//! a revoked capability keep working before its fix; now each must get an
//! error code and leave the kernel serving everyone else.

use capabilities::ErrorCode;
use userlib::cap::{Cap, own};
use userlib::ipc::Buffer;
use userlib::mmio::Mapping;
use userlib::testkit::{self, Outcome};
use userlib::{check, check_eq, check_ok, syscall};

use crate::{BAR_VIRT, PCI, STORM_DEVICE, WINDOW, claim, release_group, wait_unowned};

/// A `LogWrite` from the device's registers: the kernel used to follow the
/// mapping to a frame that is no RAM and panic.
pub fn log_write_from_device_memory_is_a_bad_address(buffer: &mut Buffer) -> Outcome {
    check_ok!(claim(buffer, STORM_DEVICE));
    let granted = match driver_kit::acquire(PCI.get(), buffer, STORM_DEVICE, WINDOW) {
        Ok(granted) => granted,
        Err(refused) => {
            defmt::error!("  acquire refused ({}): {=str}", refused.code, refused.reason.as_str());
            return Err(testkit::Failure { file: file!(), line: line!() });
        }
    };
    let Some(bar) = granted.bar(0) else {
        check!(false, "BAR0");
        return Ok(());
    };
    let registers = check_ok!(Mapping::map(own::SPACE, Cap::<userlib::cap::DeviceMemory>::at(bar), BAR_VIRT, false));
    for (offset, len) in [(0, 4), (0x80, 64), (0xff0, 32)] {
        let written = syscall::log_write_raw(BAR_VIRT + offset, len);
        check_eq!(written, Err(ErrorCode::BadAddress), "no log frame from device registers");
    }
    check_eq!(registers.read32(0), Some(0x0100_00ed), "the device is still there, and so is the kernel");
    check_ok!(registers.unmap());
    check!(driver_kit::release(PCI.get(), buffer, STORM_DEVICE).is_ok());
    check_ok!(release_group(buffer));
    check!(wait_unowned(buffer, STORM_DEVICE));
    Ok(())
}
