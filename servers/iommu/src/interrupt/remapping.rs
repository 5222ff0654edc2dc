//! Interrupt remapping in the service: each unit's table set up at start, entries for the driver core, revocation.
//!
//! Each unit's interrupt-remapping table is set up and remapping turned on
//! when the server starts, before any device can be handed to anyone, on
//! units that can (ECAP.IR, and queued invalidation, the only way to
//! invalidate cached entries). From then on no device message reaches a
//! CPU unless it names an entry the server wrote for that device's
//! requester ids, in the table of the unit that translates the device's
//! group (a device's messages are remapped by the unit its DMA goes
//! through); a group no one unit translates gets no entries.
//!
//! The PCI server, which programs every device's MSI, asks for an entry
//! per vector the kernel allocated (`AllocInterrupt`), naming the task
//! the device is granted to; it gives the entry back when it takes the
//! device back (`FreeInterrupt`). The server does not wait for that: when
//! a user task's group changes hands (release, death) or a driver's DMA
//! claim is released, the entries of that task in that group are revoked
//! here first, so a device that keeps sending its old message raises
//! nothing. Without remapping, the kernel's message is handed back as it
//! is, and user tasks may own groups only if the policy allows it, with a
//! warning on every claim.

use capabilities::ErrorCode;
use capabilities::config::IommuConfig;
use capabilities::pci::Bdf;
use core::ops::ControlFlow;
use heapless::{String, Vec};
use iommu_api::{INTERRUPT_ENTRIES_PER_REPLY, InterruptEntry, InterruptSource, Reply, Request};
use iommu_groups::alias;
use iommu_groups::index::TopologyIndex;

use crate::interrupt::table::{Allocated, Quotas, TABLE_ENTRIES, TABLE_SIZE_FIELD};
use crate::interrupt::{
    CompatMessage, Delivery, EntryOwner, Holder, InterruptTable, RemapEntry, SourceCheck, TableError, Trigger,
    remappable_message,
};
use crate::invalidation::InterruptEntryScope;
use crate::memory::{TablePage, TablePages};
use crate::ownership::Owner;
use crate::registers::Registers;
use crate::service::{Answer, Hardware, Platform, Service, Unit, UnitIndex, refused};
use crate::unit::{QueueMemory, RemappingUnit};

/// Entries one device may have when the policy does not say.
pub const DEFAULT_ENTRIES_PER_DEVICE: u16 = 4;
/// Entries one task may hold across its devices.
pub const ENTRIES_PER_HOLDER: u16 = 16;
/// Most requester ids one device's messages may carry.
const MAX_DEVICE_SOURCES: usize = 8;

/// The unit's table, once remapping is on.
struct Remapping {
    page: TablePage,
    table: InterruptTable,
}

/// Interrupt remapping's state on one unit.
pub struct InterruptState {
    remapping: Option<Remapping>,
    /// Why remapping is off (for logs and refusals).
    off_reason: &'static str,
}

impl InterruptState {
    /// Sets the table up and turns remapping on if the unit can; else
    /// records why not. Never fails: a unit without remapping is still
    /// a unit, and user assignment is then refused unless allowed.
    pub(crate) fn start<R: Registers, Q: QueueMemory, T: TablePages>(
        unit: &mut RemappingUnit<R, Q>,
        pages: &mut T,
        config: &IommuConfig,
    ) -> Self {
        let off = |off_reason| Self { remapping: None, off_reason };
        if !unit.capabilities().interrupt_remapping {
            return off("the unit does not remap interrupts (ECAP.IR clear; QEMU: intel-iommu,intremap=off)");
        }
        if !unit.queued_invalidation() {
            return off("interrupt remapping needs queued invalidation, which is not in use");
        }
        let Some(page) = pages.allocate() else {
            return off("no table memory for the interrupt remapping table");
        };
        let enabled = unit.set_interrupt_table(page, TABLE_SIZE_FIELD).and_then(|()| unit.enable_interrupt_remapping());
        if enabled.is_err() {
            pages.release(page);
            return off("the unit did not enable interrupt remapping");
        }
        let per_device = match config.interrupt_entries_per_device {
            0 => DEFAULT_ENTRIES_PER_DEVICE,
            quota => quota,
        };
        let table = InterruptTable::new(Quotas { per_device, per_holder: ENTRIES_PER_HOLDER });
        Self { remapping: Some(Remapping { page, table }), off_reason: "" }
    }

    /// Whether remapping is on.
    pub fn enabled(&self) -> bool {
        self.remapping.is_some()
    }

    /// Why remapping is off (empty when it is on).
    pub fn off_reason(&self) -> &'static str {
        self.off_reason
    }

    /// Entries in use.
    pub fn in_use(&self) -> usize {
        self.remapping.as_ref().map_or(0, |r| r.table.in_use())
    }

    /// The entry `handle` names, if in use.
    pub fn entry(&self, handle: u16) -> Option<Allocated> {
        self.remapping.as_ref().and_then(|r| r.table.get(handle)).copied()
    }
}

/// Writes entry `handle` (present), high half first: the present bit is
/// in the low half, so the unit never sees a present half-entry.
fn write_entry<T: TablePages>(pages: &mut T, coherent: bool, page: TablePage, handle: u16, value: [u64; 2]) {
    let index = 2 * usize::from(handle);
    pages.write(page, index + 1, value[1]);
    pages.write(page, index, value[0]);
    if !coherent {
        pages.flush(page, index, 2);
    }
}

/// Clears entry `handle`, low half (the present bit) first.
fn clear_entry<T: TablePages>(pages: &mut T, coherent: bool, page: TablePage, handle: u16) {
    let index = 2 * usize::from(handle);
    pages.write(page, index, 0);
    pages.write(page, index + 1, 0);
    if !coherent {
        pages.flush(page, index, 2);
    }
}

/// Clears entry `handle` of `unit`'s table at `page` and invalidates the
/// unit's cache of it.
fn retire<R: Registers, Q: QueueMemory, T: TablePages>(
    unit: &mut RemappingUnit<R, Q>,
    pages: &mut T,
    page: TablePage,
    handle: u16,
) {
    let coherent = unit.capabilities().coherent;
    clear_entry(pages, coherent, page, handle);
    if unit.invalidate_interrupt_entries(InterruptEntryScope::Indexed { index: handle, order: 0 }).is_err() {
        error!("interrupt entry {=u16}: the cache invalidation failed; the unit may still deliver it", handle);
    }
}

/// Revokes every entry `select` picks, on every unit: cleared in the
/// table, then the unit's cache of each invalidated. Returns how many.
pub(crate) fn revoke<P: Platform>(hw: &mut Hardware<P>, select: impl Fn(&EntryOwner) -> bool) -> usize {
    let Hardware { units, pages } = hw;
    let mut count = 0;
    for Unit { unit, interrupts, .. } in units.iter_mut() {
        let Some(remapping) = interrupts.remapping.as_mut() else { continue };
        while let Some((handle, allocated)) = remapping.table.take_first(&select) {
            retire(unit, pages, remapping.page, handle);
            info!("interrupt entry {=u16} of {} revoked", handle, allocated.owner.device);
            count += 1;
        }
    }
    count
}

/// Revokes `task`'s entries in `group` (its ownership of the group ended).
pub(crate) fn revoke_in_group<P: Platform>(hw: &mut Hardware<P>, group: u16, task: u16) {
    revoke(hw, |owner| owner.group == Some(group) && owner.holder == Holder::Task(task));
}

/// Revokes every entry of `task` (it died).
pub(crate) fn revoke_task<P: Platform>(hw: &mut Hardware<P>, task: u16) {
    revoke(hw, |owner| owner.holder == Holder::Task(task));
}

/// Revokes `task`'s entries of `device` (a driver's claim was released).
pub(crate) fn revoke_device<P: Platform>(hw: &mut Hardware<P>, device: Bdf, task: u16) {
    revoke(hw, |owner| owner.device == device && owner.holder == Holder::Task(task));
}

/// The refusal of `caller`'s claim of `group`, translated by `unit`, if
/// that unit cannot remap interrupts and the policy does not allow user
/// assignment without it (counted in `refusals`); an allowed claim
/// without remapping is logged as a warning.
pub(crate) fn refuse_user_claim(
    unit: &InterruptState,
    refusals: &mut u64,
    config: &IommuConfig,
    group: u16,
    caller: u16,
) -> Option<Answer> {
    if unit.enabled() {
        return None;
    }
    let state = unit;
    let name = config.tasks.name(caller);
    if config.assignment_without_interrupt_remapping {
        warn!(
            "group {=u16} goes to user task {=str} WITHOUT interrupt remapping ({=str}): its devices can raise any vector of any CPU; the policy allows it",
            group, name, state.off_reason
        );
        return None;
    }
    *refusals += 1;
    let mut text = String::<240>::new();
    let _ = core::fmt::write(
        &mut text,
        format_args!(
            "no interrupt remapping on this machine ({}): a device of user task {name} could raise any interrupt vector; the policy does not allow user assignment without it",
            state.off_reason
        ),
    );
    Some(refused(ErrorCode::PermissionDenied, &text).into())
}

/// Whether `request` is one of the interrupt requests of the policy
/// operations (counted when refused).
pub(crate) fn is_interrupt_request(request: &Request) -> bool {
    matches!(request, Request::AllocInterrupt { .. } | Request::FreeInterrupt { .. } | Request::Interrupts { .. })
}

fn text(args: core::fmt::Arguments<'_>) -> String<{ iommu_api::REASON_MAX }> {
    let mut text = String::new();
    let _ = core::fmt::write(&mut text, args);
    text
}

fn refuse(code: ErrorCode, args: core::fmt::Arguments<'_>) -> Reply {
    Reply::Refused { code, reason: text(args) }
}

/// `AllocInterrupt`: an entry for `device`'s MSI, whose interrupts go to
/// `holder`; a refusal is counted.
pub(crate) fn allocate<P: Platform>(s: &mut Service<P>, device: Bdf, holder: u16, address: u64, data: u32) -> Reply {
    let reply = allocate_entry(s, device, holder, address, data);
    if matches!(reply, Reply::Refused { .. }) {
        s.interrupt_refusals += 1;
    }
    reply
}

fn allocate_entry<P: Platform>(s: &mut Service<P>, device: Bdf, holder: u16, address: u64, data: u32) -> Reply {
    let names = &s.config.tasks;
    let Some(ready) = s.ready.as_ref() else {
        return refuse(ErrorCode::Busy, format_args!("the IOMMU server is still waiting for the topology"));
    };
    let Some(group) = ready.groups.group_of(device).map(|id| id.0) else {
        return refuse(ErrorCode::NotFound, format_args!("no device {device} in the topology"));
    };
    let is_user = |task: u16| s.config.assignments.iter().any(|assignment| assignment.task == task);
    match ready.ownership.owner(group).ok() {
        Some(Owner::Reclaiming { task }) => {
            return refuse(
                ErrorCode::Busy,
                format_args!("group {group} of {device} is being reclaimed from {}", names.name(task)),
            );
        }
        Some(Owner::User { task, .. }) if task != holder && is_user(holder) => {
            return refuse(
                ErrorCode::PermissionDenied,
                format_args!(
                    "{device} is in group {group}, owned by user task {}, not {}",
                    names.name(task),
                    names.name(holder)
                ),
            );
        }
        Some(Owner::Kernel { .. } | Owner::Unowned) | None if is_user(holder) => {
            return refuse(
                ErrorCode::PermissionDenied,
                format_args!("user task {} does not own group {group} of {device}", names.name(holder)),
            );
        }
        _ => {}
    }
    let Some(unit) = ready.unit_of(group) else {
        return refuse(
            ErrorCode::PermissionDenied,
            format_args!("{device}: group {group} is translated by no one remapping unit, so it gets no entry"),
        );
    };
    let Hardware { units, pages } = &mut s.hw;
    let Some(Unit { unit, interrupts, .. }) = units.get_mut(usize::from(unit)) else {
        return refuse(ErrorCode::NotFound, format_args!("{device}: its remapping unit is not driven"));
    };
    let Some(remapping) = interrupts.remapping.as_mut() else {
        // No remapping: the kernel's message is what the device sends.
        return Reply::Interrupt { address, data, entry: None };
    };
    let delivery = match (CompatMessage { address, data }).delivery() {
        Ok(delivery) => delivery,
        Err(error) => return refuse(ErrorCode::InvalidArgument, format_args!("{device}: {error}")),
    };
    let Some(source) = source_check(&s.topology, device) else {
        return refuse(ErrorCode::NotFound, format_args!("{device}: its requester ids are unknown"));
    };
    let owner = EntryOwner { device, group: Some(group), holder: Holder::Task(holder) };
    let entry = RemapEntry { delivery, source };
    let handle = match remapping.table.allocate(owner, entry) {
        Ok(handle) => handle,
        Err(error) => {
            let code = match error {
                TableError::Full => ErrorCode::OutOfMemory,
                _ => ErrorCode::QuotaExceeded,
            };
            return refuse(code, format_args!("{device} for {}: {error}", names.name(holder)));
        }
    };
    let coherent = unit.capabilities().coherent;
    write_entry(pages, coherent, remapping.page, handle, entry.encode());
    // A not-present entry may be cached too (as fault information).
    let scope = InterruptEntryScope::Indexed { index: handle, order: 0 };
    if unit.invalidate_interrupt_entries(scope).is_err() {
        clear_entry(pages, coherent, remapping.page, handle);
        let _ = remapping.table.free(handle, device);
        return refuse(ErrorCode::Busy, format_args!("{device}: the unit did not take the new interrupt entry"));
    }
    info!(
        "interrupt entry {=u16} for {} (group {=u16}, {=str}): vector {=u8:#x}, {=str}",
        handle,
        device,
        group,
        names.name(holder),
        delivery.vector,
        describe(source).as_str()
    );
    let (address, data) = remappable_message(handle);
    Reply::Interrupt { address, data, entry: Some(handle) }
}

/// The driven unit whose table holds `device`'s entries, if any.
fn unit_of_device<P: Platform>(s: &Service<P>, device: Bdf) -> Option<UnitIndex> {
    let ready = s.ready.as_ref()?;
    ready.unit_of(ready.groups.group_of(device)?.0)
}

/// `FreeInterrupt`.
pub(crate) fn free<P: Platform>(s: &mut Service<P>, device: Bdf, handle: u16) -> Reply {
    let unit = unit_of_device(s, device);
    let Hardware { units, pages } = &mut s.hw;
    let Some(Unit { unit, interrupts, .. }) = unit.and_then(|unit| units.get_mut(usize::from(unit))) else {
        return refuse(ErrorCode::NotFound, format_args!("{device} is under no driven unit: it has no entries"));
    };
    let Some(remapping) = interrupts.remapping.as_mut() else {
        return refuse(ErrorCode::NotFound, format_args!("interrupt remapping is off: {device} has no entries"));
    };
    let kernel_line = remapping.table.get(handle).is_some_and(|a| a.owner.holder == Holder::Kernel);
    if kernel_line || remapping.table.free(handle, device).is_err() {
        return refuse(ErrorCode::NotFound, format_args!("{device} has no interrupt entry {handle}"));
    }
    retire(unit, pages, remapping.page, handle);
    Reply::Done
}

/// `Interrupts`: the figures of `device`'s unit and its entries there, or,
/// with no device (or one in no group, like the IO APIC), every unit's
/// figures summed (remapping on only if every unit remaps) and the
/// device's entries on any.
pub(crate) fn report<P: Platform>(s: &Service<P>, device: Option<Bdf>) -> Reply {
    let unit = device.and_then(|device| unit_of_device(s, device));
    let counted = |index: usize| unit.is_none_or(|unit| usize::from(unit) == index);
    let states =
        || s.hw.units.iter().enumerate().filter(move |(index, _)| counted(*index)).map(|(_, unit)| &unit.interrupts);
    let mut entries = Vec::<InterruptEntry, INTERRUPT_ENTRIES_PER_REPLY>::new();
    let device_entries = device.into_iter().flat_map(|device| {
        states()
            .filter_map(|state| state.remapping.as_ref())
            .flat_map(move |remapping| remapping.table.entries().filter(move |(_, a)| a.owner.device == device))
    });
    for (handle, allocated) in device_entries {
        if entries.push(listed(handle, allocated)).is_err() {
            break;
        }
    }
    Reply::Interrupts {
        remapping: states().all(InterruptState::enabled),
        in_use: states().map(|state| state.in_use() as u32).sum(),
        capacity: states().filter(|state| state.enabled()).count() as u32 * (TABLE_ENTRIES as u32 - 1),
        refused: s.interrupt_refusals,
        entries,
    }
}

/// Entry `handle` as the protocol lists it.
fn listed(handle: u16, allocated: &Allocated) -> InterruptEntry {
    let holder = match allocated.owner.holder {
        Holder::Task(task) => Some(task),
        Holder::Kernel => None,
    };
    let source = match allocated.entry.source {
        SourceCheck::Exact(id) => InterruptSource::Exact(Bdf::from_requester_id(id)),
        SourceCheck::MaskedFunction { id, qualifier } => {
            InterruptSource::Function { id: Bdf::from_requester_id(id), qualifier }
        }
        SourceCheck::Buses { first, last } => InterruptSource::Buses { first, last },
    };
    InterruptEntry { entry: handle, holder, vector: allocated.entry.delivery.vector, source }
}

/// The source check for `device`'s messages: its own requester id and
/// every id its DMA may carry (bridges above it substitute theirs).
pub fn source_check(topology: &[capabilities::pci::PciFunction], device: Bdf) -> Option<SourceCheck> {
    let index = TopologyIndex::new(topology).ok()?;
    let position = index.find(device)?;
    let mut ids: Vec<Bdf, MAX_DEVICE_SOURCES> = Vec::new();
    let walked = alias::for_each_dma_alias(&index, position, |_, id| {
        if ids.contains(&id) {
            return ControlFlow::Continue(());
        }
        if ids.push(id).is_err() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    });
    // Too many ids to list: check the bus range of the ones known and the
    // topology's final requester, which is what the unit sees.
    if walked.is_break() {
        let last = alias::requester_id(&index, position);
        let _ = ids.pop();
        let _ = ids.push(last);
    }
    SourceCheck::covering(&ids)
}

/// A source check in words, for the log.
fn describe(source: SourceCheck) -> String<48> {
    let mut text = String::new();
    let _ = core::fmt::write(&mut text, format_args!("{source}"));
    text
}

impl<P: Platform> Service<P> {
    /// Interrupt remapping's state on driven unit `unit`.
    pub fn interrupts(&self, unit: UnitIndex) -> Option<&InterruptState> {
        self.hw.units.get(usize::from(unit)).map(|unit| &unit.interrupts)
    }

    /// Interrupt requests refused since boot: entries asked for (or asked
    /// for without the right) and user claims refused for want of remapping.
    pub fn interrupt_refusals(&self) -> u64 {
        self.interrupt_refusals
    }

    /// An entry on driven unit `unit` for an IO APIC line the kernel
    /// routes: `source` is the IO APIC's source id (from the unit's DMAR
    /// device scope). Returns the handle the line's redirection entry must
    /// name, or `None` when the unit does not remap or its table refuses.
    pub fn remap_ioapic_line(
        &mut self,
        unit: UnitIndex,
        source: u16,
        vector: u8,
        destination: u8,
        level: bool,
    ) -> Option<u16> {
        let Hardware { units, pages } = &mut self.hw;
        let Unit { unit, interrupts, .. } = units.get_mut(usize::from(unit))?;
        let remapping = interrupts.remapping.as_mut()?;
        let trigger = if level { Trigger::Level } else { Trigger::Edge };
        let entry =
            RemapEntry { delivery: Delivery { vector, destination, trigger }, source: SourceCheck::Exact(source) };
        let owner = EntryOwner { device: Bdf::from_requester_id(source), group: None, holder: Holder::Kernel };
        let handle = remapping.table.allocate(owner, entry).ok()?;
        let coherent = unit.capabilities().coherent;
        write_entry(pages, coherent, remapping.page, handle, entry.encode());
        let scope = InterruptEntryScope::Indexed { index: handle, order: 0 };
        if unit.invalidate_interrupt_entries(scope).is_err() {
            clear_entry(pages, coherent, remapping.page, handle);
            let _ = remapping.table.free(handle, owner.device);
            return None;
        }
        Some(handle)
    }
}
