//! The server protocols a policy may name, each from its server's API crate.

use capabilities::protocol::Protocol;

/// Every protocol a policy may name.
pub const ALL: &[Protocol] = &[
    block_api::PROTOCOL,
    echo_api::PROTOCOL,
    edu_api::PROTOCOL,
    forger_api::PROTOCOL,
    iommu_api::PROTOCOL,
    pci_api::PROTOCOL,
];

/// The protocol whose server alone may be granted operation `number` of
/// `protocol`, if one is (the IOMMU driver core's operations are the PCI
/// server's).
pub fn reserved_for(protocol: &Protocol, number: u8) -> Option<&'static Protocol> {
    let driver_core = iommu_api::DRIVER_CORE.iter().any(|operation| *operation as u8 == number);
    (protocol.name == iommu_api::PROTOCOL.name && driver_core).then_some(&pci_api::PROTOCOL)
}

/// The protocol called `name`.
pub fn find(name: &str) -> Option<&'static Protocol> {
    ALL.iter().find(|protocol| protocol.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_and_operations_are_unique_and_fit_a_badge() {
        for (index, protocol) in ALL.iter().enumerate() {
            assert!(ALL[..index].iter().all(|other| other.name != protocol.name));
            assert!(protocol.operations.len() <= capabilities::badge::MAX_OPERATIONS);
            for (number, name) in protocol.operations.iter().enumerate() {
                assert_eq!(protocol.operation(name), Some(number as u8), "{name} listed twice");
            }
        }
    }
}
