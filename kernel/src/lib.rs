//! The microkernel's logic, free of hardware so it runs under `cargo test`.
//!
//! Everything here works on plain data and reaches memory only through the
//! [`phys::PhysMem`] trait; the machine layer (`src/machine/`, the kernel
//! binary) supplies the real thing, host tests supply an array. No `unsafe`
//! code lives in this crate.
#![cfg_attr(not(test), no_std)]

#[macro_use]
extern crate log_shim;

pub mod bootinfo;
pub mod context;
pub mod cspace;
pub mod frames;
pub mod image;
pub mod integrity;
pub mod kernel;
pub mod objects;
pub mod paging;
pub mod phys;
pub mod sched;
pub mod task;
pub mod usermem;

#[cfg(test)]
pub mod testing;
