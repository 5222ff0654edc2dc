//! Taking a device: a driver's probe, a user owner's acquire, and the grant they share.

use capabilities::ErrorCode;
use capabilities::abi::PAGE_SIZE;
use capabilities::pci::{Bdf, MsiInfo};
use heapless::Vec;
use iommu_api::OwnerReport;
use pci_api::{BarGrant, DeviceGrant, Reply};

use super::bars::MAX_GRANTED_BARS;
use super::device::{Holder, MsixVectors, NO_GROUP, Role};
use super::env::{Hardware, IommuLink, Kernel, MsiVector, Slot};
use super::interrupts::{HOLDER_COMMAND, disable_msi, program_msi, rest_bus_master, update_command};
use super::iommu;
use super::refusal::{Refusal, refuse};
use super::state::{Answer, DriverCore, MAX_HOLDERS, death_bit};
use crate::config::ConfigSpace;

impl DriverCore {
    /// Refuses every grant once the IOMMU server has refused the topology:
    /// its unit blocks every requester, and a device handed out would only
    /// fault (or, for a no-DMA holder, be held in a system that cannot
    /// isolate it).
    fn check_handing_out(&self) -> Result<(), Refusal> {
        match &self.withheld {
            Some(reason) => Err(refuse!(
                ErrorCode::Busy,
                "the IOMMU server did not take the topology ({}): no device is handed out",
                reason.as_str()
            )),
            None => Ok(()),
        }
    }

    /// `Probe`: the `index`th device bound to `caller`, claiming its group's
    /// default domain first if the binding does DMA.
    pub(super) fn probe<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &mut self,
        hw: &mut Hardware<'_, C, K, I>,
        caller: u16,
        index: u8,
        presented: Option<Slot>,
    ) -> Result<Answer, Refusal> {
        self.check_handing_out()?;
        let mut bound_here = self.devices.iter().enumerate().filter_map(|(position, device)| {
            device.binding.filter(|bound| bound.driver == caller).map(|bound| (position, bound))
        });
        let Some((position, bound)) = bound_here.nth(usize::from(index)) else {
            let count = self.devices.iter().filter(|d| d.binding.is_some_and(|b| b.driver == caller)).count();
            return Err(refuse!(
                ErrorCode::NotFound,
                "no device number {index} is bound to {} (it has {count})",
                self.name(caller)
            ));
        };
        self.check_free(position, caller)?;
        self.retry_quiesce(hw, position)?;
        self.watch_presented(hw, caller, presented)?;
        let bdf = self.devices[position].function.bdf;
        let handle = if bound.dma {
            Some(self.claim(hw, position, caller)?)
        } else {
            self.learn_group(hw, position);
            None
        };
        self.grant(hw, position, caller, Role::Driver { dma: bound.dma }, handle).inspect_err(|_| {
            if handle.is_some() {
                self.unclaim(hw, bdf, caller, handle);
            }
        })
    }

    /// `Acquire`: `device`, if `caller` owns its group and no driver is
    /// bound to it (a bound device is its driver's, even before it probes).
    pub(super) fn acquire<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &mut self,
        hw: &mut Hardware<'_, C, K, I>,
        caller: u16,
        device: Bdf,
        presented: Option<Slot>,
    ) -> Result<Answer, Refusal> {
        self.check_handing_out()?;
        let position = self.find(device)?;
        self.check_free(position, caller)?;
        if let Some(bound) = self.devices[position].binding {
            return Err(refuse!(
                ErrorCode::PermissionDenied,
                "{device} is bound to driver {}; {} may not acquire it (only unbound devices of its group)",
                self.name(bound.driver),
                self.name(caller)
            ));
        }
        self.retry_quiesce(hw, position)?;
        self.watch_presented(hw, caller, presented)?;
        let (group, owner) = iommu::owner(hw.iommu.as_deref_mut(), hw.kernel, device)
            .map_err(|failure| refuse!(failure.code(), "{device}: cannot learn who owns its group: {failure}"))?;
        self.devices[position].group = Some(group);
        if owner != (OwnerReport::User { task: caller }) {
            return Err(refuse!(
                ErrorCode::PermissionDenied,
                "{device} is in group {group}, which {}; {} must own the group (claim it from the IOMMU server) to acquire it",
                self.owner_text(owner),
                self.name(caller)
            ));
        }
        if self.devices[position].controls.reset.is_none() {
            if !self.assignment_without_reset {
                return Err(refuse!(
                    ErrorCode::PermissionDenied,
                    "{device} has no function-level reset, so what {} left running in it could not be stopped for its next holder; the policy's pci endpoint must say assignment-without-reset for a user to acquire it",
                    self.name(caller)
                ));
            }
            warn!(
                "{} has no reset and goes to user task {=str} anyway (the policy says assignment-without-reset)",
                device,
                self.name(caller)
            );
        }
        self.grant(hw, position, caller, Role::User, None)
    }

    /// Refuses a device that is held, or when the server holds its most.
    fn check_free(&self, position: usize, caller: u16) -> Result<(), Refusal> {
        let device = &self.devices[position];
        if let Some(holder) = device.holder {
            return Err(refuse!(
                ErrorCode::Busy,
                "{} (group {}) is held by {}; {} cannot take it",
                device.function.bdf,
                GroupText(device.group),
                self.name(holder.task),
                self.name(caller)
            ));
        }
        if self.holders >= MAX_HOLDERS {
            return Err(refuse!(
                ErrorCode::QuotaExceeded,
                "{} devices are held, the most the server hands out; {} cannot take {}",
                MAX_HOLDERS,
                self.name(caller),
                device.function.bdf
            ));
        }
        Ok(())
    }

    /// Checks that the task capability sent with the request names the
    /// caller, and watches it, so the caller's death gives the device back.
    fn watch_presented<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &self,
        hw: &mut Hardware<'_, C, K, I>,
        caller: u16,
        presented: Option<Slot>,
    ) -> Result<(), Refusal> {
        let name = self.name(caller);
        let Some(slot) = presented else {
            return Err(refuse!(
                ErrorCode::InvalidArgument,
                "{name}: send your own task capability (slot 1) with the request, so your death gives the device back"
            ));
        };
        let named = hw.kernel.task_of(slot).map_err(|code| {
            refuse!(code, "{name}: the capability sent with the request is not a task capability ({})", code.name())
        })?;
        if named != caller {
            return Err(refuse!(
                ErrorCode::PermissionDenied,
                "the task capability sent names {}, not the caller {name}",
                self.name(named)
            ));
        }
        let bit = death_bit(caller).ok_or_else(|| refuse!(ErrorCode::InvalidArgument, "{name} cannot be watched"))?;
        hw.kernel
            .watch(slot, bit)
            .map_err(|code| refuse!(code, "{name} cannot be watched for its death ({})", code.name()))
    }

    /// Claims the group's default domain for `driver`; the DMA handle.
    fn claim<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &mut self,
        hw: &mut Hardware<'_, C, K, I>,
        position: usize,
        driver: u16,
    ) -> Result<Slot, Refusal> {
        let bdf = self.devices[position].function.bdf;
        match iommu::claim_kernel(hw.iommu.as_deref_mut(), hw.kernel, bdf, driver) {
            Ok((group, handle)) => {
                self.devices[position].group = Some(group);
                Ok(handle)
            }
            Err(failure) => {
                if matches!(failure, iommu::IommuFailure::Refused { .. }) {
                    self.learn_group(hw, position);
                }
                let refusal = refuse!(
                    failure.code(),
                    "{bdf} (group {}): DMA-capable driver {} not bound: {failure}",
                    GroupText(self.devices[position].group),
                    self.name(driver)
                );
                warn!("probe refused: {=str}", refusal.reason.as_str());
                Err(refusal)
            }
        }
    }

    /// A device-memory capability for each of the device's granted BARs,
    /// made for `task`'s grant; none if one cannot be made.
    fn bar_caps<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &self,
        hw: &mut Hardware<'_, C, K, I>,
        position: usize,
        task: u16,
    ) -> Result<[Option<Slot>; MAX_GRANTED_BARS], Refusal> {
        let device = &self.devices[position];
        let mut slots = [None; MAX_GRANTED_BARS];
        for (bar, slot) in device.bars.iter().zip(slots.iter_mut()) {
            match hw.kernel.create_device_memory(bar.holder_base(), bar.pages()) {
                Ok(created) => *slot = Some(created),
                Err(code) => {
                    for made in slots.into_iter().flatten() {
                        hw.kernel.delete(made);
                    }
                    return Err(refuse!(
                        code,
                        "{}: BAR{} at {:#x}: no device-memory capability for {} ({})",
                        device.function.bdf,
                        bar.index,
                        bar.base,
                        self.name(task),
                        code.name()
                    ));
                }
            }
        }
        Ok(slots)
    }

    /// Gives a claim back after a grant failed.
    fn unclaim<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &self,
        hw: &mut Hardware<'_, C, K, I>,
        bdf: Bdf,
        driver: u16,
        handle: Option<Slot>,
    ) {
        if let Some(slot) = handle {
            hw.kernel.delete(slot);
        }
        if iommu::release_kernel(hw.iommu.as_deref_mut(), hw.kernel, bdf, driver).is_err() {
            warn!("{}: the claim for {=str} could not be released after a failed grant", bdf, self.name(driver));
        }
    }

    /// Asks the IOMMU server for the device's group if it is not known (for
    /// grants and reasons; without an IOMMU server it stays unknown).
    pub(super) fn learn_group<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &mut self,
        hw: &mut Hardware<'_, C, K, I>,
        position: usize,
    ) {
        if self.devices[position].group.is_some() || hw.iommu.is_none() {
            return;
        }
        let bdf = self.devices[position].function.bdf;
        if let Ok((group, _)) = iommu::owner(hw.iommu.as_deref_mut(), hw.kernel, bdf) {
            self.devices[position].group = Some(group);
        }
    }

    /// Programs an MSI vector if the device has MSI, turns decoding on
    /// (bus mastering stays off for an endpoint: the holder turns it on
    /// itself if it may), and records the holder; the answer lists the BAR
    /// capabilities, the interrupt and the DMA handle, in that order.
    fn grant<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &mut self,
        hw: &mut Hardware<'_, C, K, I>,
        position: usize,
        task: u16,
        role: Role,
        dma_handle: Option<Slot>,
    ) -> Result<Answer, Refusal> {
        let function = self.devices[position].function;
        let bdf = function.bdf;
        let (msi, interrupt_entry) = match function.msi {
            Some(info) => {
                let vector = hw
                    .kernel
                    .alloc_msi()
                    .map_err(|code| refuse!(code, "{bdf}: no MSI vector for {} ({})", self.name(task), code.name()))?;
                let message = match self.remap(hw, bdf, task, vector) {
                    Ok(message) => message,
                    Err(refusal) => {
                        hw.kernel.delete(vector.slot);
                        return Err(refusal);
                    }
                };
                if let Err(error) = program_msi(hw.config, bdf, info, message.address, message.data) {
                    free_vector(hw, bdf, info, vector, message.entry);
                    return Err(refuse!(ErrorCode::InvalidArgument, "{bdf}: MSI not programmed: {error}"));
                }
                (Some(vector), message.entry)
            }
            None => (None, None),
        };
        let command = self.bar_caps(hw, position, task).and_then(|bars| {
            match update_command(hw.config, bdf, HOLDER_COMMAND, 0).and_then(|()| rest_bus_master(hw.config, &function))
            {
                Ok(()) => Ok(bars),
                Err(error) => {
                    for slot in bars.into_iter().flatten() {
                        hw.kernel.delete(slot);
                    }
                    Err(refuse!(ErrorCode::InvalidArgument, "{bdf}: decoding not enabled: {error}"))
                }
            }
        });
        let bars = match command {
            Ok(bars) => bars,
            Err(refusal) => {
                if let (Some(vector), Some(info)) = (msi, function.msi) {
                    free_vector(hw, bdf, info, vector, interrupt_entry);
                }
                return Err(refusal);
            }
        };
        let device = &mut self.devices[position];
        device.holder =
            Some(Holder { task, role, msi, interrupt_entry, msix: MsixVectors::default(), dma_handle, bars });
        self.holders += 1;
        let device = &self.devices[position];
        let mut caps: Vec<Slot, 4> = bars.iter().flatten().copied().collect();
        let bars = device
            .bars
            .iter()
            .map(|bar| BarGrant {
                index: bar.index,
                size: bar.size,
                offset: bar.holder_offset(),
                len: bar.pages() * PAGE_SIZE,
            })
            .collect();
        // At most two BARs, an interrupt and a handle: four, as a message carries.
        let _ = caps.extend_from_slice(msi.map(|vector| vector.slot).as_slice());
        let _ = caps.extend_from_slice(dma_handle.as_slice());
        let grant = DeviceGrant {
            device: bdf,
            vendor: function.vendor_id,
            device_id: function.device_id,
            group: device.group.unwrap_or(NO_GROUP),
            bars,
            vector: msi.map(|vector| vector.vector),
            dma: dma_handle.is_some(),
        };
        let what = match role {
            Role::Driver { dma: true } => "its DMA-capable driver",
            Role::Driver { dma: false } => "its driver (no DMA)",
            Role::User => "the user task owning its group",
        };
        match device.group {
            Some(group) => info!("{} (group {=u16}) granted to {=str}, {=str}", bdf, group, self.name(task), what),
            None => info!("{} granted to {=str}, {=str}", bdf, self.name(task), what),
        }
        Ok(Answer { reply: Reply::Granted(grant), caps })
    }

    /// The message `bdf` must send for `vector`: the IOMMU server's, which
    /// names an interrupt entry for `task` when it remaps interrupts. With
    /// an IOMMU server connected, a device is never programmed with the
    /// kernel's compatibility-format message behind the server's back: if
    /// the server refuses, so does the grant. Without one (no remapping
    /// is possible), the kernel's message is used.
    pub(super) fn remap<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &self,
        hw: &mut Hardware<'_, C, K, I>,
        bdf: Bdf,
        task: u16,
        vector: MsiVector,
    ) -> Result<iommu::Remapped, Refusal> {
        if hw.iommu.is_none() {
            return Ok(iommu::Remapped { address: vector.address, data: vector.data, entry: None });
        }
        iommu::alloc_interrupt(hw.iommu.as_deref_mut(), hw.kernel, bdf, task, vector.address, vector.data)
            .map_err(|failure| refuse!(failure.code(), "{bdf}: no interrupt entry for {}: {failure}", self.name(task)))
    }

    /// Who owns a group, in words.
    pub(super) fn owner_text(&self, owner: OwnerReport) -> OwnerText<'_> {
        OwnerText { owner, core: self }
    }
}

/// Frees a vector a failed grant had allocated, and its interrupt entry,
/// with the device's MSI off.
fn free_vector<C: ConfigSpace, K: Kernel, I: IommuLink>(
    hw: &mut Hardware<'_, C, K, I>,
    bdf: Bdf,
    info: MsiInfo,
    vector: MsiVector,
    entry: Option<u16>,
) {
    let _ = disable_msi(hw.config, bdf, info);
    if let Some(entry) = entry
        && iommu::free_interrupt(hw.iommu.as_deref_mut(), hw.kernel, bdf, entry).is_err()
    {
        warn!("{}: interrupt entry {=u16} not given back after a failed grant", bdf, entry);
    }
    hw.kernel.delete(vector.slot);
}

/// A group number, or "unknown" when no IOMMU server said.
pub(super) struct GroupText(pub Option<u16>);

impl core::fmt::Display for GroupText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(group) => write!(f, "{group}"),
            None => f.write_str("unknown"),
        }
    }
}

/// An owner report in words ("user task dma-user owns it").
pub(super) struct OwnerText<'a> {
    owner: OwnerReport,
    core: &'a DriverCore,
}

impl core::fmt::Display for OwnerText<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.owner {
            OwnerReport::Unowned => f.write_str("nobody owns"),
            OwnerReport::Kernel { drivers } => write!(f, "trusted drivers own ({drivers} bound with DMA)"),
            OwnerReport::User { task } => write!(f, "user task {} owns", self.core.name(task)),
            OwnerReport::Reclaiming { task } => write!(f, "is being reclaimed from user task {}", self.core.name(task)),
        }
    }
}
