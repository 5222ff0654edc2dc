//! Domains: a page table with its domain id and address allocator, and the
//! mappings made in it, each owned by a DMA handle or a user address space.

use capabilities::ErrorCode;
use heapless::Vec;

use super::units::UnitSet;
use crate::capability::Capabilities;
use crate::domain::DomainId;
use crate::iova::{IovaAllocator, IovaError};
use crate::memory::TablePages;
use crate::pagetable::{PageTableConfig, PageTableError, SecondLevelTable};

/// Most domains: a default domain for every group, and the user address
/// spaces.
pub const MAX_DOMAINS: usize = crate::ownership::MAX_GROUPS + super::state::MAX_ADDRESS_SPACES;
/// Most mappings alive at once, over every domain.
pub const MAX_MAPPINGS: usize = 4096;
/// Ranges one domain's allocator tracks: the separate mappings (and
/// reserved regions) one address space or default domain may hold.
pub const IOVA_RANGES: usize = 64;

/// Index of a domain in the pool.
pub type DomainIndex = u16;

/// Who made a mapping (and so who may unmap it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappingOwner {
    /// A DMA handle, by serial.
    Handle(u32),
    /// A user address space, by id.
    Ioas(u16),
}

/// One mapped frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The domain.
    pub domain: DomainIndex,
    /// I/O virtual address.
    pub iova: u64,
    /// Pages.
    pub pages: u64,
    /// The pin keeping the frame allocated.
    pub pin: u64,
    /// Who made it.
    pub owner: MappingOwner,
}

/// A translation domain.
pub struct Domain {
    /// Its id in the unit's caches.
    pub id: DomainId,
    /// Its second-level page table.
    pub table: SecondLevelTable,
    /// Its I/O virtual addresses.
    pub iova: IovaAllocator<IOVA_RANGES>,
    /// The units a context entry has pointed at it on: their caches may
    /// hold its translations, so each of its invalidations goes to them.
    pub units: UnitSet,
}

/// Every domain and every mapping.
pub struct Domains {
    domains: Vec<Option<Domain>, MAX_DOMAINS>,
    mappings: Vec<Mapping, MAX_MAPPINGS>,
}

impl Default for Domains {
    fn default() -> Self {
        Self::new()
    }
}

fn table_error(error: PageTableError) -> ErrorCode {
    match error {
        PageTableError::OutOfTablePages { .. } => ErrorCode::OutOfMemory,
        PageTableError::AlreadyMapped { .. } => ErrorCode::AlreadyMapped,
        _ => ErrorCode::InvalidArgument,
    }
}

/// The error code of an allocator refusal.
pub fn iova_error(error: IovaError) -> ErrorCode {
    match error {
        // Separate mappings per domain are bounded like pages are: the
        // owner frees some by unmapping.
        IovaError::QuotaExceeded { .. } | IovaError::TooManyRanges { .. } => ErrorCode::QuotaExceeded,
        IovaError::Overlap { .. } => ErrorCode::AlreadyMapped,
        IovaError::Exhausted { .. } => ErrorCode::OutOfMemory,
        _ => ErrorCode::InvalidArgument,
    }
}

impl Domains {
    /// No domains.
    pub const fn new() -> Self {
        Self { domains: Vec::new(), mappings: Vec::new() }
    }

    /// Creates a domain with an empty table covering `[first, last]`, built
    /// as `config` says for the unit of `capabilities` (whose domain ids
    /// it must fit).
    pub fn create(
        &mut self,
        pages: &mut impl TablePages,
        capabilities: &Capabilities,
        config: PageTableConfig,
        first: u64,
        last: u64,
        quota: u64,
    ) -> Result<DomainIndex, ErrorCode> {
        let index = match self.domains.iter().position(Option::is_none) {
            Some(index) => index,
            None => {
                self.domains.push(None).map_err(|_| ErrorCode::OutOfMemory)?;
                self.domains.len() - 1
            }
        };
        // Domain id 0 is reserved by the unit for caching mode; ids are index + 1.
        let id = DomainId::new(index as u16 + 1, capabilities).ok_or(ErrorCode::OutOfMemory)?;
        let iova = IovaAllocator::new(first, last, quota).map_err(iova_error)?;
        let table = SecondLevelTable::new(pages, config).map_err(table_error)?;
        self.domains[index] = Some(Domain { id, table, iova, units: UnitSet::EMPTY });
        Ok(index as DomainIndex)
    }

    /// The domain at `index`.
    pub fn get(&self, index: DomainIndex) -> Option<&Domain> {
        self.domains.get(usize::from(index)).and_then(Option::as_ref)
    }

    /// The domain at `index`, for changing.
    pub fn get_mut(&mut self, index: DomainIndex) -> Option<&mut Domain> {
        self.domains.get_mut(usize::from(index)).and_then(Option::as_mut)
    }

    /// Removes an empty domain, releasing its table.
    pub fn destroy(&mut self, pages: &mut impl TablePages, index: DomainIndex) {
        if let Some(domain) = self.domains.get_mut(usize::from(index)).and_then(Option::take) {
            domain.table.release(pages);
        }
    }

    /// Records a mapping.
    pub fn record(&mut self, mapping: Mapping) -> Result<(), ErrorCode> {
        self.mappings.push(mapping).map_err(|_| ErrorCode::OutOfMemory)
    }

    /// Finds and forgets the mapping of `owner` at `iova` in `domain`.
    pub fn take(&mut self, domain: DomainIndex, owner: MappingOwner, iova: u64) -> Option<Mapping> {
        let position = self.mappings.iter().position(|m| m.domain == domain && m.owner == owner && m.iova == iova)?;
        Some(self.mappings.swap_remove(position))
    }

    /// Forgets the mapping at `position` in [`Self::mappings`].
    pub fn take_at(&mut self, position: usize) -> Mapping {
        self.mappings.swap_remove(position)
    }

    /// Finds and forgets the mapping that holds pin `pin`.
    pub fn take_pin(&mut self, pin: u64) -> Option<Mapping> {
        let position = self.mappings.iter().position(|m| m.pin == pin)?;
        Some(self.mappings.swap_remove(position))
    }

    /// Forgets one mapping of `owner` (to tear them all down one by one).
    pub fn take_any(&mut self, owner: MappingOwner) -> Option<Mapping> {
        let position = self.mappings.iter().position(|m| m.owner == owner)?;
        Some(self.mappings.swap_remove(position))
    }

    /// Pages `owner` has mapped.
    pub fn pages_of(&self, owner: MappingOwner) -> u64 {
        self.mappings.iter().filter(|m| m.owner == owner).map(|m| m.pages).sum()
    }

    /// Every mapping alive.
    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings
    }

    /// Mappings alive.
    pub fn mapping_count(&self) -> usize {
        self.mappings.len()
    }

    /// Mappings alive in user address spaces.
    pub fn user_mapping_count(&self) -> usize {
        self.mappings.iter().filter(|m| matches!(m.owner, MappingOwner::Ioas(_))).count()
    }

    /// Domains alive.
    pub fn count(&self) -> usize {
        self.domains.iter().flatten().count()
    }
}
