//! The DMA Remapping table (DMAR): the VT-d units, reserved regions and scopes.

mod error;
mod scope;
mod structure;
mod table;

#[cfg(test)]
mod tests;

pub use error::DmarError;
pub use scope::{DeviceScope, DeviceScopes, PathElement, PciAddress, ScopeKind};
pub use structure::{Atsr, Drhd, RemappingStructure, Rmrr, Structures};
pub use table::{Dmar, DmarFindError, DmarFlags};
