//! Interrupts as capabilities: IO APIC lines and MSI vectors delivered as
//! notification bits, acknowledged by the task that handles them, and I/O
//! port access through port-range capabilities.

use capabilities::ErrorCode;
use capabilities::abi::rights;

use super::{Kernel, Machine};
use crate::cspace::{Capability, Object, SlotId};
use crate::objects::{Handle, Interrupt, IrqSource, Route};
use crate::task::TaskId;

/// Vectors below this are the CPU's exceptions; a device's message on one
/// is dropped.
pub const FIRST_EXTERNAL_VECTOR: u8 = 32;
/// First vector the kernel hands to devices.
pub const FIRST_DEVICE_VECTOR: u8 = 0x30;
/// Last vector the kernel hands to devices.
pub const LAST_DEVICE_VECTOR: u8 = 0xef;

/// The local APIC's task priority: it delivers only vectors of a higher
/// priority class (vector / 16) than this one's, so class 1 holds off
/// every fixed or lowest-priority message on vectors 0-31 (a device's
/// message on an exception vector never reaches the CPU) and lets through
/// every vector the kernel uses. NMIs are not subject to it, and the CPU
/// blocks further NMIs until its handler returns: so nothing can enter
/// the NMI's entry, on the NMI's stack, while it runs.
pub const TASK_PRIORITY: u8 = 0x10;

/// Error-code bit of a fault raised while the CPU delivered an event from
/// outside the program: an interrupt, not an `int` instruction (SDM vol.
/// 3, 6.13).
const ERROR_EXTERNAL: u64 = 1 << 0;
/// Error-code bit: the index names a gate of the IDT.
const ERROR_IDT: u64 = 1 << 1;
/// The exceptions a gate the CPU cannot use raises: not present (11), or
/// not a gate the event may take (13).
const GATE_FAULTS: [u8; 2] = [11, 13];

/// The vector of a device's message whose delivery raised CPU exception
/// `exception` with `error_code`, or `None` if it is a fault of the code
/// that ran. `in_service` gives the highest vector the local APIC has in
/// service: an interrupt the CPU was delivering, whatever the error code
/// says (QEMU 7.2 sets no EXT bit and doubles the index in 64-bit mode).
/// A task's own `int` of a kernel gate has IDT set, EXT clear and nothing
/// in service: its fault. Every gate is present, so this is defence in
/// depth: such a message is counted as a stray, not taken as the running
/// task's fault or the kernel's.
pub fn undelivered_interrupt(exception: u8, error_code: u64, in_service: impl FnOnce() -> Option<u8>) -> Option<u8> {
    if !GATE_FAULTS.contains(&exception) || error_code & ERROR_IDT == 0 {
        return None;
    }
    match in_service() {
        Some(vector) => Some(vector),
        None if error_code & ERROR_EXTERNAL != 0 => Some(((error_code >> 3) & 0xff) as u8),
        None => None,
    }
}

impl Kernel {
    /// Device interrupts that arrived on exception vectors, dropped.
    pub fn stray_vectors(&self) -> u64 {
        self.stray_vectors
    }

    fn free_vector(&self) -> Option<u8> {
        (FIRST_DEVICE_VECTOR..=LAST_DEVICE_VECTOR).find(|&vector| self.vectors[usize::from(vector)].is_none())
    }

    fn create_interrupt(&mut self, source: IrqSource, creator: Option<TaskId>) -> Result<Handle, ErrorCode> {
        let vector = self.free_vector().ok_or(ErrorCode::OutOfMemory)?;
        let interrupt = Interrupt {
            source,
            vector,
            target: None,
            unacknowledged: false,
            arrivals: 0,
            refs: 0,
            remapped: None,
            creator,
        };
        let handle = self.interrupts.insert(interrupt).map_err(|_| ErrorCode::OutOfMemory)?;
        self.vectors[usize::from(vector)] = Some(handle);
        Ok(handle)
    }

    /// An interrupt object for IO APIC input `gsi`, routed but masked
    /// until it is bound to a notification.
    pub(super) fn create_ioapic_interrupt(
        &mut self,
        m: &mut impl Machine,
        gsi: u8,
        level: bool,
    ) -> Result<Handle, ErrorCode> {
        let handle = self.create_interrupt(IrqSource::IoApic { gsi, level }, None)?;
        if let Some(interrupt) = self.interrupts.get(handle) {
            m.route_gsi(gsi, interrupt.vector, level);
        }
        Ok(handle)
    }

    pub(super) fn release_interrupt(&mut self, m: &mut impl Machine, handle: Handle) {
        let Some(interrupt) = self.interrupts.get_mut(handle) else { return };
        interrupt.refs = interrupt.refs.saturating_sub(1);
        if interrupt.refs > 0 {
            return;
        }
        if let Some(interrupt) = self.interrupts.remove(handle) {
            if let IrqSource::IoApic { gsi, .. } = interrupt.source {
                m.mask_gsi(gsi, true);
            }
            self.vectors[usize::from(interrupt.vector)] = None;
        }
    }

    fn interrupt_cap(&self, id: TaskId, slot: u64) -> Result<(Handle, SlotId), ErrorCode> {
        let (slot, cap) = self.caps.lookup(id, slot)?;
        let Object::Interrupt(handle) = cap.object else { return Err(ErrorCode::WrongKind) };
        if !cap.has(rights::ACK) {
            return Err(ErrorCode::PermissionDenied);
        }
        Ok((handle, slot))
    }

    /// `IrqBind`: the interrupt sets `bits` in the notification in `target`.
    pub(super) fn irq_bind(&mut self, m: &mut impl Machine, id: TaskId, args: [u64; 6]) -> Result<[u64; 3], ErrorCode> {
        let [irq_slot, target_slot, bits, ..] = args;
        let (handle, irq_slot) = self.interrupt_cap(id, irq_slot)?;
        let (notification, target_slot) = self.signal_target(id, target_slot, bits)?;
        let interrupt = self.interrupts.get_mut(handle).ok_or(ErrorCode::ObjectDeleted)?;
        interrupt.target = Some(Route { notification, bits, notification_cap: target_slot, interrupt_cap: irq_slot });
        interrupt.unacknowledged = false;
        interrupt.arrivals = 0;
        if let IrqSource::IoApic { gsi, .. } = interrupt.source {
            m.mask_gsi(gsi, false);
        }
        Ok([u64::from(interrupt.vector), 0, 0])
    }

    /// `IrqAck`: a level-triggered line is unmasked again; returns how
    /// many times the interrupt fired since the last acknowledgement.
    pub(super) fn irq_ack(&mut self, m: &mut impl Machine, id: TaskId, slot: u64) -> Result<[u64; 3], ErrorCode> {
        let (handle, _) = self.interrupt_cap(id, slot)?;
        let interrupt = self.interrupts.get_mut(handle).ok_or(ErrorCode::ObjectDeleted)?;
        if core::mem::take(&mut interrupt.unacknowledged)
            && let IrqSource::IoApic { gsi, level: true } = interrupt.source
        {
            m.mask_gsi(gsi, false);
        }
        Ok([u64::from(core::mem::take(&mut interrupt.arrivals)), 0, 0])
    }

    /// `IrqAllocMsi`: a fresh vector as an interrupt capability; returns
    /// the vector and the MSI address and data a device must write. Each
    /// task may hold [`super::MSI_PER_TASK`].
    pub(super) fn irq_alloc_msi(
        &mut self,
        m: &impl Machine,
        id: TaskId,
        control: u64,
        slot: u64,
    ) -> Result<[u64; 3], ErrorCode> {
        self.require_control(id, control, rights::IRQ)?;
        let slot = self.caps.empty_slot(id, slot)?;
        let held = self.interrupts.iter().filter(|(_, interrupt)| interrupt.creator == Some(id)).count();
        if held >= super::MSI_PER_TASK {
            return Err(ErrorCode::QuotaExceeded);
        }
        let handle = self.create_interrupt(IrqSource::Msi, Some(id))?;
        let vector = self.interrupts.get(handle).map_or(0, |interrupt| interrupt.vector);
        let cap = Capability { object: Object::Interrupt(handle), rights: rights::ACK | rights::GRANT, badge: 0 };
        if let Err(error) = self.install(slot, cap, None) {
            self.interrupts.remove(handle);
            self.vectors[usize::from(vector)] = None;
            return Err(error);
        }
        Ok([u64::from(vector), m.msi_address(), u64::from(vector)])
    }

    /// An interrupt arrived on `vector`: count it and signal its
    /// notification (the bits coalesce: a flood wakes a waiter once); a
    /// level-triggered line stays masked until acknowledged. A device's
    /// message on a vector below 32, which the kernel never hands out and
    /// the CPU uses for its exceptions, is counted and dropped.
    pub fn interrupt(&mut self, m: &mut impl Machine, vector: u8) {
        if vector < FIRST_EXTERNAL_VECTOR {
            self.stray_vector(vector);
            return;
        }
        let Some(handle) = self.vectors[usize::from(vector)] else { return };
        let Some(interrupt) = self.interrupts.get_mut(handle) else { return };
        interrupt.unacknowledged = true;
        interrupt.arrivals = interrupt.arrivals.saturating_add(1);
        if let IrqSource::IoApic { gsi, level: true } = interrupt.source {
            m.mask_gsi(gsi, true);
        }
        if let Some(Route { notification, bits, .. }) = interrupt.target {
            self.signal_object(notification, bits);
        }
    }

    /// Counts and drops a device's message on `vector`, which the kernel
    /// never handed out: one on an exception vector, or one the CPU could
    /// not deliver ([`undelivered_interrupt`]).
    pub fn stray_vector(&mut self, vector: u8) {
        self.stray_vectors = self.stray_vectors.saturating_add(1);
        // Logged at each power of two, so a flood costs little.
        if self.stray_vectors.is_power_of_two() {
            warn!("a device interrupt on exception vector {=u8} ignored ({=u64} so far)", vector, self.stray_vectors);
        }
    }

    fn port_range(&self, id: TaskId, slot: u64, port: u64, width: u64, needed: u32) -> Result<(u16, u8), ErrorCode> {
        let (_, cap) = self.caps.lookup(id, slot)?;
        let Object::IoPorts { base, count } = cap.object else { return Err(ErrorCode::WrongKind) };
        if !cap.has(needed) {
            return Err(ErrorCode::PermissionDenied);
        }
        if !matches!(width, 1 | 2 | 4) {
            return Err(ErrorCode::InvalidArgument);
        }
        let end = u64::from(base) + u64::from(count);
        if port < u64::from(base) || port.saturating_add(width) > end {
            return Err(ErrorCode::PermissionDenied);
        }
        Ok((port as u16, width as u8))
    }

    /// `PortIn`.
    pub(super) fn port_in(&mut self, m: &mut impl Machine, id: TaskId, args: [u64; 6]) -> Result<[u64; 3], ErrorCode> {
        let (port, width) = self.port_range(id, args[0], args[1], args[2], rights::RECEIVE)?;
        Ok([u64::from(m.port_read(port, width)), 0, 0])
    }

    /// `PortOut`.
    pub(super) fn port_out(&mut self, m: &mut impl Machine, id: TaskId, args: [u64; 6]) -> Result<[u64; 3], ErrorCode> {
        let (port, width) = self.port_range(id, args[0], args[1], args[2], rights::SEND)?;
        m.port_write(port, width, args[3] as u32);
        Ok([0; 3])
    }
}
