//! Making sure QEMU is installed: Debian's `qemu-system-x86`, installed
//! when running as root, or the exact command to run otherwise.

use std::process::{Command, Stdio};

use anyhow::{Result, bail};
use qemu::machine::QEMU;

const INSTALL: &str = "apt-get update && apt-get install -y qemu-system-x86";

fn present() -> bool {
    Command::new(QEMU).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Ensures `qemu-system-x86_64` can be started.
pub fn ensure_qemu() -> Result<()> {
    if present() {
        return Ok(());
    }
    if !is_root() {
        bail!("{QEMU} is not installed; install it with:\n    sudo sh -c '{INSTALL}'");
    }
    eprintln!("{QEMU} is missing: installing Debian's qemu-system-x86 ({INSTALL})");
    let status = Command::new("sh").args(["-c", INSTALL]).env("DEBIAN_FRONTEND", "noninteractive").status()?;
    if !status.success() || !present() {
        bail!("installing QEMU failed; run `{INSTALL}` by hand and try again");
    }
    Ok(())
}
