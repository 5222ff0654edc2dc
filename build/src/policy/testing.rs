//! A policy the checker accepts, and the task binaries it is told exist.
//!
//! Shared by this crate's policy tests and, with the `testing` feature, by
//! the `policy` fuzz target and its seeds, so the fuzzer starts from the
//! policy the tests break rule by rule.

/// The task crates the checker is told exist.
pub const BINARIES: [&str; 3] = ["echo-server", "kernel-test", "hello"];

/// An echo server and its client, with a grant of most kinds: receive,
/// mint, send with operations, notification, watch, I/O ports, interrupt,
/// control and device memory. The tests name its lines in their messages.
pub const GOOD: &str = r#"version = 1
description = "an echo server and its client"
init = "client"

[endpoints.echo]
server = "echo"
protocol = "echo"

[notifications.wakeup]

[tasks.echo]
binary = "echo-server"
kind = "system-server"
priority = 3
memory-pages = 64
stack-pages = 4
objects = 4

[tasks.echo.caps]
requests = { receive = "echo" }
minter = { send = "echo", mint = true }

[tasks.client]
binary = "kernel-test"
kind = "system-server"
priority = 2
memory-pages = 64
stack-pages = 4

[tasks.client.caps]
echo = { send = "echo", operations = ["reverse", "mint-badge"] }
wakeup = { notification = "wakeup", signal = true, wait = true, badge = 4 }
echo-task = { watch = "echo" }
rtc = { io-ports = { base = 0x70, count = 2 } }
rtc-irq = { interrupt = { gsi = 8, trigger = "edge" } }
control = { control = ["dma", "irq"] }
regs = { device-memory = { base = 0xfed90000, pages = 1 } }
"#;
