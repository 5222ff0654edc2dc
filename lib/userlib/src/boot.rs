//! The boot-information page: this task's part of the policy.

use capabilities::ErrorCode;
use capabilities::abi::layout;
use serde::Deserialize;

/// The configuration blob the build tool wrote for this task (empty for
/// tasks the policy gives none).
pub fn config_bytes() -> &'static [u8] {
    let page = layout::BOOT_INFO as *const u8;
    // SAFETY: the kernel maps the boot-information page read-only at
    // `BOOT_INFO` for the task's whole life and never changes it; it holds a
    // `u32` length followed by that many bytes, bounded by the page.
    unsafe {
        let len = (page as *const u32).read_volatile() as usize;
        core::slice::from_raw_parts(page.add(4), len.min(4092))
    }
}

/// The parameter `name` the policy gives this task, or `default`.
pub fn parameter(name: &str, default: u64) -> u64 {
    config::<capabilities::config::Parameters>().ok().and_then(|parameters| parameters.get(name)).unwrap_or(default)
}

/// Decodes this task's configuration.
pub fn config<'a, T: Deserialize<'a>>() -> Result<T, ErrorCode> {
    postcard::from_bytes(config_bytes()).map_err(|_| ErrorCode::Malformed)
}

/// A server's configuration, or `None` with the reason logged naming
/// `server` (a server cannot start without its part of the policy).
pub fn server_config<'a, T: Deserialize<'a>>(server: &str) -> Option<T> {
    match config() {
        Ok(config) => Some(config),
        Err(code) => {
            error!("no {=str} configuration in the boot information: {}", server, code);
            None
        }
    }
}
