//! The driver core's kernel operations as system calls, with slots from the server's pool.

use core::cell::RefCell;

use capabilities::ErrorCode;
use capabilities::abi::ObjectKind;
use pci_server::driver_core::{Kernel, MsiVector, Slot};
use userlib::cap::{Cap, Control, DeviceMemory, Notification, SlotPool, Task};

/// A capability whose kind does not matter to the call made on it:
/// revoking and deleting work on every kind.
fn any(slot: Slot) -> Cap<DeviceMemory> {
    Cap::at(slot.0)
}

/// The kernel, as the driver core sees it.
pub struct Syscalls<'a> {
    /// Slots for the capabilities the core creates.
    pub pool: &'a RefCell<SlotPool>,
    /// Creates device memory and MSI vectors.
    pub control: Cap<Control>,
    /// The notification death watches signal (the receive loop's).
    pub events: Cap<Notification>,
    /// A notification nothing signals, to sleep on.
    pub timer: Cap<Notification>,
}

impl Syscalls<'_> {
    fn take(&self) -> Result<u32, ErrorCode> {
        self.pool.borrow_mut().take().ok_or(ErrorCode::QuotaExceeded)
    }

    fn give(&self, slot: u32) {
        self.pool.borrow_mut().give(slot);
    }
}

impl Kernel for Syscalls<'_> {
    fn create_device_memory(&mut self, base: u64, pages: u64) -> Result<Slot, ErrorCode> {
        let slot = self.take()?;
        match self.control.create_device_memory(slot, base, pages) {
            Ok(_) => Ok(Slot(slot)),
            Err(code) => {
                self.give(slot);
                Err(code)
            }
        }
    }

    fn alloc_msi(&mut self) -> Result<MsiVector, ErrorCode> {
        let slot = self.take()?;
        match self.control.alloc_msi(slot) {
            Ok(msi) => Ok(MsiVector { slot: Slot(slot), vector: msi.vector, address: msi.address, data: msi.data }),
            Err(code) => {
                self.give(slot);
                Err(code)
            }
        }
    }

    fn revoke(&mut self, slot: Slot) -> Result<(), ErrorCode> {
        any(slot).revoke()
    }

    fn delete(&mut self, slot: Slot) {
        // An empty slot is fine: another server revoked the original.
        let _ = any(slot).delete();
        self.give(slot.0);
    }

    fn task_of(&mut self, slot: Slot) -> Result<u16, ErrorCode> {
        let info = Cap::<Task>::at(slot.0).info()?;
        if info.kind != Some(ObjectKind::Task) {
            return Err(ErrorCode::WrongKind);
        }
        u16::try_from(info.extent).map_err(|_| ErrorCode::InvalidArgument)
    }

    fn watch(&mut self, slot: Slot, bits: u64) -> Result<(), ErrorCode> {
        Cap::<Task>::at(slot.0).watch(self.events, bits)
    }

    fn sleep(&mut self, micros: u64) {
        // Nothing signals the timer: the wait ends by timing out.
        let _ = self.timer.wait(0, micros.max(1));
    }
}
