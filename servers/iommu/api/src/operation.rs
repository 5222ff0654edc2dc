//! The operations a policy grants, their names, and which are the driver core's alone.

capabilities::operations! {
    /// Operations granted by the policy (their numbers are badge bits).
    protocol "iommu";
    /// The PCI server reports the functions it found.
    ReportTopology = 0 => "report-topology",
    /// The driver core claims a group's default domain for a driver.
    ClaimKernel = 1 => "claim-kernel",
    /// The driver core releases a driver's claim.
    ReleaseKernel = 2 => "release-kernel",
    /// Who owns a device's group.
    Owner = 3 => "owner",
    /// Groups waiting for their devices to be quiesced.
    PendingReclaims = 4 => "pending-reclaims",
    /// A reclaimed group's devices are quiesced.
    Reclaimed = 5 => "reclaimed",
    /// A user task claims the group of a device.
    ClaimGroup = 6 => "claim-group",
    /// The groups and why they have their shape.
    Groups = 7 => "groups",
    /// Counters: mappings, table pages, quotas in use; interrupt entries.
    Stats = 8 => "stats",
    /// The driver core remaps a device's MSI through an interrupt entry.
    AllocInterrupt = 9 => "alloc-interrupt",
    /// The driver core gives a device's interrupt entry back.
    FreeInterrupt = 10 => "free-interrupt",
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
