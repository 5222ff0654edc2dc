//! The IOMMU server's logic: VT-d hardware model, tables, invalidation and faults.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
