//! The parts of the policy servers receive at boot, in their
//! boot-information page (`abi::layout::BOOT_INFO`), postcard-encoded.
//!
//! The build tool checks the policy against the declared machine; the
//! servers check these again against the hardware they find, because the
//! machine that boots may differ from the one declared.

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use crate::manifest::NAME_MAX;
use crate::pci::Bdf;

/// Most device bindings and assignments a policy may declare.
pub const MAX_DEVICE_RULES: usize = 32;

/// Selects PCI functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DeviceMatch {
    /// The function at this address.
    Address(Bdf),
    /// Every function with these ids.
    Ids {
        /// Vendor id.
        vendor: u16,
        /// Device id.
        device: u16,
    },
}

impl DeviceMatch {
    /// Whether the function at `bdf` with these ids matches.
    pub fn matches(&self, bdf: Bdf, vendor: u16, device: u16) -> bool {
        match *self {
            DeviceMatch::Address(address) => address == bdf,
            DeviceMatch::Ids { vendor: v, device: d } => v == vendor && d == device,
        }
    }
}

/// The names of the tasks, by manifest index, so servers can name them in
/// logs and errors.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TaskNames(pub Vec<String<NAME_MAX>, { crate::manifest::MAX_TASKS }>);

impl TaskNames {
    /// The name of task `index`, or `"?"`.
    pub fn name(&self, index: u16) -> &str {
        self.0.get(usize::from(index)).map_or("?", String::as_str)
    }
}

/// A trusted driver bound to devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Binding {
    /// The devices it drives.
    pub device: DeviceMatch,
    /// The driver task.
    pub driver: u16,
}

/// A driver task, and whether it does DMA: said once, for the task, as
/// Linux's `driver_managed_dma` is the driver's own flag, never its
/// binding's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DriverTask {
    /// Its manifest index.
    pub task: u16,
    /// Whether it does DMA (claims the group's default domain at probe);
    /// stub and bridge drivers do not, and may stay bound in a group a user
    /// task owns.
    pub dma: bool,
}

/// A device a user task may ask to own (and with it, its whole group).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Assignment {
    /// The devices.
    pub device: DeviceMatch,
    /// The user task.
    pub task: u16,
}

/// Most isolation assertions, and most reserved-region waivers, a policy
/// may make.
pub const MAX_ASSERTIONS: usize = 4;
/// Longest justification an assertion or a waiver carries.
pub const JUSTIFICATION_MAX: usize = 160;

/// Where an isolation assertion applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AssertedAt {
    /// One function: a bridge or a switch or root port, which then counts
    /// as isolating what is below it.
    Function(Bdf),
    /// Every function of one multifunction device, which then count as
    /// isolated from each other.
    Device {
        /// Its bus.
        bus: u8,
        /// Its device number.
        device: u8,
    },
}

impl AssertedAt {
    /// Whether the function at `bdf` is covered.
    pub fn covers(&self, bdf: Bdf) -> bool {
        match *self {
            AssertedAt::Function(at) => at == bdf,
            AssertedAt::Device { bus, device } => bdf.bus() == bus && bdf.device() == device,
        }
    }
}

/// The policy's statement that a device isolates its functions though it
/// lacks the ACS controls that would show it: group formation splits
/// there, and nowhere else. It names the device by address and identity;
/// a device of another identity there voids it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct IsolationAssertion {
    /// Its name in the policy.
    pub name: String<NAME_MAX>,
    /// Where.
    pub at: AssertedAt,
    /// The vendor id the device must have.
    pub vendor: u16,
    /// The device id it must have.
    pub device_id: u16,
    /// Why the policy's author believes it.
    pub reason: String<JUSTIFICATION_MAX>,
}

/// The policy's permission for a user task to own the group of a device
/// firmware does DMA to (an RMRR device), which is kernel-owned only
/// otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReservedRegionWaiver {
    /// The device.
    pub device: Bdf,
    /// Why the firmware's DMA does not matter once a user owns it.
    pub reason: String<JUSTIFICATION_MAX>,
}

/// The PCI server's part of the policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PciConfig {
    /// Task names.
    pub tasks: TaskNames,
    /// The driver tasks: only these may be bound, at boot or at run time.
    pub drivers: Vec<DriverTask, { crate::manifest::MAX_TASKS }>,
    /// Which driver drives which devices.
    pub bindings: Vec<Binding, MAX_DEVICE_RULES>,
    /// User tasks may acquire functions that have no reset (whatever a
    /// user leaves running in one then reaches its next holder, with only
    /// bus mastering and MSI turned off); the server warns on every such
    /// grant. Off unless the policy says.
    pub assignment_without_reset: bool,
}

/// Whether driver task `task` does DMA, or `None` if it is no driver.
pub fn driver_dma(drivers: &[DriverTask], task: u16) -> Option<bool> {
    drivers.iter().find(|driver| driver.task == task).map(|driver| driver.dma)
}

/// Most parameters one task gets.
pub const MAX_PARAMETERS: usize = 8;

/// Named numbers the policy gives a task that serves no configured
/// protocol (`parameters = { rounds = 2000 }`), e.g. how hard a stress
/// test pushes; a scenario's soak setting overrides them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Parameters(pub Vec<(String<NAME_MAX>, u64), MAX_PARAMETERS>);

impl Parameters {
    /// The value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.iter().find(|(key, _)| key.as_str() == name).map(|&(_, value)| value)
    }
}

/// The IOMMU server's part of the policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct IommuConfig {
    /// Task names.
    pub tasks: TaskNames,
    /// The driver core: the task serving the PCI protocol, the only one
    /// that may invoke the driver core's operations (`None`: no PCI
    /// server, so nobody may).
    pub driver_core: Option<u16>,
    /// Which user task may own which devices' groups.
    pub assignments: Vec<Assignment, MAX_DEVICE_RULES>,
    /// Pages one DMA handle or one user address space may map at once.
    pub mapping_quota_pages: u32,
    /// Address spaces one user task may create.
    pub address_space_quota: u16,
    /// Table pages one user task's address spaces may hold in all; they
    /// never take the pages the server keeps for kernel-owned domains.
    pub table_page_quota: u32,
    /// How the server invalidates the unit's caches.
    pub invalidation: InvalidationMode,
    /// Devices asserted to isolate their functions.
    pub assertions: Vec<IsolationAssertion, MAX_ASSERTIONS>,
    /// Reserved-region devices user tasks may own anyway.
    pub waivers: Vec<ReservedRegionWaiver, MAX_ASSERTIONS>,
    /// Interrupt-remapping entries one device may have at once (0: the
    /// server's default).
    pub interrupt_entries_per_device: u16,
    /// User tasks may own groups even when the machine cannot remap
    /// interrupts (their devices could then raise any vector of any CPU);
    /// the server warns on every such claim. Off unless the policy says.
    pub assignment_without_interrupt_remapping: bool,
}

/// How the IOMMU server invalidates the remapping unit's caches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InvalidationMode {
    /// Through the invalidation queue with wait descriptors, when the unit
    /// has one; else through the registers.
    #[default]
    Queued,
    /// Through the context-command and IOTLB registers, even when the unit
    /// has a queue (QEMU's `intel-iommu` has no property to hide its queue,
    /// so this is how the register path is exercised there).
    Registers,
}
