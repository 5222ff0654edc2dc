//! What the driver core acts through: the kernel's capability calls and the IOMMU server.
//!
//! The server implements these traits with system calls and IPC; host tests
//! implement them with models that record every call, so the core's
//! decisions are tested without a kernel.

use capabilities::ErrorCode;
use iommu_api as iommu;

use crate::config::ConfigSpace;

/// A capability slot in the PCI server's own capability space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Slot(pub u32);

/// An MSI vector the kernel allocated: its interrupt capability and the
/// message the device must write to raise it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiVector {
    /// The interrupt capability (the original; holders get children).
    pub slot: Slot,
    /// The CPU vector.
    pub vector: u8,
    /// The message address.
    pub address: u64,
    /// The message data.
    pub data: u32,
}

/// Capability operations on the kernel.
pub trait Kernel {
    /// Creates a device-memory capability for `pages` pages at physical `base`.
    fn create_device_memory(&mut self, base: u64, pages: u64) -> Result<Slot, ErrorCode>;
    /// Allocates a fresh MSI vector.
    fn alloc_msi(&mut self) -> Result<MsiVector, ErrorCode>;
    /// Deletes every capability derived from `slot`, in every task.
    fn revoke(&mut self, slot: Slot) -> Result<(), ErrorCode>;
    /// Deletes the capability in `slot` and frees the slot. The slot may
    /// already be empty: a capability derived from another server's (the
    /// DMA handle) dies when that server revokes its original.
    fn delete(&mut self, slot: Slot);
    /// The index of the task a task capability names.
    fn task_of(&mut self, slot: Slot) -> Result<u16, ErrorCode>;
    /// Signals `bits` on the server's event notification when the task the
    /// capability in `slot` names dies.
    fn watch(&mut self, slot: Slot, bits: u64) -> Result<(), ErrorCode>;
    /// Waits `micros` microseconds (a function-level reset needs 100 ms).
    fn sleep(&mut self, micros: u64);
    /// Maps `pages` pages of device memory at physical `base` (an MSI-X
    /// table) into the server as table `key`, a device's position; at
    /// most [`super::MAX_HOLDERS`] are mapped at once.
    fn map_table(&mut self, key: usize, base: u64, pages: u64) -> Result<(), ErrorCode>;
    /// Writes 32 bits at byte `offset` of mapped table `key`.
    fn table_write32(&mut self, key: usize, offset: u64, value: u32) -> Result<(), ErrorCode>;
    /// Unmaps table `key` and deletes its capability (nothing if unmapped).
    fn unmap_table(&mut self, key: usize);
}

/// A connection to the IOMMU server.
pub trait IommuLink {
    /// Sends `request` and returns the reply, with the capability that came
    /// with it, if any (the caller owns that slot).
    fn call(&mut self, request: &iommu::Request) -> Result<(iommu::Reply, Option<Slot>), ErrorCode>;
}

/// Everything one driver-core operation may touch.
pub struct Hardware<'a, C: ConfigSpace, K: Kernel, I: IommuLink> {
    /// Configuration space.
    pub config: &'a mut C,
    /// The kernel.
    pub kernel: &'a mut K,
    /// The IOMMU server, if the policy connects one.
    pub iommu: Option<&'a mut I>,
}
