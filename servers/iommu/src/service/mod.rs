//! The IOMMU server: the VT-d unit, the groups and their owners, and every
//! request of the IOMMU protocol (`capabilities::iommu`).
//!
//! The server starts with translation off and the unit's caches clean. It
//! waits for the PCI server's topology, forms the groups (the same code as
//! the policy checker), gives each group a default domain, points every
//! requester id at its group's domain, and only then turns translation on.
//! From then on every ownership change goes through
//! [`crate::ownership::Ownership`], which programs the context entries
//! through [`switch::Switch`].
//!
//! Hardware is reached through the unit's register trait and the table
//! memory trait; the kernel through [`kernel::Kernel`]. The bin supplies
//! the real ones, the tests simulated ones.

pub mod domains;
pub mod interrupts;
pub mod kernel;
mod requests;
pub mod reserved;
pub mod switch;
mod text;

pub use self::text::refused;

use capabilities::ErrorCode;
use capabilities::config::IommuConfig;
use capabilities::pci::{MAX_FUNCTIONS, PciFunction};
use heapless::Vec;
use iommu_api::{Reply, Request};
use iommu_groups::Groups;

use self::domains::{DomainIndex, Domains};
use self::kernel::Kernel;
use self::reserved::{MAX_REGIONS, ReservedRegion};
use self::switch::{Requesters, Switch};
use crate::capability::{AddressWidth, Capabilities};
use crate::context::ContextTables;
use crate::fault::{FaultLog, FaultRecord, RateLimiter};
use crate::memory::{PAGE_SIZE, TablePages};
use crate::ownership::{MAX_GROUPS, Ownership};
use crate::pagetable::PageTableConfig;
use crate::registers::Registers;
use crate::unit::{QueueConfig, QueueMemory, RemappingUnit, UnitError};

/// Faults kept per group.
pub const FAULT_LOG: usize = 16;
/// Most DMA handles and group capabilities alive at once.
pub const MAX_HANDLES: usize = 32;
/// Most user address spaces alive at once.
pub const MAX_ADDRESS_SPACES: usize = 32;

/// A trusted driver's DMA handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaHandle {
    /// Its group.
    pub group: u16,
    /// The device it was claimed for.
    pub device: capabilities::pci::Bdf,
    /// The driver task.
    pub driver: u16,
    /// Its serial (in its badge).
    pub serial: u32,
    /// Slot of the minted capability the server keeps to revoke.
    pub slot: u32,
}

/// A user task's group capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCap {
    /// The group.
    pub group: u16,
    /// The owner.
    pub task: u16,
    /// Its serial (in its badge).
    pub serial: u32,
    /// Slot of the minted capability the server keeps to revoke.
    pub slot: u32,
}

/// A user's I/O address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressSpace {
    /// Its id.
    pub id: u16,
    /// The task that created it.
    pub task: u16,
    /// Its domain.
    pub domain: DomainIndex,
}

/// Why the server could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The unit misbehaved or lacks what is needed.
    Unit(UnitError),
    /// No table memory for the root table.
    OutOfTablePages,
    /// The unit supports no usable table width.
    NoWidth,
}

/// The server once the topology is known.
pub struct Ready {
    /// The groups.
    pub groups: Groups,
    /// Requester ids per group.
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
    /// Faults per group.
    pub faults: Vec<FaultLog<FAULT_LOG>, MAX_GROUPS>,
    /// Devices with reserved memory regions, identity-mapped in their
    /// groups' default domains; those groups stay kernel-owned.
    pub reserved: Vec<ReservedDevice, MAX_RESERVED_DEVICES>,
    /// The policy's isolation assertions that held on this machine.
    pub asserted: Vec<AppliedAssertion, { capabilities::config::MAX_ASSERTIONS }>,
}

/// An isolation assertion the server applied: the functions it covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedAssertion {
    /// Its name in the policy.
    pub name: heapless::String<{ capabilities::manifest::NAME_MAX }>,
    /// Its reason.
    pub reason: heapless::String<{ capabilities::config::JUSTIFICATION_MAX }>,
    /// The functions treated as isolated.
    pub functions: Vec<capabilities::pci::Bdf, 8>,
}

/// Most devices with reserved regions the server tracks.
pub const MAX_RESERVED_DEVICES: usize = 16;

/// A device with a reserved memory region, and its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedDevice {
    /// The device.
    pub device: capabilities::pci::Bdf,
    /// Its group.
    pub group: u16,
    /// The region's first byte.
    pub base: u64,
    /// Its last byte.
    pub limit: u64,
}

/// The hardware side: the unit, its tables and table memory.
pub struct Hardware<R: Registers, Q: QueueMemory, T: TablePages> {
    /// The remapping unit.
    pub unit: RemappingUnit<R, Q>,
    /// Table memory.
    pub pages: T,
    /// Root and context tables.
    pub context: ContextTables,
    /// Width of every domain's table.
    pub width: AddressWidth,
    /// How domain tables are built.
    pub table_config: PageTableConfig,
}

/// The IOMMU server.
pub struct Service<R: Registers, Q: QueueMemory, T: TablePages> {
    hw: Hardware<R, Q, T>,
    config: IommuConfig,
    topology: Vec<PciFunction, MAX_FUNCTIONS>,
    ready: Option<Ready>,
    /// Every domain and mapping (kept out of [`Ready`] so that building
    /// it, on the topology report, needs little stack).
    domains: Domains,
    /// The platform's reserved memory regions (DMAR RMRRs).
    reserved: Vec<ReservedRegion, MAX_REGIONS>,
    serial: u32,
    faults_seen: u64,
    limiter: RateLimiter,
    /// Interrupt remapping (issue 10).
    interrupts: interrupts::InterruptState,
}

/// A reply, and the capability to send with it.
pub struct Answer {
    /// The reply.
    pub reply: Reply,
    /// A minted capability slot to send with it.
    pub cap: Option<u32>,
}

impl From<Reply> for Answer {
    fn from(reply: Reply) -> Self {
        Self { reply, cap: None }
    }
}

impl<R: Registers, Q: QueueMemory, T: TablePages> Service<R, Q, T> {
    /// Brings the unit up over fresh root tables with queued invalidation
    /// when given; translation stays off until the topology arrives.
    pub fn start(
        registers: R,
        register_window: u64,
        mut pages: T,
        queue: Option<(Q, QueueConfig)>,
        config: IommuConfig,
        host_address_width: u8,
        now: u64,
    ) -> Result<Self, StartError> {
        let mut unit = RemappingUnit::new(registers, register_window).map_err(StartError::Unit)?;
        let capabilities: Capabilities = *unit.capabilities();
        let width = capabilities.widest().ok_or(StartError::NoWidth)?;
        let table_config =
            PageTableConfig::new(&capabilities, width, host_address_width).map_err(|_| StartError::NoWidth)?;
        let context = ContextTables::new(&mut pages, &capabilities).map_err(|_| StartError::OutOfTablePages)?;
        unit.bring_up(context.root(), queue).map_err(StartError::Unit)?;
        let interrupts = interrupts::InterruptState::start(&mut unit, &mut pages, &config);
        Ok(Self {
            hw: Hardware { unit, pages, context, width, table_config },
            config,
            topology: Vec::new(),
            ready: None,
            domains: Domains::new(),
            reserved: Vec::new(),
            serial: 0,
            faults_seen: 0,
            limiter: RateLimiter::new(16, 1_000_000, now),
            interrupts,
        })
    }

    /// Records the platform's reserved memory regions, to identity-map
    /// for their devices when the topology arrives (refused afterwards:
    /// the default domains already exist).
    pub fn set_reserved_regions(&mut self, regions: Vec<ReservedRegion, MAX_REGIONS>) -> Result<(), ErrorCode> {
        if self.ready.is_some() {
            return Err(ErrorCode::Busy);
        }
        self.reserved = regions;
        Ok(())
    }

    /// The unit's capabilities.
    pub fn capabilities(&self) -> &Capabilities {
        self.hw.unit.capabilities()
    }

    /// The hardware side (for the bin's fault-event set-up).
    pub fn hardware(&mut self) -> &mut Hardware<R, Q, T> {
        &mut self.hw
    }

    /// Every domain and mapping.
    pub fn domains(&self) -> &Domains {
        &self.domains
    }

    /// The server's state once ready.
    pub fn ready(&self) -> Option<&Ready> {
        self.ready.as_ref()
    }

    /// Handles one request from a client with `badge`; `received` are the
    /// capabilities that came with it (the server deletes what it does not
    /// keep).
    pub fn handle(&mut self, k: &mut impl Kernel, badge: u64, request: Request, received: &[u32]) -> Answer {
        let answer = requests::dispatch(self, k, badge, request, received);
        for &slot in received {
            k.delete(slot);
        }
        answer
    }

    /// Drains the unit's fault records into the groups' logs, logging each
    /// while the rate limiter admits it; returns how many faults arrived.
    pub fn drain_faults(&mut self, now: u64) -> u64 {
        let admitted = self.limiter.admit(now);
        let mut count = 0;
        let ready = &mut self.ready;
        let drained = self.hw.unit.drain_faults(|record| {
            count += 1;
            let group = ready.as_ref().and_then(|r| group_of_source(r, record.source.source_id()));
            if admitted {
                report(&record, group);
            }
            if let (Some(group), Some(ready)) = (group, ready.as_mut())
                && let Some(log) = ready.faults.get_mut(usize::from(group))
            {
                log.push(record);
            }
        });
        match drained {
            Ok(drain) if drain.overflowed => warn!("fault records overflowed: the unit lost faults"),
            Ok(_) => {}
            Err(_) => error!("the fault status could not be read"),
        }
        self.faults_seen += count;
        count
    }

    /// A task the server watches died: its groups are blocked and handed
    /// to the PCI server for quiescing, its address spaces torn down.
    pub fn task_died(&mut self, k: &mut impl Kernel, task: u16) {
        requests::task_died(self, k, task);
    }
}

/// Logs one fault.
fn report(record: &FaultRecord, group: Option<u16>) {
    let source = record.source;
    let access = match record.access {
        crate::fault::FaultAccess::Read => "read",
        crate::fault::FaultAccess::Write => "write",
    };
    match group {
        Some(group) => warn!(
            "DMA fault: {=u8:02x}:{=u8:02x}.{=u8} (group {=u16}) {=str} at {=u64:#x}: {=str}",
            source.bus,
            source.device,
            source.function,
            group,
            access,
            record.address,
            record.reason.name()
        ),
        None => warn!(
            "DMA fault: {=u8:02x}:{=u8:02x}.{=u8} (in no group) {=str} at {=u64:#x}: {=str}",
            source.bus,
            source.device,
            source.function,
            access,
            record.address,
            record.reason.name()
        ),
    }
}

/// The group whose devices use requester id `source`.
fn group_of_source(ready: &Ready, source: u16) -> Option<u16> {
    ready.requesters.iter().position(|sources| sources.contains(&source)).map(|group| group as u16)
}

/// The address range domains cover: all of it but page 0.
fn domain_window(config: &PageTableConfig) -> (u64, u64) {
    let top = if config.input_bits >= 64 { u64::MAX } else { (1u64 << config.input_bits) - 1 };
    (PAGE_SIZE, top)
}

/// A switch over the service's hardware and `ready`'s tables.
fn switch<'a, R: Registers, Q: QueueMemory, T: TablePages>(
    hw: &'a mut Hardware<R, Q, T>,
    requesters: &'a Requesters,
    domains: &'a Domains,
    defaults: &'a [DomainIndex],
    ioas_domain: &'a dyn Fn(u16) -> Option<DomainIndex>,
) -> Switch<'a, R, Q, T> {
    Switch {
        unit: &mut hw.unit,
        pages: &mut hw.pages,
        context: &mut hw.context,
        width: hw.width,
        requesters,
        domains,
        defaults,
        ioas_domain,
    }
}

#[cfg(test)]
mod tests;
