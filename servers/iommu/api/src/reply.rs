//! The replies, and what they report: owners, faults, interrupt entries, reclaims.

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use capabilities::ErrorCode;
use capabilities::pci::Bdf;

use crate::{FAULTS_PER_REPLY, GROUP_PAGE, INTERRUPT_ENTRIES_PER_REPLY, RANGES_PER_REPLY, REASON_MAX, RECLAIM_PAGE};

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
    /// `Usage`: one task's share of the server, and its quotas.
    Usage {
        /// User address spaces it created.
        address_spaces: u16,
        /// Pages mapped (so pinned) in them.
        mapped_pages: u64,
        /// Page-table pages their domains hold, charged to it.
        table_pages: u32,
        /// The table pages its address spaces may hold in all.
        table_page_quota: u32,
        /// DMA handles it holds, as a driver.
        dma_handles: u16,
        /// Pages mapped (so pinned) through them.
        dma_pages: u64,
    },
    /// `IoasRanges`: usable ranges as (first, last) byte addresses, in
    /// address order.
    Ranges {
        /// This page's ranges.
        ranges: Vec<(u64, u64), RANGES_PER_REPLY>,
        /// More follow: ask again from one past the last one's end.
        more: bool,
    },
    /// `MapRange`: the leading frames mapped, each wholly (a frame that
    /// was refused has nothing mapped or pinned).
    MappedRange {
        /// Frames mapped, from the first sent.
        mapped: u8,
        /// The pages they hold: they lie from the request's address on.
        pages: u64,
        /// Why the frame after them was refused (`None`: all were mapped).
        refused: Option<ErrorCode>,
    },
    /// `UnmapRange`: what was removed.
    UnmappedRange {
        /// Mappings removed.
        mappings: u16,
        /// The pages they held.
        pages: u64,
    },
}

capabilities::refusal_reply!(Reply);
