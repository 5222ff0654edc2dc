//! IOMMU group formation: which PCI functions the IOMMU cannot isolate.
//!
//! [`form_groups`] takes the PCI server's topology and forms groups exactly
//! as Linux 6.1's `pci_device_group()` does, so a driver and a user task
//! never share a group Linux would have merged. Each function's placement
//! carries its [`Cause`]; [`Groups::explain`] turns them into sentences.
//! Pure logic over plain data: no allocation, no hardware.
#![cfg_attr(not(test), no_std)]

pub mod acs;
pub mod alias;
pub mod cause;
pub mod error;
pub mod form;
pub mod groups;
pub mod index;

pub use cause::Cause;
pub use error::GroupError;
pub use form::form_groups;
pub use groups::{GroupId, Groups, MAX_GROUPS, Placement, Reason};
