//! The requests, and the policy operation each invokes.

use heapless::Vec;
use serde::{Deserialize, Serialize};

use capabilities::pci::{Bdf, PciFunction};

use crate::{Operation, TOPOLOGY_CHUNK};

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
    /// Group capability: the addresses a device may be given in `ioas`,
    /// from `from` on (the window less its holes: the interrupt window and
    /// any reserved region), a page of ranges at a time.
    IoasRanges {
        /// The address space.
        ioas: u16,
        /// Where the page starts: 0 first, then one past the last range's end.
        from: u64,
    },
    /// Group capability: destroy `ioas` with its mappings; refused while a
    /// group of the task is attached to it.
    IoasDestroy {
        /// The address space.
        ioas: u16,
    },
    /// Policy (`stats`): what task `task` holds in the IOMMU server and
    /// what it is charged for.
    Usage {
        /// The task (its index in the policy).
        task: u16,
    },
    /// Group capability: map every frame sent with the request (up to
    /// `MAX_CAPS`) back to back from `iova`, in the order sent; the reply
    /// says how many leading frames were mapped and why the next was not.
    MapRange {
        /// The address space.
        ioas: u16,
        /// Where the first frame goes (page-aligned).
        iova: u64,
        /// Device writes allowed.
        writable: bool,
    },
    /// Group capability: unmap every mapping lying wholly inside `pages`
    /// pages from `iova`, with one IOTLB invalidation; refused, changing
    /// nothing, if the range cuts a mapping.
    UnmapRange {
        /// The address space.
        ioas: u16,
        /// The range's first address (page-aligned).
        iova: u64,
        /// Its length in 4 KiB pages.
        pages: u64,
    },
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
            Request::Stats | Request::Interrupts { .. } | Request::Usage { .. } => Operation::Stats,
            Request::AllocInterrupt { .. } => Operation::AllocInterrupt,
            Request::FreeInterrupt { .. } => Operation::FreeInterrupt,
            Request::DmaMap { .. }
            | Request::DmaUnmap { .. }
            | Request::IoasCreate
            | Request::Attach { .. }
            | Request::Map { .. }
            | Request::Unmap { .. }
            | Request::Faults
            | Request::Release
            | Request::IoasRanges { .. }
            | Request::IoasDestroy { .. }
            | Request::MapRange { .. }
            | Request::UnmapRange { .. } => return None,
        })
    }
}
