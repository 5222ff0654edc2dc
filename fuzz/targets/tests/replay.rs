//! Replays every committed corpus and regression input through its target,
//! so `cargo test` (and `cargo xtask test`) keep old findings fixed.
//!
//! Each target has a test `corpus::NAME`; each target with findings has a
//! test `regressions::NAME` over its inputs in `fuzz/regressions/NAME/`
//! (a finding not fixed yet keeps its test `#[ignore]`d with the reason).
//! Every test requires inputs to replay: a missing or empty folder fails,
//! and a regressions folder without its test fails too.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use fuzz_targets::{TARGETS, target};

/// The `fuzz/` folder.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("fuzz/targets has a parent").to_path_buf()
}

/// The input files of `target` under `fuzz/<kind>/`, sorted by name.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && !path.file_name().is_some_and(|name| name.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    files
}

/// Runs every input of `name` under `fuzz/<kind>/`; fails if there is
/// none, and names each input that panicked.
fn replay(kind: &str, name: &str) {
    let target = target(name).unwrap_or_else(|| panic!("no fuzz target named {name}"));
    let mut failed = Vec::new();
    let files = inputs(kind, name);
    assert!(!files.is_empty(), "fuzz/{kind}/{name} holds no input: this test would test nothing");
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_else(|error| panic!("cannot read {}: {error}", file.display()));
        if catch_unwind(AssertUnwindSafe(|| (target.run)(&bytes))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{} of {} inputs of {name} failed:\n{}", failed.len(), files.len(), failed.join("\n"));
}

macro_rules! replay_tests {
    (corpus: $($test:ident => $name:literal),* $(,)?; regressions: $($found:ident => $found_name:literal),* $(,)?) => {
        /// The targets the corpus tests cover, to compare with `TARGETS`.
        const COVERED: &[&str] = &[$($name),*];
        /// The targets with findings, to compare with `fuzz/regressions/`.
        const FOUND: &[&str] = &[$($found_name),*];

        mod corpus {
            $(
                #[test]
                fn $test() {
                    super::replay("corpus", $name);
                }
            )*
        }

        mod regressions {
            $(
                #[test]
                fn $found() {
                    super::replay("regressions", $found_name);
                }
            )*
        }
    };
}

replay_tests! {
    corpus:
    acpi_aml => "acpi-aml",
    acpi_dmar => "acpi-dmar",
    acpi_mcfg => "acpi-mcfg",
    acpi_root => "acpi-root",
    acpi_snapshot => "acpi-snapshot",
    boot_image => "boot-image",
    kernel_syscalls => "kernel-syscalls",
    policy => "policy",
    echo_request => "echo-request",
    server_requests => "server-requests",
    iommu_decode => "iommu-decode",
    iommu_pagetable => "iommu-pagetable",
    iommu_service => "iommu-service",
    pci_caps => "pci-caps",
    pci_driver_core => "pci-driver-core";
    regressions:
    acpi_root => "acpi-root",
    iommu_pagetable => "iommu-pagetable",
    iommu_service => "iommu-service",
}

#[test]
fn every_regressions_folder_has_its_test() {
    let mut folders: Vec<String> = std::fs::read_dir(fuzz_dir().join("regressions"))
        .expect("fuzz/regressions")
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let mut found: Vec<&str> = FOUND.to_vec();
    found.sort();
    assert_eq!(folders, found, "replay_tests!'s regressions must list every folder of fuzz/regressions");
}

#[test]
fn every_target_has_replay_tests_a_runner_binary_and_seeds() {
    let names: Vec<&str> = TARGETS.iter().map(|target| target.name).collect();
    assert_eq!(names, COVERED, "replay_tests! must list every target of TARGETS, in order");
    let bins = fuzz_dir().join("runner/src/bin");
    let mut runners: Vec<String> = std::fs::read_dir(&bins)
        .expect("fuzz/runner/src/bin")
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().strip_suffix(".rs").map(str::to_owned))
        .collect();
    runners.sort();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(runners, sorted, "fuzz/runner/src/bin must hold one binary per target");
    for name in names {
        assert!(!inputs("corpus", name).is_empty(), "fuzz/corpus/{name} has no seed");
    }
}
