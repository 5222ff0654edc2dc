//! The bridge and port driver: takes the bridges bound to it and holds them.
//!
//! Bridges and PCI Express ports forward for the devices below them; the
//! driver only keeps them from other holders and reports what each
//! forwards. It does no DMA (a port's own DMA is only what it forwards),
//! so, as in Linux, it may stay bound in a group a user task owns.
#![no_std]
#![no_main]

use capabilities::ErrorCode;
use userlib::ipc::Buffer;

userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::entry!(main);

/// Most bridges it holds: four capability slots each, from slot 64.
const MAX_DEVICES: u8 = 15;
/// First slot of the windows grants arrive in.
const WINDOWS: u32 = 64;
/// Slot of the notification it idles on.
const IDLE: u32 = 127;
/// The bus-number register of a bridge header (primary, secondary, subordinate).
const BUS_NUMBERS: u16 = 0x18;

fn main() -> u64 {
    let Some(mut buffer) = Buffer::take() else { return 1 };
    for index in 0..MAX_DEVICES {
        let granted = match pci_api::client::probe(PCI.get(), &mut buffer, index, WINDOWS + 4 * u32::from(index)) {
            Ok(granted) => granted,
            Err(refused) if refused.code == ErrorCode::NotFound && index > 0 => break,
            Err(refused) => {
                defmt::warn!("probe {=u8} refused ({}): {=str}", index, refused.code, refused.reason.as_str());
                continue;
            }
        };
        let device = granted.grant.device;
        match pci_api::client::config_read(PCI.get(), &mut buffer, device, BUS_NUMBERS, 4) {
            Ok(buses) => {
                let [_, secondary, subordinate, _] = buses.to_le_bytes();
                defmt::info!("bridge {} held: forwards buses {=u8:02x}-{=u8:02x}", device, secondary, subordinate);
            }
            Err(refused) => defmt::warn!("bridge {}: bus numbers unreadable ({})", device, refused.code),
        }
    }
    userlib::objects::hold_forever(IDLE)
}
