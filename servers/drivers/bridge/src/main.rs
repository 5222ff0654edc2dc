//! The bridge and port driver: takes the bridges bound to it and holds them.
//!
//! Bridges and PCI Express ports forward for the devices below them; the
//! driver only keeps them from other holders and reports what each
//! forwards. It does no DMA (a port's own DMA is only what it forwards),
//! so, as in Linux, it may stay bound in a group a user task owns.
#![no_std]
#![no_main]

userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::entry!(main);

/// The bus-number register of a bridge header (primary, secondary, subordinate).
const BUS_NUMBERS: u16 = 0x18;

fn main() -> u64 {
    pci_api::client::hold_all(PCI.get(), |buffer, granted| {
        let device = granted.grant.device;
        match pci_api::client::config_read(PCI.get(), buffer, device, BUS_NUMBERS, 4) {
            Ok(buses) => {
                let [_, secondary, subordinate, _] = buses.to_le_bytes();
                defmt::info!("bridge {} held: forwards buses {=u8:02x}-{=u8:02x}", device, secondary, subordinate);
            }
            Err(refused) => defmt::warn!("bridge {}: bus numbers unreadable ({})", device, refused.code),
        }
    })
}
