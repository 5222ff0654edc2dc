//! The guest's user space: the `linux-peer` program, built static, in an initramfs with busybox.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use object::Endianness;
use object::elf::PT_INTERP;
use object::read::elf::{ElfFile64, ProgramHeader};

use crate::bench::cpio::Archive;
use crate::bench::debian::Guest;
use crate::workspace;

pub(super) fn build_program(root: &Path, target_dir: &Path) -> Result<PathBuf> {
    let flags = ["-Ctarget-feature=+crt-static", "-Cstrip=debuginfo"];
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["build", "--quiet", "--release", "-p", "linux-peer", "--target", workspace::TARGET])
        .arg("--target-dir")
        .arg(target_dir)
        .env_remove("RUSTFLAGS")
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\u{1f}"))
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build -p linux-peer failed");
    }
    let program = target_dir.join(workspace::TARGET).join("release").join("linux-peer");
    let bytes = std::fs::read(&program).with_context(|| format!("reading {}", program.display()))?;
    let elf = ElfFile64::<Endianness>::parse(bytes.as_slice()).context("linux-peer is not a 64-bit ELF")?;
    if elf.elf_program_headers().iter().any(|header| header.p_type(elf.endian()) == PT_INTERP) {
        bail!("{} is dynamically linked; the initramfs has no libc", program.display());
    }
    Ok(program)
}

/// The guest's `/init`: mount what the program reads, run it, power off (QEMU exits, `-no-reboot`).
const INIT: &str = "#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/peer
/bin/busybox poweroff -f
";

/// The initramfs: busybox, `/init`, the program, and the modules with their load order.
pub(super) fn initramfs(guest: &Guest, program: &[u8]) -> Result<Vec<u8>> {
    let mut archive = Archive::new();
    for dir in ["/bin", "/dev", "/proc", "/sys", "/modules"] {
        archive.directory(dir);
    }
    // The console node, so /init has stdin/stdout before devtmpfs is mounted.
    archive.char_device("/dev/console", 0o600, 5, 1);
    archive.file("/bin/busybox", 0o755, &std::fs::read(&guest.busybox)?);
    archive.file("/init", 0o755, INIT.as_bytes());
    archive.file("/peer", 0o755, program);
    let mut order = String::new();
    for module in &guest.modules {
        archive.file(&format!("/modules/{}", module.file_name), 0o644, &module.bytes);
        order.push_str(&module.file_name);
        order.push('\n');
    }
    archive.file("/modules/order", 0o644, order.as_bytes());
    Ok(archive.finish())
}
