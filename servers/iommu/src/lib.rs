//! The IOMMU server's logic: VT-d hardware model, tables, invalidation and faults.
//!
//! Everything here is plain logic over traits: registers through
//! [`registers::Registers`], table memory through [`memory::TablePages`],
//! so host tests drive it against simulated hardware and the ring-3 server
//! against the real unit. Nothing allocates; every bound is a type
//! parameter or a constant, and every failure is an error value.
//!
//! A unit comes up as follows: find it in the DMAR table (`acpi-tables`),
//! map its registers, [`unit::RemappingUnit::new`] decodes its
//! [`capability::Capabilities`]; build a [`context::ContextTables`] and
//! [`unit::RemappingUnit::bring_up`] over its root (queued invalidation on,
//! caches invalidated); then [`unit::RemappingUnit::enable_translation`],
//! which blocks every requester until a context entry is installed. Each
//! domain gets a [`pagetable::SecondLevelTable`] and an
//! [`iova::IovaAllocator`]; every table change returns the
//! [`invalidation::Invalidation`] it needs, which
//! [`unit::RemappingUnit::perform`] carries out. Faults come back through
//! [`unit::RemappingUnit::drain_faults`] into per-group
//! [`fault::FaultLog`]s behind a [`fault::RateLimiter`].
#![cfg_attr(not(any(test, feature = "testing")), no_std)]

#[macro_use]
extern crate log_shim;

pub mod capability;
pub mod context;
pub mod domain;
pub mod fault;
pub mod interrupt;
pub mod invalidation;
pub mod iova;
pub mod memory;
pub mod ownership;
pub mod pagetable;
pub mod range;
pub mod registers;
pub mod service;
pub mod unit;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
