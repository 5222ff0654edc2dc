//! The platform layer: the real unit, its memory and the kernel behind the service's traits.
//!
//! Everything here reaches hardware or the kernel through system calls;
//! the decisions stay in the library (`iommu_server::service`).

pub mod acpi;
pub mod ioapic;
pub mod kernel;
pub mod queue;
pub mod registers;
pub mod tables;

use core::marker::PhantomData;

use iommu_server::service::Platform;

/// The VT-d unit through its mapped registers, with a pinned queue
/// frame and table memory from the server's own quota.
pub struct Vtd<'a>(PhantomData<&'a ()>);

impl<'a> Platform for Vtd<'a> {
    type Registers = registers::MmioRegisters;
    type Queue = queue::QueuePages;
    type Pages = tables::FramePool<'a>;
}
