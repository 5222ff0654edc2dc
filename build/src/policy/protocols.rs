//! The server protocols a policy may name, each from its server's API crate.

use capabilities::protocol::Protocol;

/// Every protocol a policy may name.
pub const ALL: &[Protocol] = &[echo_api::PROTOCOL, edu_api::PROTOCOL, iommu_api::PROTOCOL, pci_api::PROTOCOL];

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
