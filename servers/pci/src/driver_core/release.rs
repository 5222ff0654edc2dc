//! Taking a device back: release, its holder's death, and the IOMMU server's reclaims.
//!
//! The order is the one issue 7 asks for: the holder's capabilities are
//! revoked first (so it can no longer touch the device; its interrupt
//! entry goes with its interrupt capability), then the device
//! is quiesced (so nothing it started keeps running), and only then is a
//! DMA-capable driver's claim released to the IOMMU server.

use capabilities::ErrorCode;
use capabilities::pci::Bdf;
use pci_api::Reply;

use super::device::{Role, Unquiesced};
use super::env::{Hardware, IommuLink, Kernel};
use super::interrupts::rest_bus_master;
use super::iommu;
use super::quiesce::quiesce;
use super::refusal::{Refusal, refuse, truncated};
use super::state::DriverCore;
use crate::config::ConfigSpace;

/// Most `PendingReclaims` rounds one notification leads to (each lists
/// up to eight groups).
const MAX_RECLAIM_ROUNDS: usize = 8;

impl DriverCore {
    /// `Release`: the holder gives `device` back.
    pub(super) fn release<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &mut self,
        hw: &mut Hardware<'_, C, K, I>,
        caller: u16,
        device: Bdf,
    ) -> Result<Reply, Refusal> {
        let position = self.find(device)?;
        self.check_holder(position, caller)?;
        self.take_back(hw, position);
        info!("{} released by {=str}", device, self.name(caller));
        Ok(Reply::Done)
    }

    /// Refuses unless `caller` holds the device at `position`.
    pub(super) fn check_holder(&self, position: usize, caller: u16) -> Result<(), Refusal> {
        let device = &self.devices[position];
        match device.holder {
            Some(holder) if holder.task == caller => Ok(()),
            Some(holder) => Err(refuse!(
                ErrorCode::PermissionDenied,
                "{} is held by {}, not {}",
                device.function.bdf,
                self.name(holder.task),
                self.name(caller)
            )),
            None => Err(refuse!(
                ErrorCode::PermissionDenied,
                "{} is held by nobody; {} must probe or acquire it first",
                device.function.bdf,
                self.name(caller)
            )),
        }
    }

    /// Revokes the holder's capabilities, quiesces the device and releases
    /// a DMA-capable driver's claim. The device is no longer held whatever
    /// happens (the revocation, which is what takes access away, cannot
    /// fail for capabilities the server holds); a failed quiesce keeps the
    /// claim and the device out of use (see [`Unquiesced`]). Whether the
    /// device is quiesced.
    pub(super) fn take_back<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &mut self,
        hw: &mut Hardware<'_, C, K, I>,
        position: usize,
    ) -> bool {
        let device = &mut self.devices[position];
        let Some(holder) = device.holder.take() else { return device.unquiesced.is_none() };
        self.holders = self.holders.saturating_sub(1);
        let bdf = device.function.bdf;
        for bar in &device.bars {
            if let Err(code) = hw.kernel.revoke(bar.slot) {
                error!("{}: BAR{=u8} copies not revoked: {}", bdf, bar.region.index, code);
            }
        }
        if let Some(entry) = holder.interrupt_entry {
            // The IOMMU server revokes a user's entries itself when its
            // group changes hands: an entry already gone is fine.
            match iommu::free_interrupt(hw.iommu.as_deref_mut(), hw.kernel, bdf, entry) {
                Ok(()) | Err(iommu::IommuFailure::Refused { code: ErrorCode::NotFound, .. }) => {}
                Err(failure) => {
                    let text: heapless::String<480> = truncated(format_args!("{failure}"));
                    error!("{}: interrupt entry {=u16} not given back: {=str}", bdf, entry, text.as_str());
                }
            }
        }
        if let Some(vector) = holder.msi {
            let _ = hw.kernel.revoke(vector.slot);
            hw.kernel.delete(vector.slot);
        }
        if let Some(handle) = holder.dma_handle {
            let _ = hw.kernel.revoke(handle);
        }
        let claim = (holder.role == Role::Driver { dma: true }).then_some(holder.task);
        let quiesced = match quiesce(hw.config, hw.kernel, &device.function, device.flr) {
            Ok(()) => true,
            Err(failure) => {
                error!("{}: not quiesced ({}): it stays out of use, and its group with it", bdf, failure);
                device.unquiesced = Some(Unquiesced { claim });
                false
            }
        };
        if quiesced
            && let Some(driver) = claim
            && let Err(failure) = iommu::release_kernel(hw.iommu.as_deref_mut(), hw.kernel, bdf, driver)
        {
            let text: heapless::String<480> = truncated(format_args!("{failure}"));
            error!("{}: claim of {=str} not released: {=str}", bdf, self.names.name(driver), text.as_str());
        }
        if let Some(handle) = holder.dma_handle {
            // Releasing the claim revoked the IOMMU server's original, and
            // with it this copy; a kept claim keeps only the original. The
            // slot is freed either way.
            hw.kernel.delete(handle);
        }
        quiesced
    }

    /// Refuses a device whose last quiesce failed, unless quiescing it now
    /// works; then the claim kept for it is released.
    pub(super) fn retry_quiesce<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &mut self,
        hw: &mut Hardware<'_, C, K, I>,
        position: usize,
    ) -> Result<(), Refusal> {
        let device = &mut self.devices[position];
        let Some(unquiesced) = device.unquiesced else { return Ok(()) };
        let bdf = device.function.bdf;
        if let Err(failure) = quiesce(hw.config, hw.kernel, &device.function, device.flr) {
            return Err(refuse!(
                ErrorCode::Busy,
                "{bdf} is not quiesced since its last holder ({failure}); nobody may take it until it is"
            ));
        }
        device.unquiesced = None;
        info!("{} quiesced at last", bdf);
        if let Some(driver) = unquiesced.claim
            && let Err(failure) = iommu::release_kernel(hw.iommu.as_deref_mut(), hw.kernel, bdf, driver)
        {
            let text: heapless::String<480> = truncated(format_args!("{failure}"));
            error!("{}: kept claim of {=str} not released: {=str}", bdf, self.names.name(driver), text.as_str());
        }
        Ok(())
    }

    /// Takes back every device `task` held; it died.
    pub(super) fn holder_died<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &mut self,
        hw: &mut Hardware<'_, C, K, I>,
        task: u16,
    ) {
        for position in 0..self.devices.len() {
            if self.devices[position].holder.is_some_and(|holder| holder.task == task) {
                self.take_back(hw, position);
                info!("{=str} died: {} taken back", self.name(task), self.devices[position].function.bdf);
            }
        }
    }

    /// Quiesces the devices of every group the IOMMU server is reclaiming
    /// from a user task and tells it when each group is done. Devices the
    /// user held are taken back; unheld ones are quiesced; devices a
    /// no-DMA driver holds stay with it (it may stay bound in a user group).
    pub(super) fn reclaim<C: ConfigSpace, K: Kernel, I: IommuLink>(&mut self, hw: &mut Hardware<'_, C, K, I>) {
        for _ in 0..MAX_RECLAIM_ROUNDS {
            let groups = match iommu::pending_reclaims(hw.iommu.as_deref_mut(), hw.kernel) {
                Ok(groups) => groups,
                Err(failure) => {
                    let text: heapless::String<480> = truncated(format_args!("{failure}"));
                    error!("pending reclaims unknown: {=str}", text.as_str());
                    return;
                }
            };
            if groups.is_empty() {
                return;
            }
            for (group, members) in &groups {
                let mut quiesced = true;
                for &member in members {
                    quiesced &= self.reclaim_device(hw, *group, member);
                }
                if !quiesced {
                    error!("group {=u16}: not every member is quiesced; it stays blocked", group);
                    continue;
                }
                match iommu::reclaimed(hw.iommu.as_deref_mut(), hw.kernel, *group) {
                    Ok(()) => info!("group {=u16} quiesced for the IOMMU server", group),
                    Err(failure) => {
                        let text: heapless::String<480> = truncated(format_args!("{failure}"));
                        error!("group {=u16}: reclaim not confirmed: {=str}", group, text.as_str());
                    }
                }
            }
        }
        warn!("reclaims still pending after {=usize} rounds; waiting for the next notification", MAX_RECLAIM_ROUNDS);
    }

    /// Takes `member` of `group` back from the user, or quiesces it;
    /// whether it is quiesced.
    fn reclaim_device<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &mut self,
        hw: &mut Hardware<'_, C, K, I>,
        group: u16,
        member: Bdf,
    ) -> bool {
        let Ok(position) = self.find(member) else {
            warn!("group {=u16} lists {}, which enumeration did not find", group, member);
            return true;
        };
        self.devices[position].group = Some(group);
        match self.devices[position].holder.map(|holder| (holder.role, holder.task)) {
            Some((Role::User, _)) => self.take_back(hw, position),
            Some((Role::Driver { dma: false }, task)) => {
                // A no-DMA driver may stay bound in a user's group (a stub, a
                // bridge driver); its device only gets bus mastering as at
                // rest: off for an endpoint the user's devices could have
                // reached, on for a bridge that forwards their successors' DMA.
                info!("{} stays with driver {=str} during the reclaim of group {=u16}", member, self.name(task), group);
                match rest_bus_master(hw.config, &self.devices[position].function) {
                    Ok(()) => true,
                    Err(failure) => {
                        error!("{}: bus mastering not as at rest: {}", member, failure);
                        false
                    }
                }
            }
            Some((Role::Driver { dma: true }, task)) => {
                error!(
                    "{} is held by DMA-capable driver {=str} in group {=u16}, which is being reclaimed from a user",
                    member,
                    self.name(task),
                    group
                );
                false
            }
            None => {
                let device = &mut self.devices[position];
                match quiesce(hw.config, hw.kernel, &device.function, device.flr) {
                    Ok(()) => {
                        device.unquiesced = None;
                        true
                    }
                    Err(failure) => {
                        error!("{}: not quiesced: {}", member, failure);
                        device.unquiesced = Some(device.unquiesced.unwrap_or(Unquiesced { claim: None }));
                        false
                    }
                }
            }
        }
    }
}
