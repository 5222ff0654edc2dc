//! The remapping unit handle: its registers, capabilities and queue state.

use super::error::UnitError;
use super::queue::{Queue, QueueConfig, QueueMemory};
use crate::capability::Capabilities;
use crate::memory::TablePage;
use crate::registers::{self, Register32, Register64, Registers, gcmd, gsts};

/// Register polls before an operation counts as timed out. QEMU finishes
/// every command before the write returns; real units take microseconds.
pub const DEFAULT_SPIN_LIMIT: u32 = 1_000_000;

/// One VT-d remapping unit, driven through its registers.
pub struct RemappingUnit<R: Registers, Q: QueueMemory> {
    pub(crate) registers: R,
    pub(crate) capabilities: Capabilities,
    pub(crate) queue: Option<Queue<Q>>,
    pub(super) spin_limit: u32,
}

impl<R: Registers, Q: QueueMemory> RemappingUnit<R, Q> {
    /// Reads and checks the unit's capabilities; `register_window` is the
    /// size of its mapped register set (the DRHD's register size).
    pub fn new(mut registers: R, register_window: u64) -> Result<Self, UnitError> {
        let cap = registers.read64(registers::CAP);
        let ecap = registers.read64(registers::ECAP);
        let capabilities = Capabilities::decode(cap, ecap)?;
        capabilities.check_register_window(register_window)?;
        Ok(Self { registers, capabilities, queue: None, spin_limit: DEFAULT_SPIN_LIMIT })
    }

    /// Sets how many register polls an operation may take.
    pub fn set_spin_limit(&mut self, spins: u32) {
        self.spin_limit = spins.max(1);
    }

    /// The decoded capabilities.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// The architecture version as (major, minor).
    pub fn version(&mut self) -> (u8, u8) {
        let version = self.registers.read32(registers::VER);
        ((version >> 4 & 0xf) as u8, (version & 0xf) as u8)
    }

    /// The register access, for what this type does not cover.
    pub fn registers(&mut self) -> &mut R {
        &mut self.registers
    }

    /// True if queued invalidation is in use.
    pub fn queued_invalidation(&self) -> bool {
        self.queue.is_some()
    }

    /// Polls a 32-bit register until `mask` bits are all set (`set`) or
    /// all clear.
    pub(super) fn wait32(
        &mut self,
        register: Register32,
        mask: u32,
        set: bool,
        operation: &'static str,
    ) -> Result<u32, UnitError> {
        for _ in 0..self.spin_limit {
            let value = self.registers.read32(register);
            let done = if set { value & mask == mask } else { value & mask == 0 };
            if done {
                return Ok(value);
            }
        }
        Err(UnitError::Timeout { operation })
    }

    /// Polls a 64-bit register until the `mask` bits are all clear.
    pub(super) fn wait64_clear(
        &mut self,
        register: Register64,
        mask: u64,
        operation: &'static str,
    ) -> Result<u64, UnitError> {
        for _ in 0..self.spin_limit {
            let value = self.registers.read64(register);
            if value & mask == 0 {
                return Ok(value);
            }
        }
        Err(UnitError::Timeout { operation })
    }
}

impl<R: Registers, Q: QueueMemory> RemappingUnit<R, Q> {
    /// Brings the unit to a known state over `root`: queued invalidation
    /// off if a previous owner left it on, root table set, write buffer
    /// flushed, queued invalidation on when given and supported, and every
    /// cache invalidated. Translation stays as it was: turning it on is a
    /// separate decision ([`RemappingUnit::enable_translation`]).
    pub fn bring_up(&mut self, root: TablePage, queue: Option<(Q, QueueConfig)>) -> Result<(), UnitError> {
        if self.registers.read32(registers::GSTS) & gsts::QIES != 0 {
            self.global_command(gcmd::QIE, false, gsts::QIES, false, "disable queued invalidation")?;
        }
        self.set_root_table(root)?;
        self.flush_write_buffer()?;
        if let Some((memory, config)) = queue.filter(|_| self.capabilities.queued_invalidation) {
            self.enable_queued_invalidation(memory, config)?;
        }
        self.invalidate_all()
    }
}
