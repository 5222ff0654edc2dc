//! The stub driver: takes every device bound to it and holds it, doing nothing.
//!
//! Like Linux's pci-stub, it keeps devices away from other drivers and
//! tasks. It does no DMA, so its binding never claims a group and may stay
//! in a group a user task owns.
#![no_std]
#![no_main]

use userlib::ipc::Buffer;

userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::entry!(main);

/// Most devices it holds: four capability slots each, from slot 64.
const MAX_DEVICES: u8 = 15;
/// First slot of the windows grants arrive in.
const WINDOWS: u32 = 64;
/// Slot of the notification it idles on.
const IDLE: u32 = 127;

fn main() -> u64 {
    let Some(mut buffer) = Buffer::take() else { return 1 };
    pci_api::client::probe_all(PCI.get(), &mut buffer, MAX_DEVICES, WINDOWS, |_, granted| {
        let grant = &granted.grant;
        defmt::info!(
            "stub holds {} ({=u16:04x}:{=u16:04x}, IOMMU group {})",
            grant.device,
            grant.vendor,
            grant.device_id,
            granted.group()
        );
    });
    userlib::objects::hold_forever(IDLE)
}
