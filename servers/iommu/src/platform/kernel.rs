//! The service's kernel operations as system calls, with slots from the server's pool.

use core::cell::RefCell;

use capabilities::ErrorCode;
use capabilities::abi::{ObjectKind, rights};
use iommu_server::service::kernel::{Kernel, Pin};
use userlib::cap::{Cap, Control, Endpoint, Frame, Notification, SlotPool, Task};
use userlib::syscall;

/// Notification bit of the fault-event interrupt; a watched task `t`'s
/// death is bit `t + 1` (tasks below [`DEATH_TASKS`]); the kernel's
/// revocation of one of the server's pins is [`PIN_REVOKED_BIT`].
pub const FAULT_BIT: u64 = 1;

/// Set by the kernel when it revokes one of the server's pins (`DmaWatch`).
pub const PIN_REVOKED_BIT: u64 = 1 << 63;

/// Tasks with a death bit: bits 1 to 62.
const DEATH_TASKS: u16 = 62;

/// The death bit of task `task`, if a notification word has one for it.
pub fn death_bit(task: u16) -> Option<u64> {
    (task < DEATH_TASKS).then(|| 1u64 << (task + 1))
}

/// The tasks whose death bits are set in `bits`.
pub fn deaths(bits: u64) -> impl Iterator<Item = u16> {
    (1..=DEATH_TASKS).filter(move |bit| bits & 1 << bit != 0).map(|bit| bit - 1)
}

/// The kernel, as the service sees it.
pub struct Syscalls<'a> {
    /// Slots for minted capabilities.
    pub pool: &'a RefCell<SlotPool>,
    /// Pins frames for DMA.
    pub control: Cap<Control>,
    /// An unbadged send capability to the server's own endpoint, to mint
    /// DMA handles and group capabilities from.
    pub minter: Cap<Endpoint>,
    /// The notification bound to the receive loop.
    pub events: Cap<Notification>,
    /// The PCI server's notification, to ask it to quiesce groups.
    pub pci_events: Cap<Notification>,
}

impl Kernel for Syscalls<'_> {
    fn pin(&mut self, slot: u32, device_writes: bool) -> Result<Pin, ErrorCode> {
        let pin = self.control.pin(Cap::<Frame>::at(slot), device_writes)?;
        Ok(Pin { handle: pin.handle, physical: pin.physical, pages: pin.pages })
    }

    fn unpin(&mut self, pin: u64) {
        if let Err(code) = self.control.unpin(pin) {
            defmt::error!("pin {=u64} could not be released: {}", pin, code);
        }
    }

    fn revoked_pin(&mut self) -> Option<u64> {
        match self.control.revoked_pin() {
            Ok(pin) => pin.map(|pin| pin.handle),
            Err(code) => {
                defmt::error!("revoked pins cannot be read: {}", code);
                None
            }
        }
    }

    fn delete(&mut self, slot: u32) {
        // Kind does not matter to a delete; an empty slot is fine.
        let _ = Cap::<Frame>::at(slot).delete();
    }

    fn mint(&mut self, badge: u64) -> Result<u32, ErrorCode> {
        let slot = self.pool.borrow_mut().take().ok_or(ErrorCode::QuotaExceeded)?;
        // Grant: DMA map requests carry the frame to map.
        self.minter.mint_to(slot, rights::SEND | rights::GRANT, badge).map(|cap| cap.slot()).inspect_err(|_| {
            self.pool.borrow_mut().give(slot);
        })
    }

    fn revoke(&mut self, slot: u32) {
        let minted = Cap::<Endpoint>::at(slot);
        if let Err(code) = minted.revoke().and_then(|()| minted.delete()) {
            defmt::error!("minted capability in slot {=u32} could not be revoked: {}", slot, code);
            return;
        }
        self.pool.borrow_mut().give(slot);
    }

    fn task_of(&mut self, slot: u32) -> Option<u16> {
        let info = Cap::<Task>::at(slot).info().ok()?;
        (info.kind == Some(ObjectKind::Task)).then(|| u16::try_from(info.extent).ok()).flatten()
    }

    fn watch(&mut self, slot: u32, task: u16) -> Result<(), ErrorCode> {
        let bit = death_bit(task).ok_or(ErrorCode::InvalidArgument)?;
        Cap::<Task>::at(slot).watch(self.events, bit)
    }

    fn request_reclaim(&mut self) {
        if let Err(code) = self.pci_events.signal() {
            defmt::error!("the PCI server cannot be told of groups to reclaim: {}", code);
        }
    }

    fn now(&self) -> u64 {
        syscall::now()
    }
}
