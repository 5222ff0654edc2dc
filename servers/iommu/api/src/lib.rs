//! The IOMMU server's protocol: what the PCI server, trusted drivers and
//! user tasks may ask of it.
//!
//! Three kinds of capability reach the server, told apart by their badges:
//!
//! * policy capabilities (`capabilities::badge::policy`) carry the client's task
//!   and one bit per [`Operation`] it may invoke;
//! * a **DMA handle** (minted, [`Handle::Dma`]) lets a trusted driver map
//!   frames into its group's default domain;
//! * a **group capability** (minted, [`Handle::Group`]) lets the one user
//!   task that owns a group build address spaces, attach the group, map,
//!   unmap, read its faults and release it.
//!
//! A driver can hold only DMA handles and a user task only group
//! capabilities, and the server mints them only when the group's owner
//! allows it, so no request path can hold both for one group.
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "client")]
pub mod client;

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use capabilities::ErrorCode;
use capabilities::badge::SERVER_MINTED;
use capabilities::pci::{Bdf, PciFunction};
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

/// Functions per topology report (a report is one message).
pub const TOPOLOGY_CHUNK: usize = 16;

/// Fault records returned per `Faults` request.
pub const FAULTS_PER_REPLY: usize = 8;

/// Interrupt entries listed per `Interrupts` reply.
pub const INTERRUPT_ENTRIES_PER_REPLY: usize = 8;

/// Members of a reclaimed group listed per `PendingReclaims` reply.
pub const RECLAIM_PAGE: usize = 16;

/// Members of a group listed per `Groups` reply.
pub const GROUP_PAGE: usize = 32;

/// Longest explanation in a refusal.
pub use capabilities::protocol::REASON_MAX;

/// What a minted badge stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handle {
    /// A trusted driver's DMA handle on `group`'s default domain.
    Dma {
        /// The group whose default domain it maps into.
        group: u16,
        /// Distinguishes handles minted over time (revoked ones stay dead).
        serial: u32,
    },
    /// A user task's capability to `group`.
    Group {
        /// The group its holder owns.
        group: u16,
        /// Distinguishes capabilities minted over time.
        serial: u32,
    },
}

const KIND_DMA: u64 = 1 << 62;

impl Handle {
    /// The badge the server mints for it.
    pub const fn badge(self) -> u64 {
        match self {
            Handle::Dma { group, serial } => SERVER_MINTED | KIND_DMA | (serial as u64) << 16 | group as u64,
            Handle::Group { group, serial } => SERVER_MINTED | (serial as u64) << 16 | group as u64,
        }
    }

    /// Decodes a badge the server minted; `None` for any other badge.
    pub const fn from_badge(badge: u64) -> Option<Self> {
        if badge & SERVER_MINTED == 0 {
            return None;
        }
        let group = (badge & 0xffff) as u16;
        let serial = ((badge >> 16) & 0xffff_ffff) as u32;
        if badge & KIND_DMA != 0 { Some(Handle::Dma { group, serial }) } else { Some(Handle::Group { group, serial }) }
    }
}

/// A request; the variant decides which capability may send it.
#[expect(
    clippy::large_enum_variant,
    reason = "decoded once per message into a stack value; a topology chunk is ~40 bytes a function on the wire"
)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Request {
    /// Policy, PCI server: functions found (in order); `last` ends the report.
    ReportTopology {
        /// This chunk's functions.
        functions: Vec<PciFunction, TOPOLOGY_CHUNK>,
        /// The report is complete.
        last: bool,
    },
    /// Policy, driver core: claim `device`'s group for driver task `driver`;
    /// the reply carries a DMA handle.
    ClaimKernel {
        /// The device being probed.
        device: Bdf,
        /// The driver's task index.
        driver: u16,
    },
    /// Policy, driver core: the driver of `device` unbound; its handle dies.
    ReleaseKernel {
        /// The device whose driver was unbound.
        device: Bdf,
        /// The driver's task index.
        driver: u16,
    },
    /// Policy: who owns `device`'s group.
    Owner {
        /// Any device of the group asked about.
        device: Bdf,
    },
    /// Policy, PCI server: a page of the members of the first group
    /// numbered `group` or above whose devices must be quiesced: from
    /// member `offset` on if that is `group` itself, else from its first.
    PendingReclaims {
        /// The lowest group number of interest.
        group: u16,
        /// The first member wanted, of group `group`.
        offset: u16,
    },
    /// Policy, PCI server: `group`'s devices are quiesced, `quiesced` of
    /// them (refused unless that is every member).
    Reclaimed {
        /// The group whose devices are all quiesced.
        group: u16,
        /// Members the PCI server quiesced.
        quiesced: u16,
    },
    /// Policy, user task: claim the whole group of `device`; the reply
    /// carries the group capability.
    ClaimGroup {
        /// Any device of the group.
        device: Bdf,
    },
    /// Policy: describe group `group` (its members from `offset` on, and
    /// the reasons). A group with more members than a reply holds takes
    /// several requests.
    Groups {
        /// Which group (`NotFound` past the last).
        group: u16,
        /// Index of the first member to list (`NotFound` past the last).
        offset: u16,
    },
    /// Policy: counters.
    Stats,
    /// Policy, driver core: remap the MSI the kernel allocated for
    /// `device` (`address` and `data` in compatibility format, as
    /// `IrqAllocMsi` returned them), whose interrupts go to task `holder`.
    /// The reply is the message to program into the device: in remappable
    /// format, naming an entry that only the device's requester ids may
    /// use, when interrupt remapping is on.
    AllocInterrupt {
        /// The device whose MSI it is (its requester ids are checked).
        device: Bdf,
        /// The task holding it.
        holder: u16,
        /// The kernel's message address.
        address: u64,
        /// The kernel's message data.
        data: u32,
    },
    /// Policy, driver core: `device` no longer uses interrupt entry `entry`.
    FreeInterrupt {
        /// The device that held the entry.
        device: Bdf,
        /// The entry `AllocInterrupt` gave it.
        entry: u16,
    },
    /// Policy (`stats`): whether interrupt remapping is on, its counters,
    /// and the entries of `device` (none if `None`).
    Interrupts {
        /// The device whose entries to list.
        device: Option<Bdf>,
    },
    /// DMA handle: map the frame sent with the request; the server picks
    /// the address within `mask_bits`.
    DmaMap {
        /// Device writes allowed.
        writable: bool,
        /// The device's DMA address width.
        mask_bits: u8,
    },
    /// DMA handle: unmap the mapping at `iova` (and forget its frame).
    DmaUnmap {
        /// Address `DmaMap` returned.
        iova: u64,
    },
    /// Group capability: create an I/O address space.
    IoasCreate,
    /// Group capability: translate through `ioas` (`None`: block).
    Attach {
        /// The address space.
        ioas: Option<u16>,
    },
    /// Group capability: map the frame sent with the request at `iova`.
    Map {
        /// The address space.
        ioas: u16,
        /// Chosen I/O virtual address (page-aligned).
        iova: u64,
        /// Device writes allowed.
        writable: bool,
    },
    /// Group capability: unmap what was mapped at `iova`.
    Unmap {
        /// The address space.
        ioas: u16,
        /// Address it was mapped at.
        iova: u64,
    },
    /// DMA handle or group capability: take the group's recorded faults.
    Faults,
    /// Group capability: give the group up.
    Release,
}

impl Request {
    /// The policy operation a request invokes (its badge bit); `None` for
    /// the requests only a minted DMA handle or group capability may send.
    pub const fn operation(&self) -> Option<Operation> {
        Some(match self {
            Request::ReportTopology { .. } => Operation::ReportTopology,
            Request::ClaimKernel { .. } => Operation::ClaimKernel,
            Request::ReleaseKernel { .. } => Operation::ReleaseKernel,
            Request::Owner { .. } => Operation::Owner,
            Request::PendingReclaims { .. } => Operation::PendingReclaims,
            Request::Reclaimed { .. } => Operation::Reclaimed,
            Request::ClaimGroup { .. } => Operation::ClaimGroup,
            Request::Groups { .. } => Operation::Groups,
            Request::Stats | Request::Interrupts { .. } => Operation::Stats,
            Request::AllocInterrupt { .. } => Operation::AllocInterrupt,
            Request::FreeInterrupt { .. } => Operation::FreeInterrupt,
            Request::DmaMap { .. }
            | Request::DmaUnmap { .. }
            | Request::IoasCreate
            | Request::Attach { .. }
            | Request::Map { .. }
            | Request::Unmap { .. }
            | Request::Faults
            | Request::Release => return None,
        })
    }
}

/// Who owns a group, as the server reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OwnerReport {
    /// Nobody.
    Unowned,
    /// Trusted drivers.
    Kernel {
        /// How many.
        drivers: u16,
    },
    /// A user task (by index).
    User {
        /// The owning task, by manifest index.
        task: u16,
    },
    /// Being reclaimed from a user task.
    Reclaiming {
        /// The task that owned it, by manifest index.
        task: u16,
    },
}

/// One fault, attributed to its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Fault {
    /// The requester (source id).
    pub source: Bdf,
    /// The faulting address (page granular).
    pub address: u64,
    /// A write (else a read).
    pub write: bool,
    /// The VT-d fault reason number.
    pub reason: u8,
}

/// Which requester ids may use an interrupt entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InterruptSource {
    /// Exactly this one.
    Exact(Bdf),
    /// This one with function bits masked by the VT-d source-id qualifier (1 to 3).
    Function {
        /// The requester id compared.
        id: Bdf,
        /// Function bits ignored: 1 for bit 2, 2 for bits 2-1, 3 for bits 2-0.
        qualifier: u8,
    },
    /// Any on these buses.
    Buses {
        /// The lowest bus allowed.
        first: u8,
        /// The highest bus allowed.
        last: u8,
    },
}

/// One interrupt entry in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InterruptEntry {
    /// Its handle (index in the remapping table).
    pub entry: u16,
    /// The task its interrupts go to (`None`: the kernel, an IO APIC line).
    pub holder: Option<u16>,
    /// The CPU vector it delivers.
    pub vector: u8,
    /// Which requester ids may use it.
    pub source: InterruptSource,
}

/// Some members of a group whose devices must be quiesced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReclaimPage {
    /// The group.
    pub group: u16,
    /// Index of the first member listed among all of the group's.
    pub offset: u16,
    /// Members the group has in all.
    pub total: u16,
    /// The members from `offset` on, at most [`RECLAIM_PAGE`].
    pub members: Vec<Bdf, RECLAIM_PAGE>,
}

/// A reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Reply {
    /// Done, nothing to report.
    Done,
    /// The group the request concerned (claims send a capability with it).
    Group {
        /// The group claimed, or asked about.
        group: u16,
    },
    /// `DmaMap`: where the frame is mapped.
    Mapped {
        /// Its I/O virtual address.
        iova: u64,
    },
    /// `IoasCreate`: the new address space.
    Ioas {
        /// Its id.
        ioas: u16,
    },
    /// `Owner`.
    Owner {
        /// The group of the device asked about.
        group: u16,
        /// Who owns it.
        owner: OwnerReport,
    },
    /// `PendingReclaims`: a page of a group to quiesce, or `None` when no
    /// group from the one asked for on waits.
    Reclaims {
        /// The page.
        page: Option<ReclaimPage>,
    },
    /// `Groups`: one group.
    GroupInfo {
        /// The group described.
        group: u16,
        /// Index of the first member listed among all of the group's.
        offset: u16,
        /// Members the group has in all.
        total: u16,
        /// Its members from `offset` on, at most [`GROUP_PAGE`].
        members: Vec<Bdf, GROUP_PAGE>,
        /// Why it has this shape, one sentence per line.
        reasons: String<REASON_MAX>,
        /// Who owns it.
        owner: OwnerReport,
    },
    /// `Faults`.
    Faults {
        /// The oldest records first.
        records: Vec<Fault, FAULTS_PER_REPLY>,
        /// Records still waiting after these.
        remaining: u32,
        /// Records lost because the log was full.
        dropped: u64,
    },
    /// `Stats`.
    Stats {
        /// Mappings in every domain.
        mappings: u32,
        /// Page-table pages in use.
        table_pages: u32,
        /// Domain ids in use.
        domains: u32,
        /// Faults seen since boot.
        faults: u64,
        /// Times since boot the unit's fault records overflowed
        /// (FSTS.PFO): each time the unit lost at least one fault, which
        /// no count above and no group's log holds.
        fault_overflows: u64,
    },
    /// `AllocInterrupt`: the message the device must send.
    Interrupt {
        /// The address to program into the device's MSI capability.
        address: u64,
        /// The data to program with it.
        data: u32,
        /// The entry it names; `None` when remapping is off and the
        /// message is the kernel's, in compatibility format.
        entry: Option<u16>,
    },
    /// `Interrupts`.
    Interrupts {
        /// Interrupt remapping is on: every device message must name an entry.
        remapping: bool,
        /// Entries in use.
        in_use: u32,
        /// Entries the table has.
        capacity: u32,
        /// Requests refused since boot.
        refused: u64,
        /// The device's entries.
        entries: Vec<InterruptEntry, INTERRUPT_ENTRIES_PER_REPLY>,
    },
    /// Refused, with the reason in words (naming the devices and holders).
    Refused {
        /// The error.
        code: ErrorCode,
        /// What blocks it.
        reason: String<REASON_MAX>,
    },
}

capabilities::refusal_reply!(Reply);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_badges_round_trip_and_never_look_like_policy_badges() {
        for handle in [Handle::Dma { group: 3, serial: 77 }, Handle::Group { group: 65535, serial: u32::MAX }] {
            assert_eq!(Handle::from_badge(handle.badge()), Some(handle));
            assert_eq!(capabilities::badge::client(handle.badge()), None);
        }
        assert_eq!(Handle::from_badge(capabilities::badge::policy(1, 0b11)), None);
    }

    /// A function with every optional part present: the largest encoding.
    fn largest_function() -> PciFunction {
        use capabilities::pci::*;
        let flags = AcsFlags(0xffff);
        let mut devfns = DevfnSet::new();
        for devfn in 0..=255 {
            devfns.insert(devfn);
        }
        let bar = BarLocation { bar: 5, offset: u32::MAX };
        PciFunction {
            bdf: Bdf::from_requester_id(0xffff),
            vendor_id: u16::MAX,
            device_id: u16::MAX,
            subsystem_vendor_id: u16::MAX,
            subsystem_id: u16::MAX,
            revision: u8::MAX,
            class: ClassCode { base: 0xff, sub: 0xff, interface: 0xff },
            header: HeaderKind::PciBridge,
            multifunction: true,
            bridge: Some(BridgeBuses { primary: 255, secondary: 255, subordinate: 255 }),
            pcie: Some(PcieInfo {
                offset: 0xff,
                version: 0xff,
                device_type: PcieDeviceType::from_field(0xf),
                reported_type: PcieDeviceType::from_field(0xf),
                slot_implemented: true,
            }),
            acs: Some(AcsInfo { offset: 0xfff, capability: flags, control: flags }),
            acs_quirk: Some(flags),
            dma_alias: DmaAliasQuirk { devfns, pcie_bridge_alias: true, translation_root: true },
            msi: Some(MsiInfo {
                offset: 0xff,
                address_64bit: true,
                per_vector_masking: true,
                vectors_log2: 5,
                enabled: true,
            }),
            msix: Some(MsixInfo {
                offset: 0xff,
                table_size: 2048,
                table: bar,
                pending: bar,
                enabled: true,
                function_masked: true,
            }),
            capability_fault: Some(CapabilityFault {
                list: CapabilityList::Extended,
                offset: 0xfff,
                kind: CapabilityFaultKind::Loop,
            }),
        }
    }

    #[test]
    fn the_largest_messages_fit_the_ipc_buffer() {
        let function = largest_function();
        let report =
            Request::ReportTopology { functions: core::iter::repeat_n(function, TOPOLOGY_CHUNK).collect(), last: true };
        let mut buffer = [0u8; capabilities::abi::ipc::MSG_MAX];
        assert!(postcard::to_slice(&report, &mut buffer).is_ok());
        let reasons: String<REASON_MAX> = core::iter::repeat_n('x', REASON_MAX).collect();
        let members = core::iter::repeat_n(Bdf::from_requester_id(0xffff), GROUP_PAGE).collect();
        let info = Reply::GroupInfo {
            group: u16::MAX,
            offset: u16::MAX,
            total: u16::MAX,
            members,
            reasons,
            owner: OwnerReport::User { task: u16::MAX },
        };
        assert!(postcard::to_slice(&info, &mut buffer).is_ok());
        let entry = InterruptEntry {
            entry: u16::MAX,
            holder: Some(u16::MAX),
            vector: u8::MAX,
            source: InterruptSource::Function { id: Bdf::from_requester_id(0xffff), qualifier: 3 },
        };
        let entries = core::iter::repeat_n(entry, INTERRUPT_ENTRIES_PER_REPLY).collect();
        let interrupts =
            Reply::Interrupts { remapping: true, in_use: u32::MAX, capacity: u32::MAX, refused: u64::MAX, entries };
        assert!(postcard::to_slice(&interrupts, &mut buffer).is_ok());
    }
}
