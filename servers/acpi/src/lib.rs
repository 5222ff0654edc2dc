//! ACPI tables the servers read: RSDP, XSDT, DMAR and MCFG.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
