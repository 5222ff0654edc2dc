//! Fuzz target bodies: one plain function over bytes per target.
//!
//! libFuzzer runs them through the binaries in `fuzz/runner` (built by
//! `cargo xtask fuzz` with coverage instrumentation); `tests/replay.rs`
//! runs every corpus and regression input through them in the ordinary
//! `cargo test`. A body panics exactly when it finds a bug: a panic in the
//! code under test, or a broken invariant it checks afterwards.

pub mod acpi;
pub mod boot_image;
pub mod driver_core;
pub mod echo;
pub mod image;
pub mod input;
pub mod iommu;
pub mod pci;
pub mod policy;
pub mod protocols;
pub mod service;
pub mod sim;
pub mod syscalls;

/// One fuzz target: its name (of its runner binary and its corpus folder)
/// and its body.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// Name of the binary in `fuzz/runner` and of the folders under
    /// `fuzz/corpus/` and `fuzz/regressions/`.
    pub name: &'static str,
    /// The body: panics on a finding.
    pub run: fn(&[u8]),
}

/// Every target, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target { name: "acpi-aml", run: acpi::aml },
    Target { name: "acpi-dmar", run: acpi::dmar },
    Target { name: "acpi-mcfg", run: acpi::mcfg },
    Target { name: "acpi-root", run: acpi::root },
    Target { name: "acpi-snapshot", run: acpi::snapshot },
    Target { name: "boot-image", run: boot_image::boot_image },
    Target { name: "kernel-syscalls", run: syscalls::syscalls },
    Target { name: "policy", run: policy::policy },
    Target { name: "echo-request", run: echo::echo },
    Target { name: "server-requests", run: protocols::requests },
    Target { name: "iommu-decode", run: iommu::decode },
    Target { name: "iommu-pagetable", run: iommu::pagetable },
    Target { name: "iommu-service", run: service::service },
    Target { name: "pci-caps", run: pci::pci },
    Target { name: "pci-driver-core", run: driver_core::driver_core },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|target| target.name == name)
}
