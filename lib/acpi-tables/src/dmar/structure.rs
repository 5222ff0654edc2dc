//! Remapping structures: DRHD (a VT-d unit), RMRR (a reserved region), ATSR.

use super::error::DmarError;
use super::scope::{DeviceScopes, ScopeFault, ScopeKind};
use crate::bytes::{u8_at, u16_at, u64_at};

/// Structure type codes.
const TYPE_DRHD: u16 = 0;
const TYPE_RMRR: u16 = 1;
const TYPE_ATSR: u16 = 2;

/// Bytes before the device scopes of each structure we decode.
const DRHD_FIXED: usize = 16;
const RMRR_FIXED: usize = 24;
const ATSR_FIXED: usize = 8;
/// The type and length fields every structure starts with.
const STRUCTURE_HEADER: usize = 4;

/// The name of a structure type, for errors and logs.
pub(super) fn kind_name(structure_type: u16) -> &'static str {
    match structure_type {
        TYPE_DRHD => "DRHD",
        TYPE_RMRR => "RMRR",
        TYPE_ATSR => "ATSR",
        3 => "RHSA",
        4 => "ANDD",
        5 => "SATC",
        6 => "SIDP",
        _ => "unknown",
    }
}

/// The shortest valid length of a structure type; unknown types need only
/// their header, since they are skipped by length.
fn minimum_length(structure_type: u16) -> usize {
    match structure_type {
        TYPE_DRHD => DRHD_FIXED,
        TYPE_RMRR => RMRR_FIXED,
        TYPE_ATSR => ATSR_FIXED,
        3 => 20,
        4..=6 => 8,
        _ => STRUCTURE_HEADER,
    }
}

/// A DMA-remapping hardware unit definition: one VT-d unit.
#[derive(Debug, Clone)]
pub struct Drhd<'a> {
    /// The structure's position in the table.
    pub index: usize,
    /// The flags byte; see [`Drhd::include_pci_all`].
    pub flags: u8,
    /// Register set size: 2^size pages of 4 KiB (0 in tables before VT-d 3.0).
    pub size: u8,
    /// PCI segment the unit serves.
    pub segment: u16,
    /// Physical address of the unit's registers.
    pub register_base: u64,
    scopes: &'a [u8],
}

impl<'a> Drhd<'a> {
    /// The unit serves every PCI function of its segment not claimed by
    /// another unit; its scopes then list only IOAPICs, HPETs and ACPI
    /// devices.
    pub fn include_pci_all(&self) -> bool {
        self.flags & 1 != 0
    }

    /// Bytes of the register set to map.
    pub fn register_size(&self) -> u64 {
        4096u64 << (self.size & 0xf)
    }

    /// The devices the unit serves (besides all of its segment when
    /// [`Drhd::include_pci_all`]).
    pub fn scopes(&self) -> DeviceScopes<'a> {
        DeviceScopes::new(self.scopes)
    }
}

/// A reserved memory region: memory that devices in its scope DMA to from
/// boot on (USB legacy emulation, graphics), which must stay identity-mapped
/// for them.
#[derive(Debug, Clone)]
pub struct Rmrr<'a> {
    /// The structure's position in the table.
    pub index: usize,
    /// PCI segment of the devices.
    pub segment: u16,
    /// First byte of the region, 4 KiB aligned.
    pub base: u64,
    /// Last byte of the region; `limit + 1` is 4 KiB aligned.
    pub limit: u64,
    scopes: &'a [u8],
}

impl<'a> Rmrr<'a> {
    /// Number of 4 KiB pages in the region.
    pub fn pages(&self) -> u64 {
        ((self.limit - self.base) >> 12) + 1
    }

    /// The devices that use the region.
    pub fn scopes(&self) -> DeviceScopes<'a> {
        DeviceScopes::new(self.scopes)
    }
}

/// Root-port ATS capability reporting: which root ports pass ATS requests.
#[derive(Debug, Clone)]
pub struct Atsr<'a> {
    /// The structure's position in the table.
    pub index: usize,
    /// The flags byte; see [`Atsr::all_ports`].
    pub flags: u8,
    /// PCI segment of the root ports.
    pub segment: u16,
    scopes: &'a [u8],
}

impl<'a> Atsr<'a> {
    /// Every root port of the segment supports ATS; the scopes are empty.
    pub fn all_ports(&self) -> bool {
        self.flags & 1 != 0
    }

    /// The root ports that support ATS.
    pub fn scopes(&self) -> DeviceScopes<'a> {
        DeviceScopes::new(self.scopes)
    }
}

/// One remapping structure of a DMAR table.
#[derive(Debug, Clone)]
pub enum RemappingStructure<'a> {
    /// A remapping unit.
    Drhd(Drhd<'a>),
    /// A reserved memory region.
    Rmrr(Rmrr<'a>),
    /// Root ports with ATS.
    Atsr(Atsr<'a>),
    /// A structure this crate does not decode (RHSA, ANDD, SATC, newer).
    Other {
        /// The structure's position in the table.
        index: usize,
        /// Its type field.
        structure_type: u16,
        /// Its bytes after the type and length fields.
        body: &'a [u8],
    },
}

/// Decodes and checks the structure at the start of `bytes`; returns it
/// and its length, which is at least 4, so walks always advance.
pub(super) fn decode_structure(bytes: &[u8], index: usize) -> Result<(RemappingStructure<'_>, usize), DmarError> {
    let truncated = DmarError::StructureTruncated { index, remaining: bytes.len() };
    let structure_type = u16_at(bytes, 0).ok_or(truncated)?;
    let length_field = u16_at(bytes, 2).ok_or(truncated)?;
    let kind = kind_name(structure_type);
    let length = usize::from(length_field);
    if length < minimum_length(structure_type) {
        return Err(DmarError::StructureLength { index, kind, length: length_field });
    }
    let entry = bytes.get(..length).ok_or(DmarError::StructureOverrun {
        index,
        kind,
        length: length_field,
        remaining: bytes.len(),
    })?;
    let scope_error = |(scope, fault)| match fault {
        ScopeFault::Length(length) => DmarError::ScopeLength { index, kind, scope, length },
        ScopeFault::Type(scope_type) => DmarError::ScopeType { index, kind, scope, scope_type },
        ScopeFault::Path { device, function } => DmarError::ScopePath { index, kind, scope, device, function },
    };
    let tail = |fixed: usize| entry.get(fixed..).unwrap_or(&[]);
    let structure = match structure_type {
        TYPE_DRHD => {
            let register_base = u64_at(entry, 8).unwrap_or(0);
            if register_base == 0 || register_base & 0xfff != 0 {
                return Err(DmarError::RegisterBase { index, address: register_base });
            }
            let scopes = tail(DRHD_FIXED);
            DeviceScopes::check(scopes, |_| true).map_err(scope_error)?;
            RemappingStructure::Drhd(Drhd {
                index,
                flags: u8_at(entry, 4).unwrap_or(0),
                size: u8_at(entry, 5).unwrap_or(0),
                segment: u16_at(entry, 6).unwrap_or(0),
                register_base,
                scopes,
            })
        }
        TYPE_RMRR => {
            let base = u64_at(entry, 8).unwrap_or(0);
            let limit = u64_at(entry, 16).unwrap_or(0);
            if base & 0xfff != 0 || limit & 0xfff != 0xfff || limit < base {
                return Err(DmarError::ReservedRange { index, base, limit });
            }
            let scopes = tail(RMRR_FIXED);
            let pci = |kind| matches!(kind, ScopeKind::PciEndpoint | ScopeKind::PciSubHierarchy);
            DeviceScopes::check(scopes, pci).map_err(scope_error)?;
            RemappingStructure::Rmrr(Rmrr { index, segment: u16_at(entry, 6).unwrap_or(0), base, limit, scopes })
        }
        TYPE_ATSR => {
            let scopes = tail(ATSR_FIXED);
            DeviceScopes::check(scopes, |kind| kind == ScopeKind::PciSubHierarchy).map_err(scope_error)?;
            RemappingStructure::Atsr(Atsr {
                index,
                flags: u8_at(entry, 4).unwrap_or(0),
                segment: u16_at(entry, 6).unwrap_or(0),
                scopes,
            })
        }
        _ => RemappingStructure::Other { index, structure_type, body: tail(STRUCTURE_HEADER) },
    };
    Ok((structure, length))
}

/// The remapping structures of a checked DMAR table, in table order.
#[derive(Debug, Clone)]
pub struct Structures<'a> {
    rest: &'a [u8],
    index: usize,
}

impl<'a> Structures<'a> {
    /// Structures packed in `bytes`.
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes, index: 0 }
    }

    /// Checks every structure, so that iterating afterwards cannot fail.
    pub(super) fn check(bytes: &[u8]) -> Result<(), DmarError> {
        let mut walk = Structures::new(bytes);
        while walk.step()?.is_some() {}
        Ok(())
    }

    fn step(&mut self) -> Result<Option<RemappingStructure<'a>>, DmarError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let (structure, length) = decode_structure(self.rest, self.index)?;
        self.rest = self.rest.get(length..).unwrap_or(&[]);
        self.index = self.index.saturating_add(1);
        Ok(Some(structure))
    }
}

impl<'a> Iterator for Structures<'a> {
    type Item = RemappingStructure<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        // Errors cannot happen after `check`; stopping keeps the walk finite
        // and never yields a structure that failed its checks.
        self.step().unwrap_or_else(|_| {
            self.rest = &[];
            None
        })
    }
}
