//! Peer benchmarks run inside a Debian Linux guest on the same QEMU machine.

fn main() {}
