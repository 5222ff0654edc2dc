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

#[cfg(test)]
mod tests {
    use capabilities::pci::{AcsInfo, Bdf, ClassCode, HeaderKind};

    use super::*;

    fn function(device_type: Option<PcieDeviceType>, function: u8, multifunction: bool) -> PciFunction {
        PciFunction {
            vendor_id: 0x1b36,
            device_id: 0x0010,
            class: ClassCode { base: 1, sub: 8, interface: 2 },
            multifunction,
            ..capabilities::testing::function(Bdf::new(0, 5, function).unwrap(), HeaderKind::Normal, device_type)
        }
    }

    const REQUIRED: AcsFlags = AcsFlags::ISOLATION;

    #[test]
    fn which_types_need_acs() {
        use PcieDeviceType::*;
        assert_eq!(acs_enabled(&function(None, 0, false), REQUIRED), Err(AcsShortfall::Conventional));
        for kind in [PcieToPciBridge, PciToPcieBridge, RootComplexEventCollector] {
            assert_eq!(acs_enabled(&function(Some(kind), 0, false), REQUIRED), Err(AcsShortfall::NeverApplies(kind)));
        }
        for kind in [RootPort, SwitchDownstream] {
            assert_eq!(acs_enabled(&function(Some(kind), 0, false), REQUIRED), Err(AcsShortfall::NoCapability));
        }
        for kind in [Endpoint, LegacyEndpoint, RootComplexEndpoint, SwitchUpstream] {
            assert_eq!(acs_enabled(&function(Some(kind), 0, false), REQUIRED), Ok(()), "{kind:?} alone");
            assert_eq!(acs_enabled(&function(Some(kind), 0, true), REQUIRED), Err(AcsShortfall::NoCapability));
            assert_eq!(acs_enabled(&function(Some(kind), 3, false), REQUIRED), Err(AcsShortfall::NoCapability));
        }
        assert_eq!(acs_enabled(&function(Some(Reserved(12)), 0, true), REQUIRED), Ok(()));
    }

    #[test]
    fn controls_the_port_lacks_count_as_on_except_egress_control() {
        let mut port = function(Some(PcieDeviceType::RootPort), 0, false);
        let with = |capability, control| AcsInfo {
            offset: 0x100,
            capability: AcsFlags(capability),
            control: AcsFlags(control),
        };
        port.acs = Some(with(0x5f, 0x1d));
        assert_eq!(acs_enabled(&port, REQUIRED), Ok(()));
        port.acs = Some(with(0x5f, 0x19));
        assert_eq!(acs_enabled(&port, REQUIRED), Err(AcsShortfall::NotEnabled(AcsFlags::REQUEST_REDIRECT)));
        port.acs = Some(with(0x19, 0x19));
        assert_eq!(acs_enabled(&port, REQUIRED), Ok(()));
        port.acs = Some(with(0x00, 0x00));
        assert_eq!(
            acs_enabled(&port, AcsFlags::EGRESS_CONTROL),
            Err(AcsShortfall::NotEnabled(AcsFlags::EGRESS_CONTROL))
        );
    }

    #[test]
    fn a_quirk_overrides_the_registers() {
        let mut endpoint = function(Some(PcieDeviceType::RootComplexEndpoint), 0, true);
        endpoint.acs_quirk = Some(AcsFlags::ISOLATION);
        assert_eq!(acs_enabled(&endpoint, REQUIRED), Ok(()));
        endpoint.acs_quirk = Some(AcsFlags::NONE);
        assert_eq!(acs_enabled(&endpoint, REQUIRED), Err(AcsShortfall::Quirk(REQUIRED)));
    }
}
