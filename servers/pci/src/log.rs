//! Log macros that go to `defmt` in the server and compile to nothing on the host.
//!
//! The driver core reports what it decides (grants, refusals, reclaims) as
//! it decides it; host tests check the decisions through return values, so
//! they need no logger. Arguments are still evaluated by reference on the
//! host, so a variable used only in a log line is not reported unused.

/// Logs at info level.
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::emit!(info, $($arg)*) };
}

/// Logs at warning level.
macro_rules! warning {
    ($($arg:tt)*) => { $crate::log::emit!(warn, $($arg)*) };
}

/// Logs at error level.
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::emit!(error, $($arg)*) };
}

#[cfg(feature = "defmt")]
macro_rules! emit {
    ($level:ident, $($arg:tt)*) => { defmt::$level!($($arg)*) };
}

#[cfg(not(feature = "defmt"))]
macro_rules! emit {
    ($level:ident, $format:literal $(, $arg:expr)* $(,)?) => {{
        $( let _ = &$arg; )*
    }};
}

pub(crate) use {emit, error, info, warning};
