//! Refusals: an error code and a sentence naming the devices, groups and tasks involved.

use core::fmt::{self, Write};

use capabilities::ErrorCode;
use heapless::String;
use pci_api::{REASON_MAX, Reply};

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The error code the client gets.
    pub code: ErrorCode,
    /// The explanation, cut to [`REASON_MAX`] bytes.
    pub reason: String<REASON_MAX>,
}

/// Collects text up to the capacity and drops the rest, so a long name
/// shortens a reason instead of losing it.
struct Truncating<'a, const N: usize>(&'a mut String<N>);

impl<const N: usize> Write for Truncating<'_, N> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for character in text.chars() {
            if self.0.push(character).is_err() {
                break;
            }
        }
        Ok(())
    }
}

/// Formats `args` into a string of at most `N` bytes, cutting what does not fit.
pub fn truncated<const N: usize>(args: fmt::Arguments<'_>) -> String<N> {
    let mut text = String::new();
    // Truncating never fails, and the formatting of our own values does not either.
    let _ = Truncating(&mut text).write_fmt(args);
    text
}

impl Refusal {
    /// A refusal with `code`, explained by `args`.
    pub fn new(code: ErrorCode, args: fmt::Arguments<'_>) -> Self {
        Self { code, reason: truncated(args) }
    }

    /// The reply that carries it.
    pub fn into_reply(self) -> Reply {
        Reply::Refused { code: self.code, reason: self.reason }
    }
}

/// `Refusal::new(code, format_args!(...))`.
macro_rules! refuse {
    ($code:expr, $($arg:tt)*) => {
        $crate::driver_core::refusal::Refusal::new($code, format_args!($($arg)*))
    };
}

pub(crate) use refuse;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_are_cut_not_lost() {
        let long = "x".repeat(1000);
        let refusal = refuse!(ErrorCode::Busy, "held by {long}");
        assert_eq!(refusal.reason.len(), REASON_MAX);
        assert!(refusal.reason.starts_with("held by xxx"));
        let short: String<4> = truncated(format_args!("déjà"));
        assert_eq!(short.as_str(), "déj", "never splits a character");
    }
}
