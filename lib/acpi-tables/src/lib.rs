//! ACPI tables the servers read: RSDP, XSDT, DMAR, MCFG, and the host bridges the DSDT declares.
//!
//! Physical memory is reached only through [`TableMemory`], so the same code
//! runs over the memory the kernel maps for a server and over a byte array in
//! host tests. Nothing here allocates: tables are read into caller buffers and
//! walked with iterators. Every malformed input is an error value that names
//! the table, structure and field at fault; no input can make this crate
//! panic, index out of bounds or loop forever.
#![cfg_attr(not(any(test, feature = "testing")), no_std)]

pub mod aml;
mod bytes;
pub mod dmar;
pub mod mcfg;
pub mod memory;
pub mod root;
pub mod rsdp;
pub mod sdt;
pub mod snapshot;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use dmar::{Dmar, DmarError};
pub use mcfg::{EcamRegion, Mcfg, McfgError};
pub use memory::{SliceMemory, TableMemory};
pub use root::{RootError, RootKind, RootTable};
pub use rsdp::{Rsdp, RsdpError};
pub use sdt::{Sdt, SdtHeader, TableError};
pub use snapshot::{DsdtError, LookupError, SNAPSHOT_MAX, SnapshotError, SnapshotMemory, find_table};
