//! Cache invalidation: what to invalidate, and the commands that do it.

pub mod descriptor;
pub mod policy;
pub mod register;
pub mod scope;

pub use descriptor::{Descriptor, InterruptEntryScope, WaitAction};
pub use policy::Invalidation;
pub use scope::{ContextScope, Drain, IotlbScope};
