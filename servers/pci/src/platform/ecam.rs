//! Configuration space through the mapped ECAM window: the buses enumeration reaches, no more.
//!
//! The window's capability covers every bus MCFG lists (256 MiB on q35);
//! the server maps the first bus, then through the last root bus, learns
//! from the root buses' bridges the last bus firmware numbered, and maps
//! the buses between with one split of the capability right after the
//! first, so one offset computation serves both.

use capabilities::ErrorCode;
use capabilities::abi::PAGE_SIZE;
use capabilities::pci::Bdf;
use pci_server::config::{AccessError, ConfigSpace};
use pci_server::ecam::{BUS_SIZE, Ecam};
use userlib::cap::{Cap, DeviceMemory, SlotPool, own};
use userlib::mmio::Mapping;

/// Where the window is mapped.
const WINDOW_VIRT: u64 = 0x4000_0000;
/// Pages of one bus.
const BUS_PAGES: u64 = BUS_SIZE / PAGE_SIZE;

/// The mapped part of an ECAM window.
pub struct EcamSpace {
    ecam: Ecam,
    /// The root (first) bus.
    first: Mapping<DeviceMemory>,
    /// The buses after it, once mapped.
    rest: Option<Mapping<DeviceMemory>>,
}

impl EcamSpace {
    /// Maps the first bus of `ecam` from the capability `window`.
    pub fn map_first(ecam: Ecam, window: Cap<DeviceMemory>, pool: &mut SlotPool) -> Result<Self, ErrorCode> {
        let first = map_split(window, pool, 0, BUS_PAGES, WINDOW_VIRT)?;
        Ok(Self { ecam, first, rest: None })
    }

    /// Maps the buses after the first, through `last` (again, larger, if
    /// fewer are mapped).
    pub fn map_through(&mut self, window: Cap<DeviceMemory>, pool: &mut SlotPool, last: u8) -> Result<(), ErrorCode> {
        let (first_bus, end_bus) = self.ecam.buses();
        let buses = u64::from(last.min(end_bus).saturating_sub(first_bus));
        if buses * BUS_SIZE <= self.rest.as_ref().map_or(0, Mapping::len) {
            return Ok(());
        }
        // Fewer buses are mapped than now needed (a root bus's bridges
        // reach further): the smaller part goes before the larger is made.
        if let Some(smaller) = self.rest.take() {
            let part = smaller.into_capability()?;
            let slot = part.slot();
            part.delete()?;
            pool.give(slot);
        }
        let virt = WINDOW_VIRT + BUS_SIZE;
        self.rest = Some(map_split(window, pool, BUS_PAGES, buses * BUS_PAGES, virt)?);
        Ok(())
    }

    /// The mapping and offset within it of `width` bytes at `offset` of `bdf`.
    fn locate(&self, bdf: Bdf, offset: u16, width: u16) -> Result<(&Mapping<DeviceMemory>, u64), AccessError> {
        let at = self.ecam.offset_in_window(bdf, offset, width)?;
        match at.checked_sub(BUS_SIZE) {
            None => Ok((&self.first, at)),
            Some(rest) => self.rest.as_ref().map(|mapping| (mapping, rest)).ok_or(AccessError::BusOutsideWindow),
        }
    }
}

/// Splits `pages` pages at page `offset` off `window` and maps them at `virt`.
fn map_split(
    window: Cap<DeviceMemory>,
    pool: &mut SlotPool,
    offset: u64,
    pages: u64,
    virt: u64,
) -> Result<Mapping<DeviceMemory>, ErrorCode> {
    let slot = pool.take().ok_or(ErrorCode::QuotaExceeded)?;
    let part = window.split(slot, offset, pages).inspect_err(|_| pool.give(slot))?;
    Mapping::map(own::SPACE, part, virt, true).inspect_err(|_| {
        let _ = part.delete();
        pool.give(slot);
    })
}

impl ConfigSpace for EcamSpace {
    fn read8(&mut self, bdf: Bdf, offset: u16) -> Result<u8, AccessError> {
        let (mapping, at) = self.locate(bdf, offset, 1)?;
        mapping.read8(at).ok_or(AccessError::BusOutsideWindow)
    }

    fn read16(&mut self, bdf: Bdf, offset: u16) -> Result<u16, AccessError> {
        let (mapping, at) = self.locate(bdf, offset, 2)?;
        mapping.read16(at).ok_or(AccessError::BusOutsideWindow)
    }

    fn read32(&mut self, bdf: Bdf, offset: u16) -> Result<u32, AccessError> {
        let (mapping, at) = self.locate(bdf, offset, 4)?;
        mapping.read32(at).ok_or(AccessError::BusOutsideWindow)
    }

    fn write8(&mut self, bdf: Bdf, offset: u16, value: u8) -> Result<(), AccessError> {
        let (mapping, at) = self.locate(bdf, offset, 1)?;
        mapping.write8(at, value).ok_or(AccessError::BusOutsideWindow)
    }

    fn write16(&mut self, bdf: Bdf, offset: u16, value: u16) -> Result<(), AccessError> {
        let (mapping, at) = self.locate(bdf, offset, 2)?;
        mapping.write16(at, value).ok_or(AccessError::BusOutsideWindow)
    }

    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) -> Result<(), AccessError> {
        let (mapping, at) = self.locate(bdf, offset, 4)?;
        mapping.write32(at, value).ok_or(AccessError::BusOutsideWindow)
    }
}
