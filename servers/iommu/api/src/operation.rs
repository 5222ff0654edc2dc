//! The operations a policy grants, their names, and which are the driver core's alone.

use serde::{Deserialize, Serialize};

use capabilities::protocol::Protocol;

/// Operations granted by the policy (their numbers are badge bits).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Operation {
    /// The PCI server reports the functions it found.
    ReportTopology = 0,
    /// The driver core claims a group's default domain for a driver.
    ClaimKernel = 1,
    /// The driver core releases a driver's claim.
    ReleaseKernel = 2,
    /// Who owns a device's group.
    Owner = 3,
    /// Groups waiting for their devices to be quiesced.
    PendingReclaims = 4,
    /// A reclaimed group's devices are quiesced.
    Reclaimed = 5,
    /// A user task claims the group of a device.
    ClaimGroup = 6,
    /// The groups and why they have their shape.
    Groups = 7,
    /// Counters: mappings, table pages, quotas in use; interrupt entries.
    Stats = 8,
    /// The driver core remaps a device's MSI through an interrupt entry.
    AllocInterrupt = 9,
    /// The driver core gives a device's interrupt entry back.
    FreeInterrupt = 10,
}

/// The operations only the driver core (the PCI server) may invoke: they
/// report the topology, claim and release default domains for the drivers
/// it binds, quiesce reclaimed groups and program device interrupts.
/// Granted to anyone else, they would let a task drop a bound driver's DMA
/// handle, skip a quiesce or hold a group kernel-owned forever.
pub const DRIVER_CORE: &[Operation] = &[
    Operation::ReportTopology,
    Operation::ClaimKernel,
    Operation::ReleaseKernel,
    Operation::PendingReclaims,
    Operation::Reclaimed,
    Operation::AllocInterrupt,
    Operation::FreeInterrupt,
];

impl Operation {
    /// Whether it is one of [`DRIVER_CORE`].
    pub fn is_driver_core(self) -> bool {
        DRIVER_CORE.contains(&self)
    }
}

/// The protocol as the policy names it.
pub const PROTOCOL: Protocol = Protocol {
    name: "iommu",
    operations: &[
        "report-topology",
        "claim-kernel",
        "release-kernel",
        "owner",
        "pending-reclaims",
        "reclaimed",
        "claim-group",
        "groups",
        "stats",
        "alloc-interrupt",
        "free-interrupt",
    ],
};
