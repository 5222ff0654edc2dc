//! The driver core's kernel operations as system calls, with slots from the server's pool.

use core::cell::RefCell;

use capabilities::ErrorCode;
use capabilities::abi::ObjectKind;
use pci_server::driver_core::{Kernel, MAX_HOLDERS, MsiVector, Slot};
use userlib::cap::{Cap, Control, DeviceMemory, Notification, SlotPool, Task, own};
use userlib::mmio::Mapping;

/// Where the MSI-X tables the server programs are mapped, one window each.
const TABLES_VIRT: u64 = 0x6000_0000;
/// Bytes of one table's window: the largest table (2048 entries of 16
/// bytes) starting anywhere in its first page fits in nine pages.
const TABLE_WINDOW: u64 = 0x1_0000;

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
    /// The MSI-X tables mapped, by the driver core's key; the window of
    /// each is its place here.
    pub tables: [Option<(usize, Mapping<DeviceMemory>)>; MAX_HOLDERS],
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

    fn map_table(&mut self, key: usize, base: u64, pages: u64) -> Result<(), ErrorCode> {
        if pages * capabilities::abi::PAGE_SIZE > TABLE_WINDOW {
            return Err(ErrorCode::TooLarge);
        }
        let place = self.tables.iter().position(Option::is_none).ok_or(ErrorCode::QuotaExceeded)?;
        let slot = self.take()?;
        let memory = match self.control.create_device_memory(slot, base, pages) {
            Ok(memory) => memory,
            Err(code) => {
                self.give(slot);
                return Err(code);
            }
        };
        match Mapping::map(own::SPACE, memory, TABLES_VIRT + TABLE_WINDOW * place as u64, true) {
            Ok(mapping) => {
                self.tables[place] = Some((key, mapping));
                Ok(())
            }
            Err(code) => {
                let _ = memory.delete();
                self.give(slot);
                Err(code)
            }
        }
    }

    fn table_write32(&mut self, key: usize, offset: u64, value: u32) -> Result<(), ErrorCode> {
        let (_, mapping) =
            self.tables.iter().flatten().find(|(mapped, _)| *mapped == key).ok_or(ErrorCode::NotFound)?;
        mapping.write32(offset, value).ok_or(ErrorCode::InvalidArgument)
    }

    fn unmap_table(&mut self, key: usize) {
        let Some(place) = self.tables.iter().position(|table| table.as_ref().is_some_and(|(mapped, _)| *mapped == key))
        else {
            return;
        };
        if let Some((_, mapping)) = self.tables[place].take() {
            // Deleting the capability takes its mapping with it.
            let memory = match mapping.into_capability() {
                Ok(memory) => memory,
                Err(_) => return,
            };
            let slot = memory.slot();
            let _ = memory.delete();
            self.give(slot);
        }
    }
}
