//! Taking a device back: release, its holder's death, and the IOMMU server's reclaims.
//!
//! The order is the one issue 7 asks for: the holder's capabilities are
//! revoked first (so it can no longer touch the device; its interrupt
//! entry goes with its interrupt capability), then the device
//! is quiesced (so nothing it started keeps running), and only then is a
//! DMA-capable driver's claim released to the IOMMU server.

use capabilities::ErrorCode;
use capabilities::pci::{Bdf, MAX_FUNCTIONS};
use pci_api::Reply;

use super::device::{Role, Unquiesced};
use super::env::{Hardware, IommuLink, Kernel};
use super::interrupts::rest_bus_master;
use super::iommu;
use super::quiesce::quiesce;
use super::refusal::{Refusal, refuse, truncated};
use super::state::DriverCore;
use crate::config::ConfigSpace;

/// Most `PendingReclaims` pages one notification leads to: each page
/// moves on by a member or a group, so this covers every function of a
/// topology in groups of one, plus the reply that ends the walk.
const MAX_RECLAIM_PAGES: usize = 2 * MAX_FUNCTIONS + 1;

/// A reclaimed group being walked page by page.
struct Walk {
    /// The group.
    group: u16,
    /// Members quiesced so far.
    quiesced: u16,
    /// Members that could not be quiesced so far.
    failed: u16,
}

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
        for (bar, slot) in device.bars.iter().zip(holder.bars) {
            let Some(slot) = slot else { continue };
            match hw.kernel.revoke(slot) {
                Ok(()) => hw.kernel.delete(slot),
                // Kept, not deleted: deleting would leave the holder's copy
                // beyond any later revocation.
                Err(code) => error!("{}: BAR{=u8} copies not revoked: {}", bdf, bar.index, code),
            }
        }
        self.stop_msix(hw, position, &holder);
        let device = &mut self.devices[position];
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
        let quiesced = match quiesce(hw.config, hw.kernel, &device.function, device.controls.reset) {
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
        if let Err(failure) = quiesce(hw.config, hw.kernel, &device.function, device.controls.reset) {
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
    /// from a user task, asking for their members a page at a time, and
    /// tells it when a group is done and how many members were quiesced.
    /// Devices the user held are taken back; unheld ones are quiesced;
    /// devices a no-DMA driver holds stay with it (it may stay bound in a
    /// user group), at rest. A group with a member that could not be
    /// quiesced, or still held by a user, is not reported: it stays
    /// blocked, and the next notification tries again.
    pub(super) fn reclaim<C: ConfigSpace, K: Kernel, I: IommuLink>(&mut self, hw: &mut Hardware<'_, C, K, I>) {
        let (mut from, mut offset) = (0, 0);
        let mut walk: Option<Walk> = None;
        for _ in 0..MAX_RECLAIM_PAGES {
            let page = match iommu::pending_reclaims(hw.iommu.as_deref_mut(), hw.kernel, from, offset) {
                Ok(Some(page)) => page,
                Ok(None) => return,
                Err(failure) => {
                    let text: heapless::String<480> = truncated(format_args!("{failure}"));
                    error!("pending reclaims unknown: {=str}", text.as_str());
                    return;
                }
            };
            let group = page.group;
            let mut done = match walk.take() {
                Some(walk) if walk.group == group => walk,
                _ => Walk { group, quiesced: 0, failed: 0 },
            };
            for &member in &page.members {
                if self.reclaim_device(hw, group, member) {
                    done.quiesced = done.quiesced.saturating_add(1);
                } else {
                    done.failed = done.failed.saturating_add(1);
                }
            }
            // `pending_reclaims` checked that the page stays within `total`.
            let next = page.offset.saturating_add(page.members.len() as u16);
            if next < page.total {
                (from, offset) = (group, next);
                walk = Some(done);
                continue;
            }
            self.finish_reclaim(hw, &done, page.total);
            match group.checked_add(1) {
                Some(after) => (from, offset) = (after, 0),
                None => return,
            }
        }
        warn!("reclaims still pending after {=usize} pages; waiting for the next notification", MAX_RECLAIM_PAGES);
    }

    /// Reports a walked group reclaimed, if every one of its `total`
    /// members is quiesced and no user still holds one of them.
    fn finish_reclaim<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &mut self,
        hw: &mut Hardware<'_, C, K, I>,
        done: &Walk,
        total: u16,
    ) {
        let group = done.group;
        let user_held = self.devices.iter().filter(|device| {
            device.group == Some(group) && device.holder.is_some_and(|holder| holder.role == Role::User)
        });
        let still_held = user_held.count();
        if done.failed > 0 || still_held > 0 {
            error!(
                "group {=u16}: {=u16} of {=u16} members quiesced, {=usize} still held by a user; it stays blocked",
                group, done.quiesced, total, still_held
            );
            return;
        }
        match iommu::reclaimed(hw.iommu.as_deref_mut(), hw.kernel, group, done.quiesced) {
            Ok(()) => info!("group {=u16} quiesced for the IOMMU server: {=u16} members", group, done.quiesced),
            Err(failure) => {
                let text: heapless::String<480> = truncated(format_args!("{failure}"));
                error!("group {=u16}: reclaim not confirmed: {=str}", group, text.as_str());
            }
        }
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
            error!("group {=u16} lists {}, which enumeration did not find: it cannot be quiesced", group, member);
            return false;
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
                match quiesce(hw.config, hw.kernel, &device.function, device.controls.reset) {
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
