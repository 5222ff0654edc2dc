//! Where things are: the workspace root, build outputs, and which crates
//! are bare-metal (a `bare-metal` feature and a binary that requires it).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Target triple of every bare-metal artefact (the host's; see DESIGN.md).
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// The workspace root (the parent of `build/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).to_path_buf()
}

/// Directory of the release bare-metal ELFs.
pub fn elf_dir(root: &Path) -> PathBuf {
    root.join("target").join(TARGET).join("release")
}

/// Directory boot images are written to.
pub fn image_dir(root: &Path) -> PathBuf {
    root.join("target").join("images")
}

/// A bare-metal package: it builds one ELF of the same name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BareMetalCrate {
    /// Package (and binary) name.
    pub name: String,
    /// Directory of its manifest.
    pub dir: PathBuf,
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    features: std::collections::BTreeMap<String, Vec<String>>,
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    kind: Vec<String>,
    #[serde(default, rename = "required-features")]
    required_features: Vec<String>,
}

/// Every bare-metal crate of the workspace, the kernel included.
pub fn bare_metal_crates(root: &Path) -> Result<Vec<BareMetalCrate>> {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let metadata: Metadata = serde_json::from_slice(&output.stdout).context("reading cargo metadata")?;
    let mut crates: Vec<BareMetalCrate> = metadata
        .packages
        .into_iter()
        .filter(|package| package.features.contains_key("bare-metal"))
        .filter(|package| {
            package.targets.iter().any(|target| {
                target.name == package.name
                    && target.kind.iter().any(|kind| kind == "bin")
                    && target.required_features.iter().any(|feature| feature == "bare-metal")
            })
        })
        .map(|package| BareMetalCrate {
            dir: package.manifest_path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            name: package.name,
        })
        .collect();
    crates.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(crates)
}
