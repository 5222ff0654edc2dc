//! The IOMMU server: the VT-d units, the groups and their owners, and every
//! request of the IOMMU protocol (`iommu-api`).
//!
//! Each granted unit starts with translation on over an empty root table
//! of its own, so every requester is blocked, and its caches clean
//! (`units`). The server waits for the PCI server's topology, forms the
//! groups (the same code as the policy checker), places each on the unit
//! DMAR puts all its members under (`placement`), gives each group a
//! default domain and points every requester id at its group's domain on
//! that unit (`topology`); a topology it cannot take leaves everything
//! blocked and every claim refused with the reason. From then on every
//! ownership change goes through [`crate::ownership::Ownership`], which
//! programs the context entries through [`switch::Switch`].
//!
//! Requests are answered by family, told apart by the capability they
//! came on: `policy` answers the policy operations, `dma` a DMA handle's,
//! `group` a group capability's; `death` says what a watched task's
//! death undoes, `revoked` what a revoked frame capability undoes.
//! Frames go in and out of domains through `mapping`.
//!
//! Hardware is reached through a [`Platform`]: the units' registers, their
//! invalidation-queue memory and table memory; the kernel through
//! [`kernel::Kernel`]. The bin supplies the real ones, the tests simulated
//! ones.

mod death;
mod dma;
pub mod domains;
mod faults;
mod group;
pub mod kernel;
mod mapping;
pub mod placement;
mod policy;
pub mod quota;
pub mod reserved;
mod revoked;
pub mod scope;
pub mod state;
pub mod switch;
mod text;
mod topology;
pub mod units;

pub use self::state::{
    AddressSpace, AppliedAssertion, DmaHandle, FAULT_LOG, GroupCap, MAX_ADDRESS_SPACES, MAX_HANDLES,
    MAX_RESERVED_DEVICES, Ready, ReservedDevice,
};
pub use self::text::refused;
pub use self::units::{DownUnit, Hardware, MAX_UNITS, Unit, UnitIndex, UnitParts, UnitSet};

use capabilities::ErrorCode;
use capabilities::config::IommuConfig;
use capabilities::pci::{MAX_FUNCTIONS, PciFunction};
use heapless::Vec;
use iommu_api::{Handle, Reply, Request};

use self::domains::Domains;
use self::kernel::Kernel;
use self::reserved::{MAX_REGIONS, ReservedRegion};
use self::scope::Scopes;
use self::switch::Switch;
use self::units::words;
use crate::fault::{FaultRecord, RateLimiter};
use crate::memory::PAGE_SIZE;
use crate::ownership::Ownership;
use crate::pagetable::PageTableConfig;
use crate::registers::Registers;
use crate::unit::{FaultDrain, QueueMemory, UnitError};

/// The hardware a service drives: the units' registers, the memory of
/// their invalidation queues, and the memory their tables live in.
pub trait Platform {
    /// A unit's register window.
    type Registers: Registers;
    /// An invalidation queue's memory.
    type Queue: QueueMemory;
    /// Pages for root, context, page and interrupt tables.
    type Pages: crate::memory::TablePages;
}

/// Why a unit, or the server, could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The unit misbehaved or lacks what is needed.
    Unit(UnitError),
    /// No table memory for the root table.
    OutOfTablePages,
    /// The unit supports no usable table width.
    NoWidth,
    /// No unit was given to the server.
    NoUnit,
    /// More units were granted than the server drives ([`MAX_UNITS`]).
    TooManyUnits,
}

/// The IOMMU server.
pub struct Service<P: Platform> {
    pub(crate) hw: Hardware<P>,
    pub(crate) config: IommuConfig,
    pub(crate) topology: Vec<PciFunction, MAX_FUNCTIONS>,
    pub(crate) ready: Option<Ready>,
    /// Why the topology could not be taken, if it could not: nothing is
    /// handed out then, and every requester stays blocked.
    pub(crate) failed: Option<&'static str>,
    /// Every domain and mapping (kept out of [`Ready`] so that building
    /// it, on the topology report, needs little stack).
    domains: Domains,
    /// The platform's reserved memory regions (DMAR RMRRs).
    reserved: Vec<ReservedRegion, MAX_REGIONS>,
    /// Which unit translates each function (DMAR's device scopes).
    scopes: Scopes,
    /// The granted units that did not come up.
    down: Vec<DownUnit, MAX_UNITS>,
    serial: u32,
    faults_seen: u64,
    /// Times the units' fault records overflowed (FSTS.PFO).
    fault_overflows: u64,
    limiter: RateLimiter,
    /// Interrupt requests refused since boot: entries asked for (or asked
    /// for without the right) and user claims refused for want of remapping.
    pub(crate) interrupt_refusals: u64,
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

/// A request sent on a capability the server minted: a DMA handle or a
/// group capability, told apart by the badge's kind.
pub(super) struct Minted<'r> {
    /// The group the capability is for.
    group: u16,
    /// Which of the group's capabilities over time it is (released ones stay dead).
    serial: u32,
    /// What it asks.
    request: Request,
    /// Capabilities sent with it.
    received: &'r [u32],
}

impl<P: Platform> Service<P> {
    /// Brings every unit of `units` up, each over its own root table with
    /// translation on and every requester blocked; a unit that cannot be
    /// brought up is logged and kept down, and its devices go to no one.
    /// Fails only if no unit came up. The functions DMAR puts under no
    /// unit are the first unit's until [`Self::set_scopes`] says otherwise.
    pub fn start(
        units: impl IntoIterator<Item = UnitParts<P>>,
        mut pages: P::Pages,
        config: IommuConfig,
        host_address_width: u8,
        now: u64,
    ) -> Result<Self, StartError> {
        let mut driven = Vec::new();
        let mut down: Vec<DownUnit, MAX_UNITS> = Vec::new();
        let mut last = StartError::NoUnit;
        for parts in units {
            let base = parts.base;
            if driven.len() + down.len() >= MAX_UNITS {
                error!("remapping unit at {=u64:#x} is past the {=usize} units the server drives", base, MAX_UNITS);
                last = StartError::TooManyUnits;
                continue;
            }
            match Unit::bring_up(parts, &mut pages, &config, host_address_width) {
                Ok(unit) => {
                    let _ = driven.push(unit);
                }
                Err(reason) => {
                    error!(
                        "remapping unit at {=u64:#x} cannot be brought up ({=str}): the devices in its scope go to no one",
                        base,
                        words(&reason).as_str()
                    );
                    let _ = down.push(DownUnit { base, reason });
                    last = reason;
                }
            }
        }
        let Some(first) = driven.first() else { return Err(last) };
        let scopes = Scopes::catch_all(first.base);
        Ok(Self {
            hw: Hardware { units: driven, pages },
            config,
            topology: Vec::new(),
            ready: None,
            failed: None,
            domains: Domains::new(),
            reserved: Vec::new(),
            scopes,
            down,
            serial: 0,
            faults_seen: 0,
            fault_overflows: 0,
            limiter: RateLimiter::new(16, 1_000_000, now),
            interrupt_refusals: 0,
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

    /// Records which unit DMAR has translate each function (its device
    /// scopes); a group not wholly under one driven unit is handed out to
    /// no one. Refused once the topology has arrived.
    pub fn set_scopes(&mut self, scopes: Scopes) -> Result<(), ErrorCode> {
        if self.ready.is_some() {
            return Err(ErrorCode::Busy);
        }
        self.scopes = scopes;
        Ok(())
    }

    /// The granted units that did not come up, and why.
    pub fn down_units(&self) -> &[DownUnit] {
        &self.down
    }

    /// The hardware side (for the bin's fault-event set-up).
    pub fn hardware(&mut self) -> &mut Hardware<P> {
        &mut self.hw
    }

    /// Table memory (to read tables, for tests and fuzzing).
    pub fn pages(&self) -> &P::Pages {
        &self.hw.pages
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
        if matches!(request, Request::Faults | Request::Stats) {
            // Faults the unit recorded but whose interrupt is not handled
            // yet belong in the answer too.
            self.drain_faults(k.now());
        }
        let answer = match Handle::from_badge(badge) {
            Some(Handle::Dma { group, serial }) => dma::request(self, k, Minted { group, serial, request, received }),
            Some(Handle::Group { group, serial }) => {
                group::request(self, k, Minted { group, serial, request, received })
            }
            None => policy::request(self, k, badge, request, received),
        };
        for &slot in received {
            k.delete(slot);
        }
        answer
    }

    /// Drains every unit's fault records into the groups' logs, logging
    /// each while the rate limiter admits it (one token a record), and
    /// counts the times the units' records overflowed; says what it found
    /// (if `unfinished`, faults were still arriving: drain again soon).
    pub fn drain_faults(&mut self, now: u64) -> FaultDrain {
        let mut total = FaultDrain::default();
        for index in 0..self.hw.units.len() {
            let drain = self.drain_unit(index, now);
            total.records = total.records.saturating_add(drain.records);
            total.overflows = total.overflows.saturating_add(drain.overflows);
            total.unfinished |= drain.unfinished;
        }
        total
    }

    /// Drains the fault records of driven unit `index`.
    fn drain_unit(&mut self, index: usize, now: u64) -> FaultDrain {
        let mut count = 0;
        let ready = &mut self.ready;
        let limiter = &mut self.limiter;
        let Some(unit) = self.hw.units.get_mut(index) else { return FaultDrain::default() };
        let base = unit.base;
        let drained = unit.unit.drain_faults(|record| {
            count += 1;
            let group = ready.as_ref().and_then(|r| r.group_of_source(record.source.source_id()));
            if limiter.admit(now) {
                let suppressed = limiter.take_suppressed();
                if suppressed > 0 {
                    warn!("{=u64} DMA fault lines suppressed (every fault is in its group's log)", suppressed);
                }
                report(&record, group);
            }
            if let (Some(group), Some(ready)) = (group, ready.as_mut())
                && let Some(log) = ready.faults.get_mut(usize::from(group))
            {
                log.push(record);
            }
        });
        let drain = drained.unwrap_or_else(|_| {
            error!("unit {=u64:#x}: the fault status could not be read", base);
            FaultDrain { records: count, ..FaultDrain::default() }
        });
        self.faults_seen = self.faults_seen.saturating_add(u64::from(count));
        let before = self.fault_overflows;
        self.fault_overflows = before.saturating_add(u64::from(drain.overflows));
        // Logged as the count passes each power of two: a storm costs few lines.
        if self.fault_overflows.checked_ilog2() > before.checked_ilog2() {
            warn!(
                "fault records overflowed (FSTS.PFO), {=u64} since boot: the units lost faults no log holds",
                self.fault_overflows
            );
        }
        drain
    }

    /// A task the server watches died: its groups are blocked and handed
    /// to the PCI server for quiescing, its address spaces torn down.
    pub fn task_died(&mut self, k: &mut impl Kernel, task: u16) {
        death::task_died(self, k, task);
    }

    /// The kernel revoked pins (their frame capabilities were revoked):
    /// their mappings go, IOTLB invalidated, and the pins are released.
    pub fn pins_revoked(&mut self, k: &mut impl Kernel) {
        revoked::pins_revoked(self, k);
    }

    /// A fresh serial for a minted badge.
    fn next_serial(&mut self) -> u32 {
        self.serial = self.serial.wrapping_add(1);
        self.serial
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

/// The address range domains cover: all of it but page 0.
fn domain_window(config: &PageTableConfig) -> (u64, u64) {
    let top = if config.input_bits >= 64 { u64::MAX } else { (1u64 << config.input_bits) - 1 };
    (PAGE_SIZE, top)
}

/// Runs `change` on the groups' ownership with the hardware switch it
/// drives (context entries over `ready`'s requesters and domains, on each
/// group's unit).
fn change_ownership<P: Platform, T>(
    hw: &mut Hardware<P>,
    domains: &mut Domains,
    ready: &mut Ready,
    change: impl FnOnce(&mut Ownership, &mut Switch<'_, P>) -> T,
) -> T {
    let Ready { requesters, units, ownership, defaults, address_spaces, .. } = ready;
    let ioas_domain = |id: u16| address_spaces.iter().find(|space| space.id == id).map(|space| space.domain);
    let mut switch = Switch::new(hw, requesters, units, domains, defaults, &ioas_domain);
    change(ownership, &mut switch)
}

#[cfg(test)]
mod tests;
