//! IO APIC lines handed to the task that owns interrupt remapping.
//!
//! The kernel routes IO APIC lines itself (boot grants name them), in
//! compatibility format. Once a remapping unit's owner has turned
//! interrupt remapping on, it reads the lines here, writes an entry for
//! each (with the IO APIC's source id), and has the kernel rewrite each
//! line's redirection entry to name it. The authority is the register
//! capability of the unit whose DMAR scope lists the IO APIC, with the
//! rights to read it (to learn the lines) and to program it (to move a
//! line): whoever may program that unit decides where the IO APIC's
//! interrupts go, and nobody else.

use capabilities::ErrorCode;
use capabilities::abi::rights;

use super::{Kernel, Machine};
use crate::cspace::Object;
use crate::objects::IrqSource;
use crate::task::TaskId;

/// `IoApicLine` past the last line, and a handle the line has none of.
const NONE: u64 = u64::MAX;

impl Kernel {
    /// Checks that the capability in `slot` is the registers of the unit
    /// that remaps the IO APIC, with the rights `needed`.
    fn require_remapping_unit(&self, id: TaskId, slot: u64, needed: u32) -> Result<(), ErrorCode> {
        let (_, cap) = self.caps.lookup(id, slot)?;
        let Object::DeviceMemory { base, .. } = cap.object else { return Err(ErrorCode::WrongKind) };
        if !cap.has(needed) || !self.remaps_the_io_apic(base) {
            return Err(ErrorCode::PermissionDenied);
        }
        Ok(())
    }

    /// `IoApicLine`: the `index`th IO APIC line routed.
    pub(super) fn ioapic_line(
        &self,
        m: &impl Machine,
        id: TaskId,
        unit: u64,
        index: u64,
    ) -> Result<[u64; 3], ErrorCode> {
        self.require_remapping_unit(id, unit, rights::READ)?;
        let index = usize::try_from(index).map_err(|_| ErrorCode::NotFound)?;
        let (interrupt, gsi, level) = self
            .interrupts
            .iter()
            .filter_map(|(_, interrupt)| match interrupt.source {
                IrqSource::IoApic { gsi, level } => Some((interrupt, gsi, level)),
                IrqSource::Msi => None,
            })
            .nth(index)
            .ok_or(ErrorCode::NotFound)?;
        let destination = (m.msi_address() >> 12) & 0xff;
        let flags = u64::from(gsi) | u64::from(level) << 8 | u64::from(interrupt.remapped.is_some()) << 9;
        let handle = interrupt.remapped.map_or(NONE, u64::from);
        Ok([flags, u64::from(interrupt.vector) | destination << 8, handle])
    }

    /// `IoApicRemap`: line `gsi` goes through entry `handle` from now on.
    pub(super) fn ioapic_remap(
        &mut self,
        m: &mut impl Machine,
        id: TaskId,
        args: [u64; 6],
    ) -> Result<[u64; 3], ErrorCode> {
        let [unit, gsi, handle, ..] = args;
        self.require_remapping_unit(id, unit, rights::READ | rights::WRITE)?;
        let handle = u16::try_from(handle).map_err(|_| ErrorCode::InvalidArgument)?;
        let gsi = u8::try_from(gsi).map_err(|_| ErrorCode::NotFound)?;
        let interrupt = self
            .interrupts
            .iter_mut()
            .map(|(_, interrupt)| interrupt)
            .find(|interrupt| matches!(interrupt.source, IrqSource::IoApic { gsi: line, .. } if line == gsi))
            .ok_or(ErrorCode::NotFound)?;
        let level = matches!(interrupt.source, IrqSource::IoApic { level: true, .. });
        m.remap_gsi(gsi, interrupt.vector, level, handle);
        interrupt.remapped = Some(handle);
        Ok([0; 3])
    }
}
