//! `--gdb`: QEMU started halted with its gdb stub, and a gdb script that knows the kernel's and every task's symbols.
//!
//! The kernel is linked at its own addresses and stays loaded; every task
//! is linked at 0x400000 in its own address space, so the script defines
//! one command per task (`task-NAME`) that swaps that task's symbols in.
//! QEMU's breakpoints match a virtual address in whatever address space
//! runs, so a breakpoint set with one task's symbols stops that task (and
//! any other that happens to execute the same address).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::bare_metal::Elves;
use crate::system::System;

/// The TCP port of QEMU's gdb stub.
pub const PORT: u16 = 1234;
/// How long a run under the debugger may last: a session, not a test.
pub const SESSION: Duration = Duration::from_secs(24 * 60 * 60);
/// Where the scripts go.
const SCRIPT_DIR: &str = "target/gdb";

/// The gdb script for a system whose kernel ELF is `kernel`, with
/// `tasks` as (task name, ELF) pairs, QEMU's stub listening on `port`.
pub fn script(kernel: &Path, tasks: &[(String, PathBuf)], port: u16) -> String {
    let mut text = String::from(
        "# Written by `cargo xtask ... --gdb`. Attach with `gdb -x` this file.\n\
         # `task-NAME` loads task NAME's symbols beside the kernel's; `kernel-only` drops them.\n\
         set pagination off\nset confirm off\nset architecture i386:x86-64\n",
    );
    let _ = writeln!(text, "symbol-file {}", kernel.display());
    let _ = writeln!(text, "define kernel-only\n  symbol-file {}\nend", kernel.display());
    let _ = writeln!(text, "document kernel-only\nKeeps the kernel's symbols alone.\nend");
    for (name, elf) in tasks {
        let _ = writeln!(
            text,
            "define task-{name}\n  symbol-file {}\n  add-symbol-file {}\nend",
            kernel.display(),
            elf.display()
        );
        let _ = writeln!(
            text,
            "document task-{name}\nLoads the symbols of task {name} ({}) beside the kernel's.\nend",
            elf.display()
        );
    }
    let _ = writeln!(text, "target remote localhost:{port}");
    text
}

/// Makes `command` start QEMU halted with its stub on [`PORT`], writes the
/// script for `system` as `target/gdb/NAME.gdb` and returns its path.
pub fn prepare(root: &Path, name: &str, system: &System, elves: &Elves, command: &mut Command) -> Result<PathBuf> {
    crate::setup::ensure_gdb()?;
    let tasks: Vec<(String, PathBuf)> =
        system.policy.tasks.iter().map(|task| (task.name.clone(), elves.path(&task.binary))).collect();
    let dir = root.join(SCRIPT_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{name}.gdb"));
    std::fs::write(&path, script(&system.kernel, &tasks, PORT))
        .with_context(|| format!("cannot write {}", path.display()))?;
    command.args(["-S", "-gdb", &format!("tcp:localhost:{PORT}")]);
    Ok(path)
}

/// Tells the person at the terminal how to attach.
pub fn announce(script: &Path) {
    eprintln!("QEMU is halted with its gdb stub on localhost:{PORT}; in another terminal attach with:");
    eprintln!("    gdb -x {}", script.display());
    eprintln!("(`task-NAME` in gdb loads a task's symbols; `continue` starts the system)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_loads_the_kernel_defines_a_command_per_task_and_attaches_last() {
        let tasks = [
            ("iommu".to_owned(), PathBuf::from("/t/iommu-server")),
            ("pci".to_owned(), PathBuf::from("/t/pci-server")),
        ];
        let text = script(Path::new("/t/kernel"), &tasks, 4321);
        assert!(text.contains("set architecture i386:x86-64\nsymbol-file /t/kernel\n"));
        assert!(text.contains("define task-iommu\n  symbol-file /t/kernel\n  add-symbol-file /t/iommu-server\nend"));
        assert!(text.contains("define task-pci\n"));
        assert!(text.trim_end().ends_with("target remote localhost:4321"));
    }
}
