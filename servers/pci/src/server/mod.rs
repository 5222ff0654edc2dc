//! The server binary's glue: system calls and IPC behind the library's traits.

pub mod acpi;
pub mod ecam;
pub mod iommu;
pub mod kernel;
