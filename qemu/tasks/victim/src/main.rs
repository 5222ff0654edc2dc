//! A group owner that works in a loop until it is killed, wherever in its work that happens.
//!
//! Told to start (its `go` notification), it claims its device's group,
//! builds an address space, acquires the device, maps a buffer, makes the
//! device copy it by DMA, and undoes it all, again and again. The hostile
//! task kills it at a random moment; whatever it held at that moment must
//! come back to the servers. Its device is the `device` parameter (a
//! requester id: bus << 8 | device << 3 | function).
#![no_std]
#![no_main]

use capabilities::ErrorCode;
use capabilities::pci::Bdf;
use iommu_api::client as iommu;
use iommu_api::client::group;
use iommu_api::{Reply, Request};
use userlib::cap::{Cap, Endpoint, Notification, SlotPool};
use userlib::ipc::Buffer;
use userlib::{boot, objects};

userlib::cap_slot!(IOMMU: Endpoint = "iommu");
userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::cap_slot!(GO: Notification = "go");
userlib::entry!(main);

/// Where the buffer is mapped for the device, and in this task.
const BUFFER_IOVA: u64 = 0x20_0000;
const BAR_VIRT: u64 = 0x2000_0000;

fn main() -> u64 {
    let Some(mut buffer) = Buffer::take() else { return 1 };
    let device = Bdf::from_requester_id(boot::parameter("device", 0) as u16);
    let mut slots = SlotPool::new();
    let (Some(window), Some(group_slot), Some(frame_slot), Some(done_slot)) =
        (slots.take_run(4), slots.take(), slots.take(), slots.take())
    else {
        return 1;
    };
    let (Ok(frame), Ok(done)) = (objects::alloc_frame(frame_slot, 1), objects::create_notification(done_slot)) else {
        return 1;
    };
    if GO.get().wait(0, 0).is_err() {
        return 1;
    }
    let mut cycles = 0u64;
    loop {
        match cycle(&mut buffer, device, window, group_slot, frame.slot(), done) {
            Ok(()) => {
                cycles += 1;
                if cycles == 1 {
                    defmt::info!("victim: {} claimed, mapped, copied by DMA and released", device);
                }
            }
            // Released groups are quiesced before they can be claimed again.
            Err(ErrorCode::Busy) => {
                let _ = done.wait(0, 1_000);
            }
            Err(code) => {
                defmt::error!("victim: a cycle on {} failed: {}", device, code);
                return 2;
            }
        }
    }
}

/// One claim-to-release cycle.
fn cycle(
    buffer: &mut Buffer,
    device: Bdf,
    window: u32,
    group_slot: u32,
    frame: u32,
    done: Cap<Notification>,
) -> Result<(), ErrorCode> {
    group::claim(IOMMU.get(), buffer, device, group_slot).map_err(|refused| refused.code)?;
    let group = Cap::<Endpoint>::at(group_slot);
    let worked = work(buffer, device, group, window, frame, done);
    worked.and(group::release(group, buffer).map_err(|refused| refused.code))
}

fn work(
    buffer: &mut Buffer,
    device: Bdf,
    group: Cap<Endpoint>,
    window: u32,
    frame: u32,
    done: Cap<Notification>,
) -> Result<(), ErrorCode> {
    let ioas = match iommu::request(group, buffer, &Request::IoasCreate, &[]) {
        Ok(Reply::Ioas { ioas }) => ioas,
        Ok(_) => return Err(ErrorCode::Malformed),
        Err(refused) => return Err(refused.code),
    };
    iommu::request(group, buffer, &Request::Attach { ioas: Some(ioas) }, &[]).map_err(|refused| refused.code)?;
    let map = Request::Map { ioas, iova: BUFFER_IOVA, writable: true };
    iommu::request(group, buffer, &map, &[frame]).map_err(|refused| refused.code)?;
    let granted = pci_api::client::acquire(PCI.get(), buffer, device, window).map_err(|refused| refused.code)?;
    let (Some(bar), Some(interrupt)) = (granted.bar(0), granted.interrupt()) else { return Err(ErrorCode::WrongKind) };
    pci_api::client::enable_bus_mastering(PCI.get(), buffer, device).map_err(|refused| refused.code)?;
    let edu = edu::Edu::new(Cap::at(bar), Cap::at(interrupt), done, BAR_VIRT)?;
    let copied = edu
        .dma(BUFFER_IOVA, edu::DEVICE_BUFFER, 512, false)
        .and_then(|()| edu.dma(edu::DEVICE_BUFFER, BUFFER_IOVA + 2048, 512, true));
    edu.close();
    let _ = pci_api::client::release(PCI.get(), buffer, device);
    copied
}
