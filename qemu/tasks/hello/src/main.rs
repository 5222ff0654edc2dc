//! The smallest task: says hello from ring 3 and exits.
#![no_std]
#![no_main]

userlib::entry!(main);

fn main() -> u64 {
    let answer: u32 = 6 * 7;
    defmt::info!("hello from user mode: 6 * 7 = {=u32}", answer);
    0
}
