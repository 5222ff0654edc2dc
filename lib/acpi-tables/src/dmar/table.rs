//! The DMAR table as a whole: its header fields and its checked structures.

use super::error::DmarError;
use super::scope::{PciAddress, ScopeKind};
use super::structure::{Atsr, Drhd, RemappingStructure, Rmrr, Structures};
use crate::bytes::u8_at;
use crate::memory::TableMemory;
use crate::root::{RootError, RootTable};
use crate::sdt::{HEADER_LENGTH, Sdt};

/// The DMAR table's signature.
pub const SIGNATURE: [u8; 4] = *b"DMAR";
/// Bytes before the first remapping structure.
const DMAR_HEADER_LENGTH: usize = HEADER_LENGTH + 12;

/// The DMAR flags byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmarFlags(pub u8);

impl DmarFlags {
    /// The platform supports interrupt remapping (INTR_REMAP).
    pub fn interrupt_remapping(self) -> bool {
        self.0 & 1 != 0
    }

    /// Firmware asks the OS not to enable x2APIC mode (X2APIC_OPT_OUT).
    pub fn x2apic_opt_out(self) -> bool {
        self.0 & 2 != 0
    }

    /// Firmware supports handing DMA protection over at boot
    /// (DMA_CTRL_PLATFORM_OPT_IN_FLAG).
    pub fn dma_control_opt_in(self) -> bool {
        self.0 & 4 != 0
    }
}

/// A checked DMAR table. Every structure and device scope in it has been
/// validated, so walking it cannot fail.
#[derive(Debug, Clone, Copy)]
pub struct Dmar<'a> {
    /// Maximum physical address width DMA can reach, in bits.
    pub host_address_width: u8,
    /// The flags byte.
    pub flags: DmarFlags,
    structures: &'a [u8],
}

impl<'a> Dmar<'a> {
    /// Checks `bytes` as a DMAR table: header, checksum, signature, and
    /// every remapping structure and device scope.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DmarError> {
        Self::from_table(&Sdt::parse_signed(bytes, SIGNATURE)?)
    }

    /// Checks an already checksummed table as a DMAR table.
    pub fn from_table(table: &Sdt<'a>) -> Result<Self, DmarError> {
        table.expect_signature(SIGNATURE)?;
        let bytes = table.bytes();
        let structures = bytes.get(DMAR_HEADER_LENGTH..).ok_or(DmarError::HeaderTruncated { length: bytes.len() })?;
        let width = u16::from(u8_at(bytes, HEADER_LENGTH).unwrap_or(0)) + 1;
        // Below 4 KiB pages nothing can be mapped; above 64 bits is not x86-64.
        let host_address_width = u8::try_from(width)
            .ok()
            .filter(|width| (12..=64).contains(width))
            .ok_or(DmarError::HostAddressWidth { width })?;
        Structures::check(structures)?;
        Ok(Self { host_address_width, flags: DmarFlags(u8_at(bytes, HEADER_LENGTH + 1).unwrap_or(0)), structures })
    }

    /// Finds the DMAR table through a root table, reads it into `buffer`
    /// and checks it; `Ok(None)` if the platform has none (no IOMMU).
    pub fn find(
        memory: &impl TableMemory,
        root: &RootTable<'_>,
        buffer: &'a mut [u8],
    ) -> Result<Option<Self>, DmarFindError> {
        match root.find(memory, SIGNATURE, buffer).map_err(DmarFindError::Root)? {
            Some(table) => Self::from_table(&table).map(Some).map_err(DmarFindError::Dmar),
            None => Ok(None),
        }
    }

    /// Every remapping structure, in table order.
    pub fn structures(&self) -> Structures<'a> {
        Structures::new(self.structures)
    }

    /// The remapping units.
    pub fn units(&self) -> impl Iterator<Item = Drhd<'a>> + 'a {
        self.structures().filter_map(|structure| match structure {
            RemappingStructure::Drhd(unit) => Some(unit),
            _ => None,
        })
    }

    /// The reserved memory regions.
    pub fn reserved_regions(&self) -> impl Iterator<Item = Rmrr<'a>> + 'a {
        self.structures().filter_map(|structure| match structure {
            RemappingStructure::Rmrr(region) => Some(region),
            _ => None,
        })
    }

    /// The unit that translates DMA from `device` in `segment`, whose
    /// bridges from the root bus down are `upstream` (nearest last), as the
    /// specification's matching rules say: a unit whose scopes name the
    /// device or a bridge above it, else the segment's INCLUDE_PCI_ALL
    /// unit. `secondary_bus` resolves multi-hop scope paths (see
    /// [`super::DeviceScope::resolve`]). `None`: no unit translates it.
    pub fn unit_for(
        &self,
        segment: u16,
        device: PciAddress,
        upstream: &[PciAddress],
        mut secondary_bus: impl FnMut(PciAddress) -> Option<u8>,
    ) -> Option<Drhd<'a>> {
        let named = self.units().filter(|unit| unit.segment == segment && !unit.include_pci_all()).find(|unit| {
            unit.scopes().any(|scope| match (scope.kind, scope.resolve(&mut secondary_bus)) {
                (ScopeKind::PciEndpoint, Some(address)) => address == device,
                (ScopeKind::PciSubHierarchy, Some(address)) => address == device || upstream.contains(&address),
                _ => false,
            })
        });
        named.or_else(|| self.units().find(|unit| unit.segment == segment && unit.include_pci_all()))
    }

    /// The root-port ATS structures.
    pub fn ats_reports(&self) -> impl Iterator<Item = Atsr<'a>> + 'a {
        self.structures().filter_map(|structure| match structure {
            RemappingStructure::Atsr(report) => Some(report),
            _ => None,
        })
    }
}

/// Why finding the DMAR table through the root table failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarFindError {
    /// The root table walk failed.
    Root(RootError),
    /// The DMAR table was found but is malformed.
    Dmar(DmarError),
}
