//! The user-assigned edu task: owns its device's group and does its own DMA, as a VFIO user does.
//!
//! Asked to adopt a device, it claims the device's whole group from the
//! IOMMU server (which first blocks the group, then sends a group
//! capability to this task alone), creates an I/O address space, attaches
//! the group to it, acquires the device's BAR and interrupt from the PCI
//! server, and maps its DMA buffer at an IOVA of its own choosing.
#![no_std]
#![no_main]
#![expect(clippy::result_large_err, reason = "a refusal carries the server's reason inline; there is no heap")]

use capabilities::ErrorCode;
use capabilities::pci::Bdf;
use capabilities::protocol::Refused;
use edu::{Mapper, Taken};
use heapless::Vec;
use iommu_api::client as iommu;
use iommu_api::client::group;
use iommu_api::{FAULTS_PER_REPLY, Fault, Reply, Request};
use userlib::cap::{Cap, DeviceMemory, Endpoint, Frame, Interrupt, SlotPool};
use userlib::ipc::Buffer;
use userlib::objects;

userlib::cap_slot!(IOMMU: Endpoint = "iommu");
userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::cap_slot!(REQUESTS: Endpoint = "requests");
userlib::entry!(main);

/// Where this task maps its DMA buffer in its I/O address space: its own
/// choice, inside the edu device's 28-bit DMA mask.
const BUFFER_IOVA: u64 = 0x0030_0000;
/// Where a frame another task lends is mapped (`MapLent`).
const LENT_IOVA: u64 = 0x0031_0000;

fn main() -> u64 {
    let mut slots = SlotPool::new();
    let (Some(window), Some(group_slot), Some(frame_slot), Some(done_slot), Some(lent)) =
        (slots.take_run(4), slots.take(), slots.take(), slots.take(), slots.take())
    else {
        return 1;
    };
    let (Ok(frame), Ok(done)) = (objects::alloc_frame(frame_slot, 1), objects::create_notification(done_slot)) else {
        defmt::error!("edu-user: no frame or notification (the policy must allow two objects)");
        return 1;
    };
    let mut user = User { window, group_slot, group: None };
    edu::serve(&mut user, REQUESTS.get(), frame, done, lent, false)
}

/// The user's side: a group capability and an I/O address space.
struct User {
    /// Four slots for the device grant.
    window: u32,
    /// Where the group capability arrives.
    group_slot: u32,
    /// The group capability and the address space, once claimed.
    group: Option<(Cap<Endpoint>, u16)>,
}

impl User {
    fn group(&self) -> Result<(Cap<Endpoint>, u16), Refused> {
        self.group.ok_or_else(|| ErrorCode::NotFound.into())
    }

    /// Claims `device`'s group and makes it translate through a new
    /// address space of this task.
    fn claim(&mut self, buffer: &mut Buffer, device: Bdf) -> Result<(Cap<Endpoint>, u16, u16), Refused> {
        let number = group::claim(IOMMU.get(), buffer, device, self.group_slot)?;
        let group = Cap::<Endpoint>::at(self.group_slot);
        let attached = match iommu::request(group, buffer, &Request::IoasCreate, &[]) {
            Ok(Reply::Ioas { ioas }) => {
                iommu::request(group, buffer, &Request::Attach { ioas: Some(ioas) }, &[]).map(|_| ioas)
            }
            Ok(_) => Err(iommu::unexpected()),
            Err(refused) => Err(refused),
        };
        match attached {
            Ok(ioas) => Ok((group, number, ioas)),
            Err(refused) => {
                let _ = group::release(group, buffer);
                Err(refused)
            }
        }
    }
}

impl Mapper for User {
    fn role(&self) -> &'static str {
        "edu-user"
    }

    fn adopt(&mut self, buffer: &mut Buffer, device: Option<Bdf>) -> Result<Taken, Refused> {
        let device = device.ok_or(Refused::from(ErrorCode::NotFound))?;
        let (group, number, ioas) = self.claim(buffer, device)?;
        let granted = match pci_api::client::acquire(PCI.get(), buffer, device, self.window) {
            Ok(granted) => granted,
            Err(refused) => {
                let _ = group::release(group, buffer);
                return Err(refused);
            }
        };
        let (Some(bar), Some(interrupt)) = (granted.bar(0), granted.interrupt()) else {
            let _ = pci_api::client::release(PCI.get(), buffer, device);
            let _ = group::release(group, buffer);
            return Err(ErrorCode::WrongKind.into());
        };
        // The grant leaves bus mastering off; this task turns it on itself.
        if let Err(refused) = pci_api::client::enable_bus_mastering(PCI.get(), buffer, device) {
            let _ = pci_api::client::release(PCI.get(), buffer, device);
            let _ = group::release(group, buffer);
            return Err(refused);
        }
        self.group = Some((group, ioas));
        Ok(Taken {
            device,
            group: number,
            bar: Cap::<DeviceMemory>::at(bar),
            interrupt: Cap::<Interrupt>::at(interrupt),
        })
    }

    fn map(&mut self, buffer: &mut Buffer, frame: Cap<Frame>) -> Result<u64, Refused> {
        let (group, ioas) = self.group()?;
        let request = Request::Map { ioas, iova: BUFFER_IOVA, writable: true };
        iommu::request(group, buffer, &request, &[frame.slot()]).map(|_| BUFFER_IOVA)
    }

    fn map_lent(&mut self, buffer: &mut Buffer, frame: Cap<Frame>) -> Result<u64, Refused> {
        let (group, ioas) = self.group()?;
        let request = Request::Map { ioas, iova: LENT_IOVA, writable: true };
        iommu::request(group, buffer, &request, &[frame.slot()]).map(|_| LENT_IOVA)
    }

    fn unmap(&mut self, buffer: &mut Buffer, iova: u64) -> Result<(), Refused> {
        let (group, ioas) = self.group()?;
        iommu::request(group, buffer, &Request::Unmap { ioas, iova }, &[]).map(|_| ())
    }

    fn release(&mut self, buffer: &mut Buffer, device: Bdf) -> Result<(), Refused> {
        let (group, _) = self.group()?;
        self.group = None;
        let device_released = pci_api::client::release(PCI.get(), buffer, device);
        device_released.and(group::release(group, buffer))
    }

    fn faults(&mut self, buffer: &mut Buffer) -> Result<(Vec<Fault, FAULTS_PER_REPLY>, u64), Refused> {
        let (group, _) = self.group()?;
        match iommu::request(group, buffer, &Request::Faults, &[])? {
            Reply::Faults { records, dropped, .. } => Ok((records, dropped)),
            _ => Err(iommu::unexpected()),
        }
    }
}
