//! What the server keeps once the topology is known: groups, owners, handles, address spaces.

use capabilities::pci::Bdf;
use heapless::{String, Vec};
use iommu_groups::Groups;

use super::domains::DomainIndex;
use super::placement::GroupUnit;
use super::quota::Charge;
use super::switch::Requesters;
use crate::fault::FaultLog;
use crate::ownership::{MAX_GROUPS, Ownership};

/// Faults kept per group.
pub const FAULT_LOG: usize = 16;
/// Most DMA handles and group capabilities alive at once.
pub const MAX_HANDLES: usize = 32;
/// Most user address spaces alive at once.
pub const MAX_ADDRESS_SPACES: usize = 64;
/// Most devices with reserved regions the server tracks.
pub const MAX_RESERVED_DEVICES: usize = 16;

/// A trusted driver's DMA handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaHandle {
    /// The group whose default domain it maps into.
    pub group: u16,
    /// The device the driver core claimed it for.
    pub device: Bdf,
    /// The driver task holding it.
    pub driver: u16,
    /// Tells handles minted over time apart (it is in the badge).
    pub serial: u32,
    /// Slot of the minted capability, kept to revoke it.
    pub slot: u32,
}

/// A user task's group capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCap {
    /// The group it owns.
    pub group: u16,
    /// The owning task.
    pub task: u16,
    /// Tells capabilities minted over time apart (it is in the badge).
    pub serial: u32,
    /// Slot of the minted capability, kept to revoke it.
    pub slot: u32,
}

/// A user's I/O address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressSpace {
    /// The id its owner names it by.
    pub id: u16,
    /// The task that created it (only it may map or attach it).
    pub task: u16,
    /// The group whose capability created it: its release takes the
    /// space along, unless another of the task's groups uses it.
    pub group: u16,
    /// The domain that translates for it.
    pub domain: DomainIndex,
    /// Table pages its domain holds, charged to its task.
    pub table_pages: u32,
}

/// An isolation assertion the server applied: the functions it covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedAssertion {
    /// Its name in the policy.
    pub name: String<{ capabilities::manifest::NAME_MAX }>,
    /// The policy's reason for it.
    pub reason: String<{ capabilities::config::JUSTIFICATION_MAX }>,
    /// The functions treated as isolated.
    pub functions: Vec<Bdf, 8>,
}

/// A device with a reserved memory region, and its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedDevice {
    /// The device firmware DMAs for.
    pub device: Bdf,
    /// Its group, which stays kernel-owned unless waived.
    pub group: u16,
    /// The region's first byte.
    pub base: u64,
    /// The region's last byte.
    pub limit: u64,
}

/// The server once the topology is known.
pub struct Ready {
    /// The groups, as Linux forms them.
    pub groups: Groups,
    /// Requester ids per group (members and their DMA aliases).
    pub requesters: Requesters,
    /// Who owns each group.
    pub ownership: Ownership,
    /// Each group's default domain.
    pub defaults: Vec<DomainIndex, MAX_GROUPS>,
    /// DMA handles alive.
    pub handles: Vec<DmaHandle, MAX_HANDLES>,
    /// Group capabilities alive.
    pub group_caps: Vec<GroupCap, MAX_HANDLES>,
    /// User address spaces alive.
    pub address_spaces: Vec<AddressSpace, MAX_ADDRESS_SPACES>,
    /// The id the next address space gets, if no live one has it: ids go
    /// round, so a destroyed space's id is not reused at once.
    pub next_ioas: u16,
    /// Per group, the driven unit that translates it, or why none does
    /// (such a group is handed out to no one).
    pub units: Vec<GroupUnit, MAX_GROUPS>,
    /// Recorded faults per group, for its owner to read.
    pub faults: Vec<FaultLog<FAULT_LOG>, MAX_GROUPS>,
    /// Devices with reserved memory regions, identity-mapped in their
    /// groups' default domains; those groups stay kernel-owned.
    pub reserved: Vec<ReservedDevice, MAX_RESERVED_DEVICES>,
    /// The policy's isolation assertions that held on this machine.
    pub asserted: Vec<AppliedAssertion, { capabilities::config::MAX_ASSERTIONS }>,
}

impl Ready {
    /// The group `device` belongs to.
    pub fn group_of(&self, device: Bdf) -> Option<u16> {
        self.groups.group_of(device).map(|id| id.0)
    }

    /// The driven unit that translates `group`, if one does.
    pub fn unit_of(&self, group: u16) -> Option<super::UnitIndex> {
        self.units.get(usize::from(group)).and_then(|placed| placed.driven())
    }

    /// The group whose devices use requester id `source`.
    pub fn group_of_source(&self, source: u16) -> Option<u16> {
        self.requesters.iter().position(|sources| sources.contains(&source)).map(|group| group as u16)
    }

    /// Empties `group`'s fault log: a new owner reads only its own faults,
    /// never the IOVAs of the one before.
    pub fn forget_faults(&mut self, group: u16) {
        if let Some(log) = self.faults.get_mut(usize::from(group)) {
            *log = FaultLog::new();
        }
    }

    /// The table-page account of `task`'s address space `id`: what it
    /// holds, and at most `quota` less what the task's other spaces hold.
    pub fn charge(&mut self, task: u16, id: u16, quota: u32) -> Option<Charge<'_>> {
        let others: u32 =
            self.address_spaces.iter().filter(|a| a.task == task && a.id != id).map(|a| a.table_pages).sum();
        let space = self.address_spaces.iter_mut().find(|a| a.id == id && a.task == task)?;
        Some(Charge { charged: &mut space.table_pages, limit: quota.saturating_sub(others) })
    }

    /// Address space `id`, if `task` made it.
    pub fn own_space(&self, id: u16, task: u16) -> Option<AddressSpace> {
        self.address_spaces.iter().find(|space| space.id == id && space.task == task).copied()
    }
}
