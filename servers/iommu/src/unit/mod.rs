//! One remapping unit's bring-up and operation sequences, over its registers.

mod command;
mod error;
mod faults;
mod invalidate;
mod queue;
mod remapping;

#[cfg(any(test, feature = "testing"))]
pub mod fake;
#[cfg(test)]
mod tests;

pub use error::UnitError;
pub use faults::{FaultDrain, MsiMessage};
pub use queue::{NoQueue, QueueConfig, QueueMemory};
pub use remapping::RemappingUnit;
