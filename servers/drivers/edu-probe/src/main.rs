//! A driver that probes its QEMU edu device without DMA and checks its identification register.
//!
//! It takes the first device bound to it, maps BAR0 through the device
//! capability the PCI server granted, reads the identification register
//! (offset 0, a 4-byte access, as edu requires below 0x80), and holds the
//! device. A wrong value ends the task with code 2, which gives the
//! device back.
#![no_std]
#![no_main]

use userlib::cap::{Cap, DeviceMemory, own};
use userlib::ipc::Buffer;
use userlib::mmio::Mapping;

userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::entry!(main);

/// First slot of the window the grant arrives in.
const WINDOW: u32 = 64;
/// Slot of the notification it idles on.
const IDLE: u32 = 127;
/// Where BAR0 is mapped.
const BAR0_VIRT: u64 = 0x2000_0000;

fn main() -> u64 {
    let Some(mut buffer) = Buffer::take() else { return 1 };
    let granted = match pci_api::client::probe(PCI.get(), &mut buffer, 0, WINDOW) {
        Ok(granted) => granted,
        Err(refused) => {
            defmt::error!("edu-probe: probe refused ({}): {=str}", refused.code, refused.reason.as_str());
            return 1;
        }
    };
    let device = granted.grant.device;
    let Some(bar) = granted.bar(0) else {
        defmt::error!("edu-probe: {} came without a BAR", device);
        return 1;
    };
    let registers = match Mapping::map(own::SPACE, Cap::<DeviceMemory>::at(bar), BAR0_VIRT, true) {
        Ok(registers) => registers,
        Err(code) => {
            defmt::error!("edu-probe: BAR0 of {} cannot be mapped: {}", device, code);
            return 1;
        }
    };
    match registers.read32(edu::reg::IDENTIFICATION) {
        Some(edu::IDENTIFICATION) => {
            defmt::info!("edu-probe: {} identification {=u32:#010x}", device, edu::IDENTIFICATION)
        }
        other => {
            defmt::error!(
                "edu-probe: {} identification reads {}, not {=u32:#010x}",
                device,
                other,
                edu::IDENTIFICATION
            );
            return 2;
        }
    }
    userlib::objects::hold_forever(IDLE)
}
