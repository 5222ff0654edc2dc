//! DMA ownership of IOMMU groups: one state per group, changed only by
//! functions that return `Result`.
//!
//! A group is unowned, kernel-owned (trusted drivers use its default
//! domain through the DMA API), user-owned (one task, optionally attached
//! to one of its I/O address spaces), or being reclaimed (released or its
//! owner died; blocked until the PCI server has quiesced its devices).
//! Kernel and user ownership are variants of one enum, so they cannot hold
//! at once.
//!
//! Every change of translation goes through [`GroupHardware`], and is made
//! *before* the state that needs it is recorded when it tightens access
//! (to blocking) and only *after* the state allows it when it loosens
//! access (back to the default domain). So after every operation, success
//! or failure, this holds (checked by [`Ownership::check`] in the tests):
//!
//! * a user-owned or reclaiming group never translates through the default
//!   domain;
//! * an unowned or kernel-owned group translates through its default domain.

use heapless::Vec;

/// Index of a group in the server's group table.
pub type GroupId = u16;
/// A task, by boot-manifest index.
pub type TaskIndex = u16;
/// An I/O address space, by the server's index.
pub type IoasId = u16;

/// Most groups one server keeps: as many as formation may make.
pub use iommu_groups::MAX_GROUPS;

/// Who owns a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Owner {
    /// Nobody: its devices translate through the default domain, unused.
    Unowned,
    /// Trusted drivers: this many DMA-capable drivers hold DMA handles.
    Kernel {
        /// Bound DMA-capable drivers (at least one).
        drivers: u16,
    },
    /// One user task, attached to one of its address spaces or blocked.
    User {
        /// The owner.
        task: TaskIndex,
        /// Its address space the group translates through, if attached.
        ioas: Option<IoasId>,
    },
    /// Given up by `task` (released, or the task died): blocked until its
    /// devices are quiesced, then back to unowned.
    Reclaiming {
        /// The task that owned it.
        task: TaskIndex,
    },
}

/// What a group's devices' DMA goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Translation {
    /// The group's default domain (the DMA API's mappings).
    Default,
    /// Nothing: every DMA faults.
    Blocking,
    /// A user's I/O address space.
    Ioas(IoasId),
}

impl Owner {
    /// The translation this state requires.
    pub fn translation(self) -> Translation {
        match self {
            Owner::Unowned | Owner::Kernel { .. } => Translation::Default,
            Owner::User { ioas: Some(ioas), .. } => Translation::Ioas(ioas),
            Owner::User { ioas: None, .. } | Owner::Reclaiming { .. } => Translation::Blocking,
        }
    }
}

/// Why an ownership change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OwnershipError {
    /// The group is held by someone else (who, is the payload).
    Busy(Owner),
    /// The caller is not the group's owner.
    NotOwner,
    /// No group has this id.
    NoSuchGroup,
    /// The hardware could not be switched (the state is unchanged).
    Hardware,
}

/// The hardware refused to switch a group's translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchFailed;

/// Programs the translation of a group's devices (context entries and the
/// invalidations that make them take effect).
pub trait GroupHardware {
    /// Makes every device of `group` translate as `translation`; on error
    /// nothing may have loosened (a partial change leaves devices blocked).
    fn set_translation(&mut self, group: GroupId, translation: Translation) -> Result<(), SwitchFailed>;
}

/// The ownership state of every group.
pub struct Ownership {
    owners: Vec<Owner, MAX_GROUPS>,
}

impl Ownership {
    /// `groups` groups, all unowned (their hardware must translate through
    /// their default domains already).
    pub fn new(groups: usize) -> Self {
        Self { owners: core::iter::repeat_n(Owner::Unowned, groups.min(MAX_GROUPS)).collect() }
    }

    /// The owner of `group`.
    pub fn owner(&self, group: GroupId) -> Result<Owner, OwnershipError> {
        self.owners.get(usize::from(group)).copied().ok_or(OwnershipError::NoSuchGroup)
    }

    /// Every group's owner.
    pub fn owners(&self) -> impl Iterator<Item = (GroupId, Owner)> + '_ {
        self.owners.iter().enumerate().map(|(group, owner)| (group as GroupId, *owner))
    }

    fn set(&mut self, group: GroupId, owner: Owner) {
        if let Some(slot) = self.owners.get_mut(usize::from(group)) {
            *slot = owner;
        }
    }

    /// A DMA-capable driver claims `group`'s default domain (at probe):
    /// only an unowned or kernel-owned group can be claimed.
    pub fn claim_kernel(&mut self, group: GroupId) -> Result<(), OwnershipError> {
        match self.owner(group)? {
            Owner::Unowned => self.set(group, Owner::Kernel { drivers: 1 }),
            Owner::Kernel { drivers } => self.set(group, Owner::Kernel { drivers: drivers.saturating_add(1) }),
            busy => return Err(OwnershipError::Busy(busy)),
        }
        Ok(())
    }

    /// A driver unbound: one claim less; the last makes the group unowned.
    pub fn release_kernel(&mut self, group: GroupId) -> Result<(), OwnershipError> {
        match self.owner(group)? {
            Owner::Kernel { drivers: 0 | 1 } => self.set(group, Owner::Unowned),
            Owner::Kernel { drivers } => self.set(group, Owner::Kernel { drivers: drivers - 1 }),
            _ => return Err(OwnershipError::NotOwner),
        }
        Ok(())
    }

    /// User task `task` claims the whole `group`: only an unowned group can
    /// be, and it is blocked (in hardware) before it is recorded as the
    /// user's.
    pub fn claim_user(
        &mut self,
        group: GroupId,
        task: TaskIndex,
        hw: &mut impl GroupHardware,
    ) -> Result<(), OwnershipError> {
        match self.owner(group)? {
            Owner::Unowned => {}
            busy => return Err(OwnershipError::Busy(busy)),
        }
        if !cfg!(feature = "mutant-claim-no-blocking") && hw.set_translation(group, Translation::Blocking).is_err() {
            // Some devices may be blocked now: put them back, or, failing
            // that, keep the group out of everyone's hands.
            if hw.set_translation(group, Translation::Default).is_err() {
                self.set(group, Owner::Reclaiming { task });
            }
            return Err(OwnershipError::Hardware);
        }
        self.set(group, Owner::User { task, ioas: None });
        Ok(())
    }

    /// The owner attaches `group` to its address space `ioas` (or detaches
    /// it to blocking with `None`).
    pub fn attach(
        &mut self,
        group: GroupId,
        task: TaskIndex,
        ioas: Option<IoasId>,
        hw: &mut impl GroupHardware,
    ) -> Result<(), OwnershipError> {
        self.check_user(group, task)?;
        let translation = ioas.map_or(Translation::Blocking, Translation::Ioas);
        if hw.set_translation(group, translation).is_err() {
            // A failed switch may have left some devices blocked; say so.
            self.set(group, Owner::User { task, ioas: None });
            let _ = hw.set_translation(group, Translation::Blocking);
            return Err(OwnershipError::Hardware);
        }
        self.set(group, Owner::User { task, ioas });
        Ok(())
    }

    /// The owner gives `group` up: it is blocked and waits for its devices
    /// to be quiesced ([`Self::reclaimed`]).
    pub fn release_user(
        &mut self,
        group: GroupId,
        task: TaskIndex,
        hw: &mut impl GroupHardware,
    ) -> Result<(), OwnershipError> {
        self.check_user(group, task)?;
        self.block_for_reclaim(group, task, hw);
        Ok(())
    }

    /// Refuses unless user task `task` owns `group`.
    fn check_user(&self, group: GroupId, task: TaskIndex) -> Result<(), OwnershipError> {
        match self.owner(group)? {
            Owner::User { task: owner, .. } if owner == task => Ok(()),
            _ => Err(OwnershipError::NotOwner),
        }
    }

    /// Blocks `group` and marks it reclaiming. Blocking is the safe state:
    /// if the hardware refuses even that, the group is still recorded as
    /// reclaiming (never handed out again) and the failure is left to the
    /// caller's fault handling.
    fn block_for_reclaim(&mut self, group: GroupId, task: TaskIndex, hw: &mut impl GroupHardware) {
        let _ = hw.set_translation(group, Translation::Blocking);
        self.set(group, Owner::Reclaiming { task });
        if cfg!(feature = "mutant-reclaim-no-quiesce") {
            let _ = self.reclaimed(group, hw);
        }
    }

    /// Task `task` died: each group it owned is blocked and reclaiming.
    /// Returns those groups (the PCI server must quiesce their devices).
    pub fn task_died(&mut self, task: TaskIndex, hw: &mut impl GroupHardware) -> Vec<GroupId, MAX_GROUPS> {
        let owned: Vec<GroupId, MAX_GROUPS> = self
            .owners()
            .filter(|(_, owner)| matches!(owner, Owner::User { task: t, .. } if *t == task))
            .map(|(group, _)| group)
            .collect();
        for &group in &owned {
            self.block_for_reclaim(group, task, hw);
        }
        owned
    }

    /// The devices of reclaiming `group` are quiesced: it returns to its
    /// default domain, unowned.
    pub fn reclaimed(&mut self, group: GroupId, hw: &mut impl GroupHardware) -> Result<(), OwnershipError> {
        match self.owner(group)? {
            Owner::Reclaiming { .. } => {}
            _ => return Err(OwnershipError::NotOwner),
        }
        hw.set_translation(group, Translation::Default).map_err(|SwitchFailed| OwnershipError::Hardware)?;
        self.set(group, Owner::Unowned);
        Ok(())
    }

    /// Groups waiting for their devices to be quiesced.
    pub fn reclaiming(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.owners().filter(|(_, owner)| matches!(owner, Owner::Reclaiming { .. })).map(|(group, _)| group)
    }
}

#[cfg(test)]
mod tests;
