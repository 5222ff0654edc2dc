//! Panics two calls below `main`. The panic handler must log the message
//! and a backtrace the host turns into both calls, by function and line.
#![no_std]
#![no_main]

userlib::entry!(main);

fn main() -> u64 {
    defmt::info!("adding up the first five of three entries");
    let entries = core::hint::black_box([1u64, 2, 3]);
    total(&entries, core::hint::black_box(5))
}

/// Adds up the first `count` entries, through a call of its own so that
/// the backtrace has two of this task's frames.
#[inline(never)]
fn total(entries: &[u64], count: usize) -> u64 {
    first(entries, count).iter().sum() // the foundation scenario names this line
}

/// The first `count` entries; more than there are is the panic.
#[inline(never)]
fn first(entries: &[u64], count: usize) -> &[u64] {
    &entries[..count] // the foundation scenario names this line
}
