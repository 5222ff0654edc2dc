//! IOMMU group formation: which PCI functions the IOMMU cannot isolate.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
