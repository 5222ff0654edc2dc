//! What the kernel knows of the machine beyond its own memory: where RAM
//! is, the ACPI tables (copied for servers), and the device ranges the
//! firmware describes, which boot grants name symbolically.

use crate::bootinfo::MAX_REGIONS;
use acpi_tables::dmar::ScopeKind;
use acpi_tables::{Dmar, Mcfg, SnapshotMemory};
use capabilities::ErrorCode;
use capabilities::abi::{PAGE_SIZE, rights};
use heapless::Vec;

use super::{Kernel, Machine};
use crate::cspace::{Capability, Object};
use crate::objects::{FrameObject, Handle};
use crate::task::TaskId;

/// Most ECAM regions and remapping units remembered.
const MAX_UNITS: usize = 8;
/// Most device-memory ranges boot grants name by address.
pub const MAX_DEVICE_GRANTS: usize = 64;

/// Physical ranges `[start, end)` no device-memory capability may cover
/// beyond RAM: low memory (firmware, legacy devices) and the interrupt
/// controllers' and remapping units' window.
const KERNEL_DEVICES: [(u64, u64); 2] = [(0, 0x10_0000), (0xfec0_0000, 0xff00_0000)];

/// The platform as the kernel found it at boot.
#[derive(Default)]
pub struct Platform {
    /// The RAM ranges of the memory map: the same list, and the same
    /// limit, as the boot information and the frame allocator.
    ram: Vec<(u64, u64), MAX_REGIONS>,
    /// Device memory boot grants name by address (`[start, end)`).
    granted: Vec<(u64, u64), MAX_DEVICE_GRANTS>,
    acpi: Option<Handle>,
    ecam: Vec<(u64, u32), MAX_UNITS>,
    units: Vec<Unit, MAX_UNITS>,
}

/// A remapping unit DMAR describes.
#[derive(Clone, Copy)]
struct Unit {
    /// Physical address of its registers.
    base: u64,
    /// Pages of registers.
    pages: u32,
    /// Whether its device scope lists an IO APIC: it remaps the kernel's
    /// IO APIC lines, and no other unit may.
    ioapic: bool,
}

impl Platform {
    /// Nothing known yet.
    pub const fn new() -> Self {
        Self { ram: Vec::new(), granted: Vec::new(), acpi: None, ecam: Vec::new(), units: Vec::new() }
    }
}

fn overlaps((start, end): (u64, u64), (other_start, other_end): (u64, u64)) -> bool {
    start < other_end && other_start < end
}

impl Kernel {
    /// Records where RAM is (`[start, end)` ranges of the memory map), all
    /// of it or none: `TooLarge` if there are more than the memory map
    /// may hold.
    pub fn set_ram(&mut self, ranges: &[(u64, u64)]) -> Result<(), ErrorCode> {
        self.platform.ram = Vec::from_slice(ranges).map_err(|_| ErrorCode::TooLarge)?;
        Ok(())
    }

    /// Records a boot grant's device memory, which no `DeviceMemoryCreate`
    /// may cover then.
    pub(super) fn record_device_grant(&mut self, base: u64, pages: u32) -> Result<(), ErrorCode> {
        let end = base.checked_add(u64::from(pages) * PAGE_SIZE).ok_or(ErrorCode::InvalidArgument)?;
        self.platform.granted.push((base, end)).map_err(|_| ErrorCode::OutOfMemory)
    }

    /// Takes a snapshot of the ACPI tables (`acpi_tables::snapshot`
    /// format) into a frame servers can be granted, and finds the ECAM
    /// regions and remapping units it describes.
    pub fn set_acpi(&mut self, m: &mut impl Machine, snapshot: &[u8]) -> Result<(), ErrorCode> {
        let tables = SnapshotMemory::new(snapshot).map_err(|_| ErrorCode::Malformed)?;
        let pages = (snapshot.len() as u64).div_ceil(PAGE_SIZE).next_power_of_two();
        let base = self.frames.alloc_contiguous(pages as usize, 1).ok_or(ErrorCode::OutOfMemory)?;
        for (index, chunk) in snapshot.chunks(PAGE_SIZE as usize).enumerate() {
            let page = m.page_mut(base.add(index as u64));
            page.fill(0);
            page[..chunk.len()].copy_from_slice(chunk);
        }
        let object = FrameObject { base, pages: pages as u32, owner: None, refs: 0, pins: 0, pinner: None };
        self.platform.acpi = self.frame_objects.insert(object).ok();

        let mut root = [0u8; 1024];
        let Ok(root) = tables.root(&mut root) else {
            warn!("the ACPI root table is unusable: no PCI configuration space or IOMMU to grant");
            return Ok(());
        };
        let mut buffer = [0u8; 4096];
        match Mcfg::find(&tables, &root, &mut buffer) {
            Ok(Some(mcfg)) => {
                for region in mcfg.regions() {
                    let pages = (region.size() / PAGE_SIZE) as u32;
                    info!("ECAM {=u64:#x}, {=u32} pages (segment {=u16})", region.start(), pages, region.segment);
                    let _ = self.platform.ecam.push((region.start(), pages));
                }
            }
            _ => warn!("no usable ACPI MCFG table: no PCI configuration space to grant"),
        }
        match Dmar::find(&tables, &root, &mut buffer) {
            Ok(Some(dmar)) => {
                for unit in dmar.units() {
                    let pages = unit.register_size().div_ceil(PAGE_SIZE) as u32;
                    let ioapic = unit.scopes().any(|scope| scope.kind == ScopeKind::IoApic);
                    info!("remapping unit registers at {=u64:#x}, {=u32} pages", unit.register_base, pages);
                    let _ = self.platform.units.push(Unit { base: unit.register_base, pages, ioapic });
                }
            }
            _ => warn!("no usable ACPI DMAR table: no IOMMU to grant"),
        }
        Ok(())
    }

    /// The object a symbolic boot grant names.
    pub(super) fn platform_object(&self, ecam: Option<u8>, unit: Option<u8>) -> Option<Object> {
        let (base, pages) = match (ecam, unit) {
            (Some(n), _) => self.platform.ecam.get(usize::from(n)).copied(),
            (_, Some(n)) => self.platform.units.get(usize::from(n)).map(|unit| (unit.base, unit.pages)),
            _ => None,
        }?;
        Some(Object::DeviceMemory { base, pages })
    }

    /// Records a remapping unit as DMAR would (host tests have no ACPI).
    #[cfg(test)]
    pub(crate) fn add_remapping_unit(&mut self, base: u64, pages: u32, ioapic: bool) {
        let _ = self.platform.units.push(Unit { base, pages, ioapic });
    }

    /// Whether `base` is the register base of the remapping unit whose
    /// DMAR scope lists the IO APIC.
    pub(super) fn remaps_the_io_apic(&self, base: u64) -> bool {
        self.platform.units.iter().any(|unit| unit.base == base && unit.ioapic)
    }

    /// The ACPI snapshot frame, if the machine has ACPI tables.
    pub(super) fn acpi_frame(&self) -> Option<Object> {
        self.platform.acpi.map(Object::Frame)
    }

    /// `DeviceMemoryCreate`: a device-memory capability for `pages` pages
    /// at `base`, which may cover neither RAM nor any device the kernel or
    /// a boot grant holds.
    pub(super) fn create_device_memory(&mut self, id: TaskId, args: [u64; 6]) -> Result<[u64; 3], ErrorCode> {
        let [control, slot, base, pages, ..] = args;
        self.require_control(id, control, rights::DEVICE)?;
        let slot = self.caps.empty_slot(id, slot)?;
        let end = pages.checked_mul(PAGE_SIZE).and_then(|size| base.checked_add(size));
        let Some(end) = end.filter(|_| base % PAGE_SIZE == 0 && pages > 0 && pages <= u64::from(u32::MAX)) else {
            return Err(ErrorCode::InvalidArgument);
        };
        let range = (base, end);
        let platform = &self.platform;
        let units = platform.units.iter().map(|unit| (unit.base, unit.pages));
        let held = platform.ecam.iter().copied().chain(units).map(|(b, p)| (b, b + u64::from(p) * PAGE_SIZE));
        let forbidden = platform
            .ram
            .iter()
            .copied()
            .chain(KERNEL_DEVICES)
            .chain(held)
            .chain(platform.granted.iter().copied())
            .any(|other| overlaps(range, other));
        if forbidden {
            return Err(ErrorCode::PermissionDenied);
        }
        let cap = Capability {
            object: Object::DeviceMemory { base, pages: pages as u32 },
            rights: rights::READ | rights::WRITE | rights::GRANT,
            badge: 0,
        };
        self.install(slot, cap, None)?;
        Ok([0; 3])
    }
}
