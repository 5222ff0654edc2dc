//! A holder's MSI-X vectors: programmed, masked and freed by the server through its own table mapping.
//!
//! The holder never maps the table ([`super::msix_pages`]); it asks for
//! entries by number and gets one interrupt capability per entry, whose
//! message the IOMMU server remapped for it. The first request gives up
//! the holder's MSI vector (a device uses one or the other), maps the
//! table into the server, masks every entry and turns MSI-X on with the
//! function mask set, so no entry fires before it is programmed; the
//! function mask comes off once the requested entries are written.

use capabilities::ErrorCode;
use capabilities::pci::{Bdf, MsixInfo};
use heapless::Vec;
use pci_api::{MSIX_PAGE, Reply};

use super::device::{Holder, MAX_MSIX_VECTORS, MsixVector};
use super::env::{Hardware, IommuLink, Kernel};
use super::interrupts::{disable_msi, disable_msix, enable_msix};
use super::iommu;
use super::msix_pages::{ENTRY_BYTES, TablePlace};
use super::refusal::{Refusal, refuse, truncated};
use super::state::{Answer, DriverCore};
use crate::config::ConfigSpace;

/// Byte offsets in a table entry.
const ADDRESS_LOW: u64 = 0;
const ADDRESS_HIGH: u64 = 4;
const DATA: u64 = 8;
const VECTOR_CONTROL: u64 = 12;
/// Vector control: the entry is masked.
const MASKED: u32 = 1;

impl DriverCore {
    /// `MsixVectors`: programs table entries `first..first + count` for
    /// the holder `caller`; their interrupt capabilities.
    pub(super) fn msix_vectors<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &mut self,
        hw: &mut Hardware<'_, C, K, I>,
        caller: u16,
        device: Bdf,
        first: u16,
        count: u8,
    ) -> Result<Answer, Refusal> {
        let position = self.find(device)?;
        self.check_holder(position, caller)?;
        let (info, table) = self.msix_of(position)?;
        let end = u32::from(first) + u32::from(count);
        if count == 0 || usize::from(count) > MSIX_PAGE {
            return Err(refuse!(
                ErrorCode::InvalidArgument,
                "{device}: ask for 1 to {MSIX_PAGE} MSI-X entries at a time"
            ));
        }
        if end > u32::from(info.table_size) {
            return Err(refuse!(
                ErrorCode::InvalidArgument,
                "{device}: entries {first}-{} asked for; its MSI-X table has {}",
                end - 1,
                info.table_size
            ));
        }
        let mut holder = self.devices[position]
            .holder
            .ok_or_else(|| refuse!(ErrorCode::PermissionDenied, "{device} is held by nobody"))?;
        if let Some(taken) = holder.msix.given.iter().flatten().find(|v| (first..end as u16).contains(&v.entry)) {
            return Err(refuse!(
                ErrorCode::Busy,
                "{device}: MSI-X entry {} is already {}'s",
                taken.entry,
                self.name(caller)
            ));
        }
        let free = holder.msix.given.iter().filter(|v| v.is_none()).count();
        if free < usize::from(count) {
            return Err(refuse!(
                ErrorCode::QuotaExceeded,
                "{device}: {} MSI-X vectors held and {count} asked for; a holder may have {MAX_MSIX_VECTORS}",
                MAX_MSIX_VECTORS - free
            ));
        }
        if !holder.msix.on
            && let Err(refusal) = self.start_msix(hw, &mut holder, info, table)
        {
            // The MSI it gave up is gone: the record must say so.
            self.devices[position].holder = Some(holder);
            return Err(refusal);
        }
        let mut made: Vec<MsixVector, MSIX_PAGE> = Vec::new();
        for entry in first..end as u16 {
            match self.program_entry(hw, device, caller, table, entry) {
                // At most MSIX_PAGE entries are asked for.
                Ok(vector) => {
                    let _ = made.push(vector);
                }
                Err(refusal) => {
                    for vector in &made {
                        free_entry(hw, device, table, vector);
                    }
                    self.devices[position].holder = Some(holder);
                    return Err(refusal);
                }
            }
        }
        if let Err(error) = enable_msix(hw.config, device, info, false) {
            for vector in &made {
                free_entry(hw, device, table, vector);
            }
            self.devices[position].holder = Some(holder);
            return Err(refuse!(ErrorCode::InvalidArgument, "{device}: MSI-X not unmasked: {error}"));
        }
        let mut slots = holder.msix.given.iter_mut().filter(|v| v.is_none());
        for vector in &made {
            if let Some(slot) = slots.next() {
                *slot = Some(*vector);
            }
        }
        self.devices[position].holder = Some(holder);
        info!("{}: MSI-X entries {=u16}-{=u32} programmed for {=str}", device, first, end - 1, self.name(caller));
        Ok(Answer {
            reply: Reply::Vectors(made.iter().map(|v| v.vector.vector).collect()),
            caps: made.iter().map(|v| v.vector.slot).collect(),
        })
    }

    /// `MsixMask`: masks or unmasks an entry the holder was given.
    pub(super) fn msix_mask<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &mut self,
        hw: &mut Hardware<'_, C, K, I>,
        caller: u16,
        device: Bdf,
        entry: u16,
        masked: bool,
    ) -> Result<Reply, Refusal> {
        let position = self.find(device)?;
        self.check_holder(position, caller)?;
        let (_, table) = self.msix_of(position)?;
        let given = self.devices[position].holder.map(|holder| holder.msix.given).unwrap_or_default();
        let Some(at) = given.iter().position(|v| v.is_some_and(|v| v.entry == entry)) else {
            return Err(refuse!(
                ErrorCode::NotFound,
                "{device}: MSI-X entry {entry} is not {}'s (ask for it first)",
                self.name(caller)
            ));
        };
        write_entry(hw.kernel, table, entry, VECTOR_CONTROL, u32::from(masked))
            .map_err(|code| refuse!(code, "{device}: MSI-X entry {entry} not written ({})", code.name()))?;
        if let Some(Some(vector)) = self.devices[position].holder.as_mut().map(|holder| &mut holder.msix.given[at]) {
            vector.masked = masked;
        }
        Ok(Reply::Done)
    }

    /// The device's MSI-X capability and table, or why it has none to give.
    fn msix_of(&self, position: usize) -> Result<(MsixInfo, Table), Refusal> {
        let device = &self.devices[position];
        let bdf = device.function.bdf;
        let info = device.function.msix.ok_or_else(|| refuse!(ErrorCode::NotFound, "{bdf} has no MSI-X capability"))?;
        let place = device.msix_table.ok_or_else(|| {
            refuse!(ErrorCode::InvalidArgument, "{bdf}: its MSI-X table lies in no BAR the server can map")
        })?;
        Ok((info, Table { key: position, place }))
    }

    /// Gives up the holder's MSI, maps the table, masks every entry and
    /// turns MSI-X on with the function mask set.
    fn start_msix<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &self,
        hw: &mut Hardware<'_, C, K, I>,
        holder: &mut Holder,
        info: MsixInfo,
        table: Table,
    ) -> Result<(), Refusal> {
        let position = table.key;
        let bdf = self.devices[position].function.bdf;
        if let (Some(vector), Some(msi)) = (holder.msi.take(), self.devices[position].function.msi) {
            let _ = disable_msi(hw.config, bdf, msi);
            if let Some(entry) = holder.interrupt_entry.take() {
                give_back(hw, bdf, entry);
            }
            let _ = hw.kernel.revoke(vector.slot);
            hw.kernel.delete(vector.slot);
        }
        hw.kernel
            .map_table(position, table.place.base, table.place.pages)
            .map_err(|code| refuse!(code, "{bdf}: its MSI-X table cannot be mapped by the server ({})", code.name()))?;
        let masked =
            (0..info.table_size).try_for_each(|entry| write_entry(hw.kernel, table, entry, VECTOR_CONTROL, MASKED));
        let enabled =
            masked.map_err(|code| refuse!(code, "{bdf}: MSI-X entries not masked ({})", code.name())).and_then(|()| {
                enable_msix(hw.config, bdf, info, true)
                    .map_err(|error| refuse!(ErrorCode::InvalidArgument, "{bdf}: MSI-X not enabled: {error}"))
            });
        if let Err(refusal) = enabled {
            let _ = disable_msix(hw.config, bdf, info);
            hw.kernel.unmap_table(position);
            return Err(refusal);
        }
        holder.msix.on = true;
        Ok(())
    }

    /// A fresh vector for `entry`, remapped for `task`, written unmasked.
    fn program_entry<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &self,
        hw: &mut Hardware<'_, C, K, I>,
        bdf: Bdf,
        task: u16,
        table: Table,
        entry: u16,
    ) -> Result<MsixVector, Refusal> {
        let vector = hw
            .kernel
            .alloc_msi()
            .map_err(|code| refuse!(code, "{bdf}: no vector for MSI-X entry {entry} ({})", code.name()))?;
        let message = match self.remap(hw, bdf, task, vector) {
            Ok(message) => message,
            Err(refusal) => {
                hw.kernel.delete(vector.slot);
                return Err(refusal);
            }
        };
        let programmed = MsixVector {
            entry,
            vector,
            address: message.address,
            data: message.data,
            remap: message.entry,
            masked: false,
        };
        let written = [
            (ADDRESS_LOW, message.address as u32),
            (ADDRESS_HIGH, (message.address >> 32) as u32),
            (DATA, message.data),
            (VECTOR_CONTROL, 0),
        ]
        .into_iter()
        .try_for_each(|(at, value)| write_entry(hw.kernel, table, entry, at, value));
        if let Err(code) = written {
            free_entry(hw, bdf, table, &programmed);
            return Err(refuse!(code, "{bdf}: MSI-X entry {entry} not written ({})", code.name()));
        }
        Ok(programmed)
    }

    /// Writes the holder's MSI-X entries again after a reset its holder
    /// asked for (a function-level reset clears the table and the
    /// enable): the others masked, each of its own with its message and
    /// its mask, and MSI-X back on.
    pub(super) fn restore_msix<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &self,
        hw: &mut Hardware<'_, C, K, I>,
        position: usize,
    ) -> Result<(), Refusal> {
        let Some(holder) = self.devices[position].holder.filter(|holder| holder.msix.on) else { return Ok(()) };
        let (info, table) = self.msix_of(position)?;
        let bdf = self.devices[position].function.bdf;
        let not_written = |code: ErrorCode| refuse!(code, "{bdf}: MSI-X entries not written again ({})", code.name());
        (0..info.table_size)
            .try_for_each(|entry| write_entry(hw.kernel, table, entry, VECTOR_CONTROL, MASKED))
            .map_err(not_written)?;
        for vector in holder.msix.given.iter().flatten() {
            [
                (ADDRESS_LOW, vector.address as u32),
                (ADDRESS_HIGH, (vector.address >> 32) as u32),
                (DATA, vector.data),
                (VECTOR_CONTROL, u32::from(vector.masked)),
            ]
            .into_iter()
            .try_for_each(|(at, value)| write_entry(hw.kernel, table, vector.entry, at, value))
            .map_err(not_written)?;
        }
        enable_msix(hw.config, bdf, info, false)
            .map_err(|error| refuse!(ErrorCode::InvalidArgument, "{bdf}: MSI-X not enabled again: {error}"))
    }

    /// Takes the holder's MSI-X vectors back: every entry masked and
    /// MSI-X off, then each interrupt entry freed and each vector revoked,
    /// and the table unmapped. Runs before the quiesce.
    pub(super) fn stop_msix<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &self,
        hw: &mut Hardware<'_, C, K, I>,
        position: usize,
        holder: &Holder,
    ) {
        if !holder.msix.on {
            return;
        }
        let device = &self.devices[position];
        let bdf = device.function.bdf;
        if let Some(info) = device.function.msix
            && let Err(error) = disable_msix(hw.config, bdf, info)
        {
            error!("{}: MSI-X not turned off: {}", bdf, error);
        }
        if let Some(place) = device.msix_table {
            let table = Table { key: position, place };
            for vector in holder.msix.given.iter().flatten() {
                free_entry(hw, bdf, table, vector);
            }
        }
        hw.kernel.unmap_table(position);
    }
}

/// A device's mapped MSI-X table: the kernel's key for it and where it lies.
#[derive(Clone, Copy)]
struct Table {
    key: usize,
    place: TablePlace,
}

/// Writes `value` at byte `at` of table entry `entry`.
fn write_entry<K: Kernel>(kernel: &mut K, table: Table, entry: u16, at: u64, value: u32) -> Result<(), ErrorCode> {
    kernel.table_write32(table.key, table.place.offset + u64::from(entry) * ENTRY_BYTES + at, value)
}

/// Masks `vector`'s entry, frees its interrupt entry and revokes its capability.
fn free_entry<C: ConfigSpace, K: Kernel, I: IommuLink>(
    hw: &mut Hardware<'_, C, K, I>,
    bdf: Bdf,
    table: Table,
    vector: &MsixVector,
) {
    if write_entry(hw.kernel, table, vector.entry, VECTOR_CONTROL, MASKED).is_err() {
        warn!("{}: MSI-X entry {=u16} not masked", bdf, vector.entry);
    }
    if let Some(entry) = vector.remap {
        give_back(hw, bdf, entry);
    }
    let _ = hw.kernel.revoke(vector.vector.slot);
    hw.kernel.delete(vector.vector.slot);
}

/// Frees an interrupt entry; one the IOMMU server revoked already is fine.
fn give_back<C: ConfigSpace, K: Kernel, I: IommuLink>(hw: &mut Hardware<'_, C, K, I>, bdf: Bdf, entry: u16) {
    match iommu::free_interrupt(hw.iommu.as_deref_mut(), hw.kernel, bdf, entry) {
        Ok(()) | Err(iommu::IommuFailure::Refused { code: ErrorCode::NotFound, .. }) => {}
        Err(failure) => {
            let text: heapless::String<480> = truncated(format_args!("{failure}"));
            error!("{}: interrupt entry {=u16} not given back: {=str}", bdf, entry, text.as_str());
        }
    }
}
