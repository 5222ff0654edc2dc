//! Making sure QEMU (and, for `--gdb`, gdb) is installed: Debian's
//! packages, installed when running as root, or the exact command to run
//! otherwise.

use std::process::{Command, Stdio};

use anyhow::{Result, bail};
use qemu::machine::QEMU;

/// A tool the commands start, and the Debian package that has it.
struct Tool {
    program: &'static str,
    package: &'static str,
}

const QEMU_TOOL: Tool = Tool { program: QEMU, package: "qemu-system-x86" };
const GDB_TOOL: Tool = Tool { program: "gdb", package: "gdb" };

fn present(tool: &Tool) -> bool {
    Command::new(tool.program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Ensures `tool` can be started, installing its package as root.
fn ensure(tool: &Tool) -> Result<()> {
    if present(tool) {
        return Ok(());
    }
    let install = format!("apt-get update && apt-get install -y {}", tool.package);
    if !is_root() {
        bail!("{} is not installed; install it with:\n    sudo sh -c '{install}'", tool.program);
    }
    eprintln!("{} is missing: installing Debian's {} ({install})", tool.program, tool.package);
    let status = Command::new("sh").args(["-c", &install]).env("DEBIAN_FRONTEND", "noninteractive").status()?;
    if !status.success() || !present(tool) {
        bail!("installing {} failed; run `{install}` by hand and try again", tool.package);
    }
    Ok(())
}

/// Ensures `qemu-system-x86_64` can be started.
pub fn ensure_qemu() -> Result<()> {
    ensure(&QEMU_TOOL)
}

/// Ensures `gdb` can be started.
pub fn ensure_gdb() -> Result<()> {
    ensure(&GDB_TOOL)
}
