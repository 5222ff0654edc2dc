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

/// Where `cargo xtask mutate` builds its variants, apart from the normal
/// ELFs so that no normal build ever picks one up.
const VARIANT_DIR: &str = "target/mutants";

/// The built ELFs, by crate name.
pub struct Elves {
    dir: PathBuf,
    /// A crate whose ELF comes from elsewhere (a variant build).
    replaced: Option<(String, PathBuf)>,
}

impl Elves {
    /// Path of the ELF of crate `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        match &self.replaced {
            Some((replaced, path)) if replaced == name => path.clone(),
            _ => self.dir.join(name),
        }
    }

    /// These ELFs with crate `name`'s replaced by the one at `path`.
    pub fn replacing(&self, name: &str, path: PathBuf) -> Elves {
        Elves { dir: self.dir.clone(), replaced: Some((name.to_owned(), path)) }
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
    let elves = Elves { dir: workspace::elf_dir(root), replaced: None };
    for BareMetalCrate { name, .. } in &crates {
        let path = elves.path(name);
        if !path.exists() {
            bail!("cargo finished but {} is missing", path.display());
        }
    }
    Ok(elves)
}

/// Builds bare-metal crate `name` alone with its feature `feature` on as
/// well, in a target directory of its own; returns the ELF's path.
pub fn build_variant(root: &Path, name: &str, feature: &str) -> Result<PathBuf> {
    let dir = root.join(VARIANT_DIR);
    let crates = [BareMetalCrate { name: name.to_owned(), dir: PathBuf::new() }];
    let mut command = cargo(root, "build", &crates, true);
    command.args(["--features", &format!("{name}/{feature}")]).arg("--target-dir").arg(&dir);
    let status = command.status().context("running cargo build")?;
    if !status.success() {
        bail!("building {name} with feature {feature} failed");
    }
    Ok(dir.join(TARGET).join("release").join(name))
}

/// Runs clippy over every bare-metal crate as it is built, warnings denied.
pub fn clippy(root: &Path) -> Result<bool> {
    let crates = workspace::bare_metal_crates(root)?;
    let mut command = cargo(root, "clippy", &crates, false);
    command.args(["--", "-D", "warnings"]);
    Ok(command.status().context("running cargo clippy")?.success())
}
