//! Building the bare-metal ELFs: the kernel and every task, in one cargo
//! invocation with the flags that link them without a C runtime.
//!
//! The flags go through `CARGO_ENCODED_RUSTFLAGS` with an explicit
//! `--target`, so they reach only the bare-metal crates, never build
//! scripts or proc macros. Each crate adds its own layout script from its
//! `build.rs` (`kernel/kernel.ld`, `lib/userlib/task.ld`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::workspace::{self, BareMetalCrate, TARGET};

/// Link and code-generation flags shared by every bare-metal ELF.
const RUSTFLAGS: &[&str] = &[
    "-Clink-arg=-nostartfiles",
    "-Clink-arg=-nostdlib",
    "-Clink-arg=-static",
    "-Clink-arg=-no-pie",
    "-Clink-arg=-Tdefmt.x",
    "-Clink-arg=-zmax-page-size=4096",
    "-Cforce-frame-pointers=yes",
];

/// Which `defmt` levels are compiled in, unless `DEFMT_LOG` says otherwise.
const DEFAULT_LOG_LEVEL: &str = "info";

/// The built ELFs, by crate name.
pub struct Elves {
    dir: PathBuf,
}

impl Elves {
    /// Path of the ELF of crate `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// A cargo command (`build` or `clippy`) over every bare-metal crate, with
/// the bare-metal flags and features.
fn cargo(root: &Path, subcommand: &str, crates: &[BareMetalCrate], quiet: bool) -> Command {
    let mut command = Command::new(env!("CARGO"));
    command.current_dir(root).args([subcommand, "--release", "--target", TARGET]);
    if quiet {
        command.arg("--quiet");
    }
    for BareMetalCrate { name, .. } in crates {
        command.args(["-p", name, "--features", &format!("{name}/bare-metal")]);
    }
    command.env_remove("RUSTFLAGS").env("CARGO_ENCODED_RUSTFLAGS", RUSTFLAGS.join("\u{1f}"));
    if std::env::var_os("DEFMT_LOG").is_none() {
        command.env("DEFMT_LOG", DEFAULT_LOG_LEVEL);
    }
    command
}

/// Builds every bare-metal crate in release mode.
pub fn build(root: &Path, quiet: bool) -> Result<Elves> {
    let crates = workspace::bare_metal_crates(root)?;
    if crates.is_empty() {
        bail!("no bare-metal crates found in the workspace");
    }
    let started = Instant::now();
    if !quiet {
        eprintln!("building {} bare-metal crates (release, {TARGET})...", crates.len());
    }
    let status = cargo(root, "build", &crates, quiet).status().context("running cargo build")?;
    if !status.success() {
        bail!("building the bare-metal crates failed");
    }
    if !quiet {
        eprintln!("built in {:.1} s", started.elapsed().as_secs_f64());
    }
    let elves = Elves { dir: workspace::elf_dir(root) };
    for BareMetalCrate { name, .. } in &crates {
        let path = elves.path(name);
        if !path.exists() {
            bail!("cargo finished but {} is missing", path.display());
        }
    }
    Ok(elves)
}

/// Runs clippy over every bare-metal crate as it is built, warnings denied.
pub fn clippy(root: &Path) -> Result<bool> {
    let crates = workspace::bare_metal_crates(root)?;
    let mut command = cargo(root, "clippy", &crates, false);
    command.args(["--", "-D", "warnings"]);
    Ok(command.status().context("running cargo clippy")?.success())
}
