//! The IOMMU server's logic: VT-d hardware model, tables, invalidation and faults.
//!
//! Everything here is plain logic over traits: registers through
//! [`registers::Registers`], table memory through [`memory::TablePages`],
//! so host tests drive it against simulated hardware and the ring-3 server
//! against the real unit. Nothing allocates; every bound is a type
//! parameter or a constant, and every failure is an error value.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod capability;
pub mod context;
pub mod domain;
pub mod fault;
pub mod invalidation;
pub mod iova;
pub mod memory;
pub mod pagetable;
pub mod range;
pub mod registers;
pub mod unit;

#[cfg(test)]
mod testing;
