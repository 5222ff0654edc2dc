//! MCFG: where each PCI segment's ECAM configuration space lives.

use core::fmt;

use crate::bytes::{u8_at, u16_at, u64_at};
use crate::memory::TableMemory;
use crate::root::{RootError, RootTable};
use crate::sdt::{HEADER_LENGTH, Sdt, TableError};

/// The MCFG table's signature.
pub const SIGNATURE: [u8; 4] = *b"MCFG";
/// Bytes before the first allocation: the header and 8 reserved bytes.
const MCFG_HEADER_LENGTH: usize = HEADER_LENGTH + 8;
/// Bytes per allocation.
const ENTRY_LENGTH: usize = 16;
/// Bytes of configuration space per bus: 32 devices, 8 functions, 4 KiB.
const BUS_SIZE: u64 = 1 << 20;

/// Why an MCFG table was refused; `index` counts allocations from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McfgError {
    /// The table's header, length or checksum is wrong.
    Table(TableError),
    /// The allocations are not a whole number of 16-byte entries after
    /// the 44-byte header.
    Length {
        /// The table's length.
        length: usize,
    },
    /// An allocation's end bus is below its start bus.
    BusRange {
        /// The allocation's position.
        index: usize,
        /// The start bus field.
        start_bus: u8,
        /// The end bus field.
        end_bus: u8,
    },
    /// An allocation's base is zero or not 1 MiB aligned, or its window
    /// would run past the top of the address space.
    Base {
        /// The allocation's position.
        index: usize,
        /// The base address field.
        base: u64,
    },
    /// Two allocations claim the same bus of the same segment.
    Overlap {
        /// The earlier allocation's position.
        first: usize,
        /// The later allocation's position.
        second: usize,
    },
}

impl From<TableError> for McfgError {
    fn from(error: TableError) -> Self {
        Self::Table(error)
    }
}

impl fmt::Display for McfgError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Table(error) => write!(formatter, "MCFG: {error}"),
            Self::Length { length } => write!(formatter, "MCFG length {length} is not 44 + 16 n bytes"),
            Self::BusRange { index, start_bus, end_bus } => {
                write!(formatter, "MCFG allocation {index}: end bus {end_bus} is below start bus {start_bus}")
            }
            Self::Base { index, base } => write!(formatter, "MCFG allocation {index}: bad base address {base:#x}"),
            Self::Overlap { first, second } => {
                write!(formatter, "MCFG allocations {first} and {second} claim the same bus")
            }
        }
    }
}

/// One ECAM window: configuration space of buses `start_bus..=end_bus` of
/// one segment. The base is where bus 0 would be, as the PCI firmware
/// specification defines it, even when the window starts at another bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcamRegion {
    /// Physical address of bus 0's configuration space.
    pub base: u64,
    /// PCI segment group.
    pub segment: u16,
    /// First bus decoded.
    pub start_bus: u8,
    /// Last bus decoded.
    pub end_bus: u8,
}

impl EcamRegion {
    /// Physical address of the first byte the window decodes.
    pub fn start(&self) -> u64 {
        self.base + u64::from(self.start_bus) * BUS_SIZE
    }

    /// Bytes the window decodes.
    pub fn size(&self) -> u64 {
        (u64::from(self.end_bus) - u64::from(self.start_bus) + 1) * BUS_SIZE
    }

    /// The physical address of a configuration register, or `None` if the
    /// bus is outside the window or a number is out of range.
    pub fn config_address(&self, bus: u8, device: u8, function: u8, offset: u16) -> Option<u64> {
        if bus < self.start_bus || bus > self.end_bus || device > 31 || function > 7 || offset > 0xfff {
            return None;
        }
        let within = u64::from(bus) << 20 | u64::from(device) << 15 | u64::from(function) << 12 | u64::from(offset);
        self.base.checked_add(within)
    }

    fn decode(entry: &[u8]) -> Self {
        Self {
            base: u64_at(entry, 0).unwrap_or(0),
            segment: u16_at(entry, 8).unwrap_or(0),
            start_bus: u8_at(entry, 10).unwrap_or(0),
            end_bus: u8_at(entry, 11).unwrap_or(0),
        }
    }

    fn check(&self, index: usize) -> Result<(), McfgError> {
        if self.end_bus < self.start_bus {
            return Err(McfgError::BusRange { index, start_bus: self.start_bus, end_bus: self.end_bus });
        }
        let end = self.base.checked_add((u64::from(self.end_bus) + 1) * BUS_SIZE);
        if self.base == 0 || !self.base.is_multiple_of(BUS_SIZE) || end.is_none() {
            return Err(McfgError::Base { index, base: self.base });
        }
        Ok(())
    }

    fn overlaps(&self, other: &Self) -> bool {
        self.segment == other.segment && self.start_bus <= other.end_bus && other.start_bus <= self.end_bus
    }
}

/// A checked MCFG table: every allocation is valid and none overlap.
#[derive(Debug, Clone, Copy)]
pub struct Mcfg<'a> {
    entries: &'a [u8],
}

impl<'a> Mcfg<'a> {
    /// Checks `bytes` as an MCFG table.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, McfgError> {
        Self::from_table(&Sdt::parse_signed(bytes, SIGNATURE)?)
    }

    /// Checks an already checksummed table as an MCFG table.
    pub fn from_table(table: &Sdt<'a>) -> Result<Self, McfgError> {
        table.expect_signature(SIGNATURE)?;
        let bytes = table.bytes();
        let entries = bytes
            .get(MCFG_HEADER_LENGTH..)
            .filter(|entries| entries.len() % ENTRY_LENGTH == 0)
            .ok_or(McfgError::Length { length: bytes.len() })?;
        let parsed = Self { entries };
        for (index, region) in parsed.regions().enumerate() {
            region.check(index)?;
            if let Some(first) = parsed.regions().take(index).position(|earlier| earlier.overlaps(&region)) {
                return Err(McfgError::Overlap { first, second: index });
            }
        }
        Ok(parsed)
    }

    /// Finds the MCFG table through a root table, reads it into `buffer`
    /// and checks it; `Ok(None)` if there is none.
    pub fn find(
        memory: &impl TableMemory,
        root: &RootTable<'_>,
        buffer: &'a mut [u8],
    ) -> Result<Option<Self>, McfgFindError> {
        match root.find(memory, SIGNATURE, buffer).map_err(McfgFindError::Root)? {
            Some(table) => Self::from_table(&table).map(Some).map_err(McfgFindError::Mcfg),
            None => Ok(None),
        }
    }

    /// The ECAM windows, in table order.
    pub fn regions(&self) -> impl Iterator<Item = EcamRegion> + 'a {
        self.entries.chunks_exact(ENTRY_LENGTH).map(EcamRegion::decode)
    }

    /// The window that decodes `bus` of `segment`.
    pub fn region_for(&self, segment: u16, bus: u8) -> Option<EcamRegion> {
        self.regions().find(|region| region.segment == segment && (region.start_bus..=region.end_bus).contains(&bus))
    }
}

/// Why finding the MCFG table through the root table failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McfgFindError {
    /// The root table walk failed.
    Root(RootError),
    /// The MCFG table was found but is malformed.
    Mcfg(McfgError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::qemu::MCFG_Q35;
    use crate::testing::table;

    fn entry(base: u64, segment: u16, start: u8, end: u8) -> Vec<u8> {
        let mut bytes = base.to_le_bytes().to_vec();
        bytes.extend_from_slice(&segment.to_le_bytes());
        bytes.extend_from_slice(&[start, end, 0, 0, 0, 0]);
        bytes
    }

    fn mcfg(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![0u8; 8];
        body.extend(entries.concat());
        table(*b"MCFG", 1, &body)
    }

    #[test]
    fn qemu_7_2_q35_has_one_window() {
        let table = Mcfg::parse(&MCFG_Q35).unwrap();
        let regions: Vec<_> = table.regions().collect();
        assert_eq!(regions, [EcamRegion { base: 0xb000_0000, segment: 0, start_bus: 0, end_bus: 255 }]);
        let region = regions[0];
        assert_eq!(region.size(), 256 << 20);
        assert_eq!(region.config_address(0, 0x1f, 2, 0x10), Some(0xb00f_a010));
        assert_eq!(region.config_address(1, 0, 0, 0), Some(0xb010_0000));
        assert_eq!(region.config_address(0, 32, 0, 0), None);
        assert_eq!(region.config_address(0, 0, 8, 0), None);
        assert_eq!(region.config_address(0, 0, 0, 0x1000), None);
        assert_eq!(table.region_for(0, 7), Some(region));
        assert_eq!(table.region_for(1, 7), None);
    }

    #[test]
    fn windows_starting_above_bus_0_are_based_at_bus_0() {
        let bytes = mcfg(&[entry(0xe000_0000, 0, 0x10, 0x1f), entry(0xf000_0000, 1, 0, 0)]);
        let table = Mcfg::parse(&bytes).unwrap();
        let region = table.region_for(0, 0x10).unwrap();
        assert_eq!(region.start(), 0xe100_0000);
        assert_eq!(region.size(), 16 << 20);
        assert_eq!(region.config_address(0x0f, 0, 0, 0), None);
        assert_eq!(region.config_address(0x10, 0, 0, 0), Some(0xe100_0000));
        assert_eq!(table.region_for(1, 0).unwrap().base, 0xf000_0000);
    }

    #[test]
    fn corrupted_allocations_are_refused_by_index() {
        let good = entry(0xb000_0000, 0, 0, 255);
        assert_eq!(
            Mcfg::parse(&mcfg(&[good.clone(), entry(0xc000_0000, 0, 9, 8)])).unwrap_err(),
            McfgError::BusRange { index: 1, start_bus: 9, end_bus: 8 }
        );
        for base in [0, 0xb000_1000, u64::MAX - 0xfffff] {
            assert_eq!(Mcfg::parse(&mcfg(&[entry(base, 0, 0, 255)])).unwrap_err(), McfgError::Base { index: 0, base });
        }
        assert_eq!(
            Mcfg::parse(&mcfg(&[good.clone(), entry(0xc000_0000, 0, 255, 255)])).unwrap_err(),
            McfgError::Overlap { first: 0, second: 1 }
        );
        assert!(Mcfg::parse(&mcfg(&[good.clone(), entry(0xc000_0000, 1, 0, 255)])).is_ok());
        let mut ragged = mcfg(&[good]);
        ragged.push(0);
        let length = ragged.len() as u32;
        ragged[4..8].copy_from_slice(&length.to_le_bytes());
        crate::testing::fix_checksum(&mut ragged, 9);
        assert_eq!(Mcfg::parse(&ragged).unwrap_err(), McfgError::Length { length: 61 });
        let short = table(*b"MCFG", 1, &[0; 4]);
        assert_eq!(Mcfg::parse(&short).unwrap_err(), McfgError::Length { length: 40 });
        assert!(matches!(
            Mcfg::parse(&table(*b"APIC", 1, &[0; 8])),
            Err(McfgError::Table(TableError::Signature { .. }))
        ));
    }
}
