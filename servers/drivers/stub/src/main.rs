//! The stub driver: takes every device bound to it and holds it, doing nothing.
//!
//! Like Linux's pci-stub, it keeps devices away from other drivers and
//! tasks. It does no DMA, so its binding never claims a group and may stay
//! in a group a user task owns.
#![no_std]
#![no_main]

userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::entry!(main);

fn main() -> u64 {
    pci_api::client::hold_all(PCI.get(), |_, granted| {
        let grant = &granted.grant;
        defmt::info!(
            "stub holds {} ({=u16:04x}:{=u16:04x}, IOMMU group {})",
            grant.device,
            grant.vendor,
            grant.device_id,
            granted.group()
        );
    })
}
