//! Operations on the kinds of capability other than endpoints: creating
//! objects, notifications, tasks, memory, ports and interrupts.

use capabilities::ErrorCode;
use capabilities::abi::{Syscall, rights};
use capabilities::accounting::{Figures, MACHINE, MachineFigures, TaskFigures};

use crate::cap::{
    AddressSpace, Cap, Control, DeviceMemory, Endpoint, Frame, Interrupt, IoPorts, Kind, Notification, Task,
};
use crate::syscall::raw;

/// Creates an endpoint in the empty `slot`.
pub fn create_endpoint(slot: u32) -> Result<Cap<Endpoint>, ErrorCode> {
    raw(Syscall::EndpointCreate, [slot.into(), 0, 0, 0, 0, 0]).map(|_| Cap::at(slot))
}

/// Creates a notification in the empty `slot`.
pub fn create_notification(slot: u32) -> Result<Cap<Notification>, ErrorCode> {
    raw(Syscall::NotificationCreate, [slot.into(), 0, 0, 0, 0, 0]).map(|_| Cap::at(slot))
}

/// Keeps the task, and with it what it holds, alive: waits on a
/// notification nothing signals (created in `slot`; the policy must allow
/// one object). Returns only if the notification cannot be created.
pub fn hold_forever(slot: u32) -> u64 {
    let Ok(idle) = create_notification(slot) else { return 1 };
    loop {
        let _ = idle.wait(0, 0);
    }
}

/// Allocates `pages` zeroed contiguous pages as a frame in the empty `slot`.
pub fn alloc_frame(slot: u32, pages: u64) -> Result<Cap<Frame>, ErrorCode> {
    raw(Syscall::FrameAlloc, [slot.into(), pages, 0, 0, 0, 0]).map(|_| Cap::at(slot))
}

impl Cap<Notification> {
    /// Sets this capability's badge bits.
    pub fn signal(self) -> Result<(), ErrorCode> {
        raw(Syscall::Signal, [self.slot().into(), 0, 0, 0, 0, 0]).map(|_| ())
    }

    /// Waits for bits (`flags`: `ipc::NONBLOCK`; `timeout_us` 0: forever).
    pub fn wait(self, flags: u64, timeout_us: u64) -> Result<u64, ErrorCode> {
        raw(Syscall::Wait, [self.slot().into(), flags, timeout_us, 0, 0, 0]).map(|[bits, _, _]| bits)
    }

    /// Makes this task's receives also return when it is signalled.
    pub fn bind(self) -> Result<(), ErrorCode> {
        raw(Syscall::NotificationBind, [self.slot().into(), 0, 0, 0, 0, 0]).map(|_| ())
    }
}

/// A task's state as [`Cap::<Task>::state`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "bare-metal", derive(defmt::Format))]
pub enum TaskState {
    /// Running or blocked.
    Alive,
    /// Exited with this code.
    Exited(u64),
    /// Killed by exception `vector` at `address`.
    Killed {
        /// Exception vector.
        vector: u64,
        /// Faulting address (page faults).
        address: u64,
    },
}

impl Cap<Task> {
    /// Sets `bits` in `notification` when the task dies.
    pub fn watch(self, notification: Cap<Notification>, bits: u64) -> Result<(), ErrorCode> {
        raw(Syscall::TaskWatch, [self.slot().into(), notification.slot().into(), bits, 0, 0, 0]).map(|_| ())
    }

    /// Ends the task (needs the KILL right the policy's `kill = true` gives).
    pub fn kill(self) -> Result<(), ErrorCode> {
        raw(Syscall::TaskKill, [self.slot().into(), 0, 0, 0, 0, 0]).map(|_| ())
    }

    /// Whether it lives, and how it ended.
    pub fn state(self) -> Result<TaskState, ErrorCode> {
        use capabilities::abi::task_state;
        let [state, first, second] = raw(Syscall::TaskInfo, [self.slot().into(), 0, 0, 0, 0, 0])?;
        Ok(match state {
            task_state::EXITED => TaskState::Exited(first),
            task_state::KILLED => TaskState::Killed { vector: first, address: second },
            _ => TaskState::Alive,
        })
    }
}

/// Memory a task can map: frames and device memory.
pub trait Mappable: Kind {}
impl Mappable for Frame {}
impl Mappable for DeviceMemory {}

impl Cap<AddressSpace> {
    /// Maps `memory` at `virt` with `access` (`rights::WRITE`, `EXECUTE`).
    pub fn map<K: Mappable>(self, memory: Cap<K>, virt: u64, access: u32) -> Result<(), ErrorCode> {
        raw(Syscall::Map, [self.slot().into(), memory.slot().into(), virt, access.into(), 0, 0]).map(|_| ())
    }
}

impl<K: Mappable> Cap<K> {
    /// Removes the mapping made with this capability.
    pub fn unmap(self) -> Result<(), ErrorCode> {
        raw(Syscall::Unmap, [self.slot().into(), 0, 0, 0, 0, 0]).map(|_| ())
    }
}

impl Cap<DeviceMemory> {
    /// A capability in `dest` for `pages` pages from page `offset`.
    pub fn split(self, dest: u32, offset: u64, pages: u64) -> Result<Cap<DeviceMemory>, ErrorCode> {
        raw(Syscall::CapSplit, [self.slot().into(), dest.into(), offset, pages, 0, 0]).map(|_| Cap::at(dest))
    }

    /// The `index`th IO APIC line the kernel routes; this capability must
    /// be a remapping unit's registers. `NotFound` past the last.
    pub fn ioapic_line(self, index: u64) -> Result<IoApicLine, ErrorCode> {
        let [flags, target, handle] = raw(Syscall::IoApicLine, [self.slot().into(), index, 0, 0, 0, 0])?;
        Ok(IoApicLine {
            gsi: flags as u8,
            level: flags & 1 << 8 != 0,
            vector: target as u8,
            destination: (target >> 8) as u8,
            handle: u16::try_from(handle).ok(),
        })
    }

    /// Routes IO APIC line `gsi` through interrupt-remapping entry `handle`;
    /// this capability must be a remapping unit's registers.
    pub fn ioapic_remap(self, gsi: u8, handle: u16) -> Result<(), ErrorCode> {
        raw(Syscall::IoApicRemap, [self.slot().into(), gsi.into(), handle.into(), 0, 0, 0]).map(|_| ())
    }
}

/// An IO APIC line the kernel routes, as `IoApicLine` describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApicLine {
    /// Its global system interrupt.
    pub gsi: u8,
    /// Level-triggered.
    pub level: bool,
    /// The vector it raises.
    pub vector: u8,
    /// The local APIC id it is sent to.
    pub destination: u8,
    /// The interrupt-remapping entry it goes through, if remapped.
    pub handle: Option<u16>,
}

impl Cap<IoPorts> {
    /// Reads port `port`, `width` bytes wide.
    pub fn read(self, port: u16, width: u8) -> Result<u32, ErrorCode> {
        raw(Syscall::PortIn, [self.slot().into(), port.into(), width.into(), 0, 0, 0]).map(|[value, _, _]| value as u32)
    }

    /// Writes `value` to port `port`, `width` bytes wide.
    pub fn write(self, port: u16, width: u8, value: u32) -> Result<(), ErrorCode> {
        raw(Syscall::PortOut, [self.slot().into(), port.into(), width.into(), value.into(), 0, 0]).map(|_| ())
    }
}

impl Cap<Interrupt> {
    /// Delivers the interrupt as `bits` in `notification`; returns the vector.
    pub fn bind(self, notification: Cap<Notification>, bits: u64) -> Result<u8, ErrorCode> {
        raw(Syscall::IrqBind, [self.slot().into(), notification.slot().into(), bits, 0, 0, 0])
            .map(|[vector, _, _]| vector as u8)
    }

    /// Lets the interrupt fire again; returns how many times it fired
    /// since the last acknowledgement (its notification bits coalesce).
    pub fn acknowledge(self) -> Result<u32, ErrorCode> {
        raw(Syscall::IrqAck, [self.slot().into(), 0, 0, 0, 0, 0]).map(|[arrivals, _, _]| arrivals as u32)
    }
}

/// A pinned frame: what a device may be told to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin {
    /// Handle to release the pin with.
    pub handle: u64,
    /// Physical address of the first page.
    pub physical: u64,
    /// Pages pinned.
    pub pages: u64,
}

/// An MSI vector allocated through the control capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msi {
    /// The interrupt capability.
    pub interrupt: Cap<Interrupt>,
    /// Its vector.
    pub vector: u8,
    /// What a device writes, and where, to raise it.
    pub address: u64,
    /// The data word.
    pub data: u32,
}

impl Cap<Control> {
    /// Pins `frame` for device access: reads, and writes if
    /// `device_writes` (each needs the frame capability's right).
    pub fn pin(self, frame: Cap<Frame>, device_writes: bool) -> Result<Pin, ErrorCode> {
        let access = if device_writes { rights::WRITE.into() } else { 0 };
        let [handle, physical, pages] =
            raw(Syscall::DmaPin, [self.slot().into(), frame.slot().into(), access, 0, 0, 0])?;
        Ok(Pin { handle, physical, pages })
    }

    /// Releases a pin, live or revoked.
    pub fn unpin(self, handle: u64) -> Result<(), ErrorCode> {
        raw(Syscall::DmaUnpin, [self.slot().into(), handle, 0, 0, 0, 0]).map(|_| ())
    }

    /// Has `bits` set in `notification` whenever one of this task's pins
    /// is revoked (a revocation of the frame capability it was made from).
    pub fn watch_pins(self, notification: Cap<Notification>, bits: u64) -> Result<(), ErrorCode> {
        raw(Syscall::DmaWatch, [self.slot().into(), notification.slot().into(), bits, 0, 0, 0]).map(|_| ())
    }

    /// One revoked pin of this task not reported before, if any: unmap it
    /// from every device, then [`Cap::unpin`] it.
    pub fn revoked_pin(self) -> Result<Option<Pin>, ErrorCode> {
        match raw(Syscall::DmaRevoked, [self.slot().into(), 0, 0, 0, 0, 0]) {
            Ok([handle, physical, pages]) => Ok(Some(Pin { handle, physical, pages })),
            Err(ErrorCode::WouldBlock) => Ok(None),
            Err(code) => Err(code),
        }
    }

    /// Allocates an MSI vector into the empty `slot`.
    pub fn alloc_msi(self, slot: u32) -> Result<Msi, ErrorCode> {
        let [vector, address, data] = raw(Syscall::IrqAllocMsi, [self.slot().into(), slot.into(), 0, 0, 0, 0])?;
        Ok(Msi { interrupt: Cap::at(slot), vector: vector as u8, address, data: data as u32 })
    }

    /// Creates a device-memory capability in the empty `slot` for `pages`
    /// pages at physical `base` (needs the DEVICE right; never RAM).
    pub fn create_device_memory(self, slot: u32, base: u64, pages: u64) -> Result<Cap<DeviceMemory>, ErrorCode> {
        raw(Syscall::DeviceMemoryCreate, [self.slot().into(), slot.into(), base, pages, 0, 0]).map(|_| Cap::at(slot))
    }

    /// The kernel's machine-wide figures (needs the ACCOUNT right).
    pub fn machine_figures(self) -> Result<MachineFigures, ErrorCode> {
        raw(Syscall::Accounting, [self.slot().into(), MACHINE, 0, 0, 0, 0]).map(MachineFigures::from_registers)
    }

    /// The figures of the task with index `task`; `None` past the last.
    pub fn task_figures(self, task: u64) -> Result<Option<TaskFigures>, ErrorCode> {
        match raw(Syscall::Accounting, [self.slot().into(), task, 0, 0, 0, 0]) {
            Ok(registers) => Ok(Some(TaskFigures::from_registers(registers))),
            Err(ErrorCode::NotFound) => Ok(None),
            Err(code) => Err(code),
        }
    }

    /// Every figure: the machine's, then each task's. Nothing runs
    /// between the calls unless a higher-priority task wakes meanwhile.
    pub fn figures(self) -> Result<Figures, ErrorCode> {
        let machine = self.machine_figures()?;
        let mut tasks = heapless::Vec::new();
        while let Some(task) = self.task_figures(tasks.len() as u64)? {
            tasks.push(task).map_err(|_| ErrorCode::TooLarge)?;
        }
        Ok(Figures { machine, tasks })
    }
}
