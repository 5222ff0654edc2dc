//! The driver core: who may hold which device, and handing its capabilities over.
//!
//! A device has at most one holder: the driver the policy (or an
//! administrator) binds to it, which takes it with `Probe`, or the user
//! task that owns its IOMMU group, which takes it with `Acquire`. The
//! holder gets children of the server's BAR capabilities, an MSI vector and,
//! for a DMA-capable driver, the DMA handle the IOMMU server minted; the
//! server takes all of them back (revokes) and quiesces the device before
//! anyone else may hold it. Every decision is a `Result` here, over the
//! [`env`] traits, so host tests drive it with models of the kernel and
//! the IOMMU server.
//!
//! There is no allocator, so a refusal carries its reason inline (400
//! bytes): the error side of the results here is large by design, built
//! at most once per request.
#![expect(clippy::result_large_err, reason = "refusals carry their reason inline; there is no heap to box it on")]

pub mod bars;
pub mod device;
pub mod env;
pub mod interrupts;
pub mod iommu;
pub mod mediation;
pub mod msix_pages;
pub mod quiesce;
pub mod refusal;

mod admin;
mod grant;
mod msix;
mod release;
mod setup;
mod state;
#[cfg(test)]
mod tests;

pub use env::{Hardware, IommuLink, Kernel, MsiVector, Slot};
pub use refusal::Refusal;
pub use state::{Answer, DriverCore, IOMMU_EVENT, MAX_HOLDERS, death_bit};
