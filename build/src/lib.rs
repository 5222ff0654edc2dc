//! The build tool's library: building, checking, packing, running and
//! testing, used by the `cargo xtask` command (`main.rs`) and by the fuzz
//! targets and tests that exercise the policy checker and the packer.

pub mod bare_metal;
pub mod bench;
pub mod capslots;
pub mod debugger;
pub mod fuzz;
pub mod groups;
pub mod image;
pub mod mutate;
pub mod new;
pub mod policy;
pub mod progress;
pub mod setup;
pub mod system;
pub mod test;
pub mod workspace;
