//! The IOMMU server over IPC: one call per request, with a fresh slot for the capability a reply may carry.

use core::cell::RefCell;

use capabilities::ErrorCode;
use iommu_api::{Reply, Request};
use pci_server::driver_core::{IommuLink, Slot};
use userlib::cap::{Cap, DeviceMemory, Endpoint, SlotPool};
use userlib::ipc::Buffer;

/// A connection to the IOMMU server, borrowing the IPC buffer while the
/// driver core handles one request.
pub struct IommuClient<'a> {
    /// The IOMMU server's endpoint.
    pub endpoint: Cap<Endpoint>,
    /// The task's IPC buffer.
    pub buffer: &'a mut Buffer,
    /// Slots for capabilities replies carry.
    pub pool: &'a RefCell<SlotPool>,
    /// The receive loop's window, restored after each call.
    pub window: u32,
}

impl IommuLink for IommuClient<'_> {
    fn call(&mut self, request: &Request) -> Result<(Reply, Option<Slot>), ErrorCode> {
        let slot = self.pool.borrow_mut().take().ok_or(ErrorCode::QuotaExceeded)?;
        self.buffer.set_send_caps(&[]);
        self.buffer.set_window(slot, 1);
        let result = self.endpoint.call_with(self.buffer, request);
        self.buffer.set_window(self.window, 1);
        let received = result.is_ok() && self.buffer.received_caps().contains(&slot);
        let reply = result.and_then(|message| self.buffer.decode::<Reply>(message.len));
        match (reply, received) {
            (Ok(reply), true) => Ok((reply, Some(Slot(slot)))),
            (Ok(reply), false) => {
                self.pool.borrow_mut().give(slot);
                Ok((reply, None))
            }
            (Err(code), received) => {
                if received {
                    // Kind does not matter to a delete.
                    let _ = Cap::<DeviceMemory>::at(slot).delete();
                }
                self.pool.borrow_mut().give(slot);
                Err(code)
            }
        }
    }
}
