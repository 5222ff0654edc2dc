//! Log macros: `defmt` in the server binary, nothing in host tests.
//!
//! The one place that decides where the server logic's log lines go, so the
//! logic itself never names a logging crate.

#[cfg(feature = "defmt")]
macro_rules! info {
    ($($arg:tt)*) => { defmt::info!($($arg)*) };
}
#[cfg(feature = "defmt")]
macro_rules! warn {
    ($($arg:tt)*) => { defmt::warn!($($arg)*) };
}
#[cfg(feature = "defmt")]
macro_rules! error {
    ($($arg:tt)*) => { defmt::error!($($arg)*) };
}

#[cfg(not(feature = "defmt"))]
macro_rules! info {
    ($fmt:literal $(, $arg:expr)* $(,)?) => { { let _ = ($(&$arg),*); } };
}
#[cfg(not(feature = "defmt"))]
macro_rules! warn {
    ($fmt:literal $(, $arg:expr)* $(,)?) => { { let _ = ($(&$arg),*); } };
}
#[cfg(not(feature = "defmt"))]
macro_rules! error {
    ($fmt:literal $(, $arg:expr)* $(,)?) => { { let _ = ($(&$arg),*); } };
}
