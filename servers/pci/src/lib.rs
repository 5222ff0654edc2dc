//! The PCI server's logic: configuration space, enumeration and capabilities.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
