//! IOMMU groups of a real machine: booted, reported, compared with Linux.
//!
//! [`boot`] boots a machine with the groups reporter, [`report`] reads what
//! it logged, [`oracle`] compares that with Linux's recorded groups.

pub mod boot;
pub mod oracle;
pub mod report;

pub use boot::{Booted, boot};
pub use report::{Function, Group, MachineGroups, ReportError};
