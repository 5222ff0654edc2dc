//! The trusted edu driver: maps its DMA buffer through the DMA handle its probe brings.
//!
//! A driver task that does DMA (its policy entry does not say
//! `dma = false`), so the PCI server claimed the device's group for
//! kernel use before granting it: the buffer lives in the group's default
//! domain at an IOVA the IOMMU server picks within the device's 28-bit DMA
//! mask. A driver with no device at boot waits for an administrator's bind
//! and an `adopt` request.
#![no_std]
#![no_main]
#![expect(clippy::result_large_err, reason = "a refusal carries the server's reason inline; there is no heap")]

use capabilities::ErrorCode;
use capabilities::pci::Bdf;
use capabilities::protocol::Refused;
use edu::{Mapper, Taken};
use heapless::Vec;
use iommu_api::client as iommu;
use iommu_api::{FAULTS_PER_REPLY, Fault, Reply, Request};
use userlib::cap::{Cap, DeviceMemory, Endpoint, Frame, Interrupt, SlotPool};
use userlib::ipc::Buffer;
use userlib::objects;

userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::cap_slot!(REQUESTS: Endpoint = "requests");
userlib::entry!(main);

/// The edu device's DMA mask (QEMU's default `dma_mask`).
const EDU_DMA_BITS: u8 = 28;

fn main() -> u64 {
    let mut slots = SlotPool::new();
    let (Some(window), Some(frame_slot), Some(done_slot), Some(lent)) =
        (slots.take_run(4), slots.take(), slots.take(), slots.take())
    else {
        return 1;
    };
    let (Ok(frame), Ok(done)) = (objects::alloc_frame(frame_slot, 1), objects::create_notification(done_slot)) else {
        defmt::error!("edu-dma: no frame or notification (the policy must allow two objects)");
        return 1;
    };
    let mut driver = Driver { window, handle: None };
    edu::serve(&mut driver, REQUESTS.get(), frame, done, lent, true)
}

/// The driver's side: the PCI server's probe and the DMA handle.
struct Driver {
    /// Four slots for a grant.
    window: u32,
    /// The DMA handle, once probed.
    handle: Option<Cap<Endpoint>>,
}

impl Driver {
    fn handle(&self) -> Result<Cap<Endpoint>, Refused> {
        self.handle.ok_or_else(|| ErrorCode::NotFound.into())
    }
}

impl Mapper for Driver {
    fn role(&self) -> &'static str {
        "edu-dma"
    }

    fn adopt(&mut self, buffer: &mut Buffer, device: Option<Bdf>) -> Result<Taken, Refused> {
        let granted = pci_api::client::probe(PCI.get(), buffer, 0, self.window)?;
        let found = granted.grant.device;
        let parts = (granted.bar(0), granted.interrupt(), granted.dma_handle());
        let (Some(bar), Some(interrupt), Some(handle)) = parts else {
            let _ = pci_api::client::release(PCI.get(), buffer, found);
            return Err(ErrorCode::WrongKind.into());
        };
        if device.is_some_and(|device| device != found) {
            let _ = pci_api::client::release(PCI.get(), buffer, found);
            return Err(ErrorCode::NotFound.into());
        }
        // The grant leaves bus mastering off; the buffer is mapped before
        // any DMA is started, so it may go on now.
        if let Err(refused) = pci_api::client::enable_bus_mastering(PCI.get(), buffer, found) {
            let _ = pci_api::client::release(PCI.get(), buffer, found);
            return Err(refused);
        }
        self.handle = Some(Cap::at(handle));
        let group = granted.group().unwrap_or(u16::MAX);
        Ok(Taken {
            device: found,
            group,
            bar: Cap::<DeviceMemory>::at(bar),
            interrupt: Cap::<Interrupt>::at(interrupt),
        })
    }

    fn map(&mut self, buffer: &mut Buffer, frame: Cap<Frame>) -> Result<u64, Refused> {
        iommu::dma_map(self.handle()?, buffer, frame.slot(), true, EDU_DMA_BITS)
    }

    fn map_lent(&mut self, buffer: &mut Buffer, frame: Cap<Frame>) -> Result<u64, Refused> {
        // Anywhere in the mask, as the buffer.
        self.map(buffer, frame)
    }

    fn unmap(&mut self, buffer: &mut Buffer, iova: u64) -> Result<(), Refused> {
        iommu::request(self.handle()?, buffer, &Request::DmaUnmap { iova }, &[]).map(|_| ())
    }

    fn release(&mut self, buffer: &mut Buffer, device: Bdf) -> Result<(), Refused> {
        // The PCI server revokes the DMA handle with the device.
        self.handle = None;
        pci_api::client::release(PCI.get(), buffer, device)
    }

    fn faults(&mut self, buffer: &mut Buffer) -> Result<(Vec<Fault, FAULTS_PER_REPLY>, u64), Refused> {
        match iommu::request(self.handle()?, buffer, &Request::Faults, &[])? {
            Reply::Faults { records, dropped, .. } => Ok((records, dropped)),
            _ => Err(iommu::unexpected()),
        }
    }
}
