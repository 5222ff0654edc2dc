//! The servers' IPC messages and boot configurations, decoded with postcard.
//!
//! The IOMMU and PCI servers decode every request with these types before
//! dispatch, and read their configuration from the boot-information page:
//! what decodes must encode back to bytes that decode to the same value
//! (postcard accepts non-canonical varints, so bytes need not match), and
//! the badge decoders must agree with their encoders.

use core::fmt::Debug;

use capabilities::badge;
use capabilities::config::{IommuConfig, PciConfig};
use iommu_api as iommu;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Decodes `data` as a `T`; what decodes must survive a round trip.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    if let Ok(value) = postcard::from_bytes::<T>(data) {
        let bytes = postcard::to_stdvec(&value).expect("a decoded message encodes");
        assert_eq!(postcard::from_bytes::<T>(&bytes).ok(), Some(value));
    }
}

/// `server-requests`: the first byte picks the message type, the rest is
/// the message; the first eight bytes also go through the badge decoders.
pub fn requests(data: &[u8]) {
    let Some((&kind, message)) = data.split_first() else { return };
    match kind % 6 {
        0 => round_trip::<iommu::Request>(message),
        1 => round_trip::<iommu::Reply>(message),
        2 => round_trip::<pci_api::Request>(message),
        3 => round_trip::<pci_api::Reply>(message),
        4 => round_trip::<IommuConfig>(message),
        _ => round_trip::<PciConfig>(message),
    }
    let mut word = [0u8; 8];
    for (slot, byte) in word.iter_mut().zip(message) {
        *slot = *byte;
    }
    let raw = u64::from_le_bytes(word);
    if let Some(handle) = iommu::Handle::from_badge(raw) {
        assert_eq!(iommu::Handle::from_badge(handle.badge()), Some(handle), "handles round-trip through badges");
    }
    if let Some(client) = badge::client(raw) {
        // A policy badge is its client and its operation bits, nothing else.
        let rebuilt = badge::policy(client, raw >> 16);
        assert_eq!(badge::client(rebuilt), Some(client));
        for operation in 0..64u8 {
            assert_eq!(badge::allows(raw, operation), badge::allows(rebuilt, operation), "operation {operation}");
        }
    }
}
