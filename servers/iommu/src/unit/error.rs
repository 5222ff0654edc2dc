//! Why a unit operation failed.

use core::fmt;

use crate::capability::CapabilityError;

/// Why a unit operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitError {
    /// The unit's capabilities are unusable.
    Capability(CapabilityError),
    /// The hardware did not finish within the spin limit.
    Timeout {
        /// What was being waited for.
        operation: &'static str,
    },
    /// The unit lacks a feature the operation needs.
    Unsupported {
        /// The feature.
        feature: &'static str,
    },
    /// Register-based invalidation was asked for while queued invalidation
    /// is enabled (QEMU ignores it then; hardware may too).
    QueuedInvalidationActive,
    /// The queue configuration is invalid (size order above 7, or the
    /// status address not 4-byte aligned).
    QueueConfig,
    /// The batch does not fit in the free part of the queue.
    QueueFull {
        /// Slots needed, the wait descriptor included.
        needed: usize,
        /// Slots free.
        free: u32,
    },
    /// The unit refused a queued descriptor (FSTS.IQE); it was replaced so
    /// the queue could go on.
    InvalidDescriptor {
        /// The queue slot it was in.
        slot: u32,
    },
    /// The unit refused a register-based invalidation (actual granularity
    /// reported as 0).
    InvalidationRefused,
}

impl From<CapabilityError> for UnitError {
    fn from(error: CapabilityError) -> Self {
        Self::Capability(error)
    }
}

impl fmt::Display for UnitError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Capability(error) => write!(formatter, "capabilities: {error}"),
            Self::Timeout { operation } => write!(formatter, "timed out waiting to {operation}"),
            Self::Unsupported { feature } => write!(formatter, "the unit does not support {feature}"),
            Self::QueuedInvalidationActive => {
                formatter.write_str("register invalidation while queued invalidation is on")
            }
            Self::QueueConfig => formatter.write_str("invalid invalidation queue configuration"),
            Self::QueueFull { needed, free } => write!(formatter, "{needed} queue slots needed, {free} free"),
            Self::InvalidDescriptor { slot } => write!(formatter, "the unit refused the descriptor in slot {slot}"),
            Self::InvalidationRefused => formatter.write_str("the unit refused the invalidation"),
        }
    }
}
