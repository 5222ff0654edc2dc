//! DMA faults: decoding fault records, per-group logs, and storm limiting.

mod log;
mod rate;
mod reason;
mod record;

pub use log::FaultLog;
pub use rate::RateLimiter;
pub use reason::{FaultCategory, FaultReason};
pub use record::{FaultAccess, FaultRecord};
