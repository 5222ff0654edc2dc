//! The platform layer: ECAM, the kernel, the IOMMU server and ACPI behind the driver core's traits.

pub mod acpi;
pub mod ecam;
pub mod iommu;
pub mod kernel;
