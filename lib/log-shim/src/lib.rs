//! Log macros: `defmt` where the calling crate's `defmt` feature is on, nothing elsewhere.
//!
//! The one place that decides where library logic's log lines go (the
//! kernel's, the IOMMU server's, the PCI driver core's), so the logic
//! never names a logging crate and its host tests need no logger. The
//! `cfg` inside each expansion is the *calling* crate's, which must have a
//! `defmt` feature enabling its own `defmt` dependency. Without it the
//! arguments are still evaluated by reference, so a variable used only in
//! a log line is not reported unused. Bring the macros in with
//! `#[macro_use] extern crate log_shim;`.
#![no_std]

/// Logs at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::emit!(info, $($arg)*) };
}

/// Logs at warning level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::emit!(warn, $($arg)*) };
}

/// Logs at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::emit!(error, $($arg)*) };
}

/// Sends a line to `defmt` at `$level`, or only evaluates its arguments.
#[doc(hidden)]
#[macro_export]
macro_rules! emit {
    ($level:ident, $format:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        defmt::$level!($format $(, $arg)*);
        #[cfg(not(feature = "defmt"))]
        let _ = ($(&$arg),*);
    }};
}
