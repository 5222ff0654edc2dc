//! One ACPI table read out of the kernel's snapshot, and the granted region it must describe.
//!
//! The IOMMU server checks its remapping-unit capability against DMAR and
//! the PCI server its ECAM capability against MCFG: each reads the
//! snapshot the kernel made at boot, finds one table in it, and compares
//! the region the capability grants with the table's.

use core::fmt::Debug;

use acpi_tables::{RootTable, SNAPSHOT_MAX, SnapshotMemory};

use crate::cap::{Cap, DeviceMemory, Frame};
use crate::mmio::copy_frame;

/// Where the snapshot is mapped while it is copied.
const SNAPSHOT_VIRT: u64 = 0x2000_0000;
/// Bytes kept for the root table (RSDT or XSDT).
const ROOT_MAX: usize = 1024;
/// Bytes kept for the table read.
const TABLE_MAX: usize = 4096;

/// The memory a table lookup reads into: the snapshot, the root table and
/// the table itself, which the table found borrows.
pub struct TableReader {
    snapshot: [u8; SNAPSHOT_MAX],
    root: [u8; ROOT_MAX],
    table: [u8; TABLE_MAX],
}

impl TableReader {
    /// Empty buffers.
    pub const fn new() -> Self {
        Self { snapshot: [0; SNAPSHOT_MAX], root: [0; ROOT_MAX], table: [0; TABLE_MAX] }
    }

    /// Table `name` of the snapshot in `acpi`, found and checked by `find`
    /// (such as `Dmar::find`); `None` with the reason logged, and
    /// `consequence` said of it.
    pub fn read<'s, T, E: Debug>(
        &'s mut self,
        acpi: Cap<Frame>,
        name: &'static str,
        consequence: &str,
        find: impl FnOnce(&SnapshotMemory<'s>, &RootTable<'_>, &'s mut [u8]) -> Result<Option<T>, E>,
    ) -> Option<T> {
        let length = match copy_frame(acpi, SNAPSHOT_VIRT, &mut self.snapshot) {
            Ok(length) => length,
            Err(code) => {
                defmt::error!("the ACPI snapshot cannot be read: {}", code);
                return None;
            }
        };
        let table = &mut self.table;
        acpi_tables::find_table(&self.snapshot[..length], &mut self.root, name, |tables, root| {
            find(tables, root, table)
        })
        .map_err(|error| defmt::error!("{}: {=str}", defmt::Display2Format(&error), consequence))
        .ok()
    }
}

impl Default for TableReader {
    fn default() -> Self {
        Self::new()
    }
}

/// The base and length in pages of the region `memory` grants; `None`
/// with the reason logged, naming it `what`.
pub fn granted_region(memory: Cap<DeviceMemory>, what: &str) -> Option<(u64, u64)> {
    match memory.info() {
        Ok(info) => Some((info.badge_or_base, info.extent)),
        Err(code) => {
            defmt::error!("no {=str} capability: {}", what, code);
            None
        }
    }
}
