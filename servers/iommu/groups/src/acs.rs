//! Whether ACS isolates a function: Linux's `pci_acs_enabled` and `pci_acs_path_enabled`.

use capabilities::pci::{AcsFlags, PciFunction, PcieDeviceType};
use serde::{Deserialize, Serialize};

use crate::index::TopologyIndex;

/// Why a function does not provide the ACS isolation asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AcsShortfall {
    /// A conventional PCI function: every device on a shared bus can see
    /// the others' transactions, so there is no isolation to have.
    Conventional,
    /// A bridge type to which ACS never applies (PCIe-to-PCI and
    /// PCI-to-PCIe bridges, root complex event collectors).
    NeverApplies(PcieDeviceType),
    /// The function needs an ACS capability and has none.
    NoCapability,
    /// The ACS capability has these required controls off.
    NotEnabled(AcsFlags),
    /// A device quirk says these required controls are not in effect.
    Quirk(AcsFlags),
}

/// Linux's standard test of the ACS registers: every required control the
/// capability implements is enabled (a control the port does not implement
/// counts as hard-wired on, except egress control).
fn flags_enabled(function: &PciFunction, required: AcsFlags) -> Result<(), AcsShortfall> {
    let acs = function.acs.ok_or(AcsShortfall::NoCapability)?;
    let applicable = required.intersection(acs.capability.union(AcsFlags::EGRESS_CONTROL));
    let missing = applicable.difference(acs.control);
    if missing.is_empty() { Ok(()) } else { Err(AcsShortfall::NotEnabled(missing)) }
}

/// Whether `function` provides the `required` ACS controls, by Linux 6.1's
/// rules: a device quirk decides if there is one; conventional functions
/// and PCI/PCIe bridges never do; root and switch downstream ports need
/// the controls; other PCI Express functions need them only when they are
/// part of a multifunction device, because a single function has no peer
/// inside the device.
pub fn acs_enabled(function: &PciFunction, required: AcsFlags) -> Result<(), AcsShortfall> {
    if let Some(quirk) = function.acs_quirk {
        let missing = required.difference(quirk);
        return if missing.is_empty() { Ok(()) } else { Err(AcsShortfall::Quirk(missing)) };
    }
    let pcie = function.pcie.ok_or(AcsShortfall::Conventional)?;
    match pcie.device_type {
        kind @ (PcieDeviceType::PciToPcieBridge
        | PcieDeviceType::PcieToPciBridge
        | PcieDeviceType::RootComplexEventCollector) => Err(AcsShortfall::NeverApplies(kind)),
        PcieDeviceType::SwitchDownstream | PcieDeviceType::RootPort => flags_enabled(function, required),
        PcieDeviceType::Endpoint
        | PcieDeviceType::SwitchUpstream
        | PcieDeviceType::LegacyEndpoint
        | PcieDeviceType::RootComplexEndpoint
            if function.is_multifunction() =>
        {
            flags_enabled(function, required)
        }
        _ => Ok(()),
    }
}

/// Whether every function from `start` up to the root bus provides the
/// `required` controls; on failure, the first one that does not and why.
pub fn acs_path_enabled(
    index: &TopologyIndex<'_>,
    start: usize,
    required: AcsFlags,
) -> Result<(), (usize, AcsShortfall)> {
    for i in core::iter::once(start).chain(index.ancestors(start)) {
        if let Some(function) = index.get(i) {
            acs_enabled(function, required).map_err(|shortfall| (i, shortfall))?;
        }
    }
    Ok(())
}
