//! The IOMMU server's protocol: what the PCI server, trusted drivers and
//! user tasks may ask of it.
//!
//! Three kinds of capability reach the server, told apart by their badges:
//!
//! * policy capabilities (`capabilities::badge::policy`) carry the client's task
//!   and one bit per [`Operation`] it may invoke;
//! * a **DMA handle** (minted, [`Handle::Dma`]) lets a trusted driver map
//!   frames into its group's default domain;
//! * a **group capability** (minted, [`Handle::Group`]) lets the one user
//!   task that owns a group build address spaces, attach the group, map,
//!   unmap, read its faults and release it.
//!
//! A driver can hold only DMA handles and a user task only group
//! capabilities, and the server mints them only when the group's owner
//! allows it, so no request path can hold both for one group.
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "client")]
pub mod client;

mod handle;
mod operation;
mod reply;
mod request;

pub use handle::Handle;
pub use operation::{DRIVER_CORE, Operation, PROTOCOL};
pub use reply::{Fault, InterruptEntry, InterruptSource, OwnerReport, ReclaimPage, Reply};
pub use request::Request;

/// Functions per topology report (a report is one message).
pub const TOPOLOGY_CHUNK: usize = 16;

/// Fault records returned per `Faults` request.
pub const FAULTS_PER_REPLY: usize = 8;

/// Interrupt entries listed per `Interrupts` reply.
pub const INTERRUPT_ENTRIES_PER_REPLY: usize = 8;

/// Members of a reclaimed group listed per `PendingReclaims` reply.
pub const RECLAIM_PAGE: usize = 16;

/// Members of a group listed per `Groups` reply.
pub const GROUP_PAGE: usize = 32;

/// Usable ranges an `IoasRanges` reply carries.
pub const RANGES_PER_REPLY: usize = 16;

/// Longest explanation in a refusal.
pub use capabilities::protocol::REASON_MAX;

#[cfg(test)]
mod tests {
    use super::*;
    use capabilities::pci::{Bdf, PciFunction};
    use heapless::String;

    #[test]
    fn minted_badges_round_trip_and_never_look_like_policy_badges() {
        for handle in [Handle::Dma { group: 3, serial: 77 }, Handle::Group { group: 65535, serial: u32::MAX }] {
            assert_eq!(Handle::from_badge(handle.badge()), Some(handle));
            assert_eq!(capabilities::badge::client(handle.badge()), None);
        }
        assert_eq!(Handle::from_badge(capabilities::badge::policy(1, 0b11)), None);
    }

    /// A function with every optional part present: the largest encoding.
    fn largest_function() -> PciFunction {
        use capabilities::pci::*;
        let flags = AcsFlags(0xffff);
        let mut devfns = DevfnSet::new();
        for devfn in 0..=255 {
            devfns.insert(devfn);
        }
        let bar = BarLocation { bar: 5, offset: u32::MAX };
        PciFunction {
            bdf: Bdf::from_requester_id(0xffff),
            vendor_id: u16::MAX,
            device_id: u16::MAX,
            subsystem_vendor_id: u16::MAX,
            subsystem_id: u16::MAX,
            revision: u8::MAX,
            class: ClassCode { base: 0xff, sub: 0xff, interface: 0xff },
            header: HeaderKind::PciBridge,
            multifunction: true,
            bridge: Some(BridgeBuses { primary: 255, secondary: 255, subordinate: 255 }),
            pcie: Some(PcieInfo {
                offset: 0xff,
                version: 0xff,
                device_type: PcieDeviceType::from_field(0xf),
                reported_type: PcieDeviceType::from_field(0xf),
                slot_implemented: true,
            }),
            acs: Some(AcsInfo { offset: 0xfff, capability: flags, control: flags }),
            acs_quirk: Some(flags),
            dma_alias: DmaAliasQuirk { devfns, pcie_bridge_alias: true, translation_root: true },
            msi: Some(MsiInfo {
                offset: 0xff,
                address_64bit: true,
                per_vector_masking: true,
                vectors_log2: 5,
                enabled: true,
            }),
            msix: Some(MsixInfo {
                offset: 0xff,
                table_size: 2048,
                table: bar,
                pending: bar,
                enabled: true,
                function_masked: true,
            }),
            capability_fault: Some(CapabilityFault {
                list: CapabilityList::Extended,
                offset: 0xfff,
                kind: CapabilityFaultKind::Loop,
            }),
        }
    }

    #[test]
    fn the_largest_messages_fit_the_ipc_buffer() {
        let function = largest_function();
        let report =
            Request::ReportTopology { functions: core::iter::repeat_n(function, TOPOLOGY_CHUNK).collect(), last: true };
        let mut buffer = [0u8; capabilities::abi::ipc::MSG_MAX];
        assert!(postcard::to_slice(&report, &mut buffer).is_ok());
        let reasons: String<REASON_MAX> = core::iter::repeat_n('x', REASON_MAX).collect();
        let members = core::iter::repeat_n(Bdf::from_requester_id(0xffff), GROUP_PAGE).collect();
        let info = Reply::GroupInfo {
            group: u16::MAX,
            offset: u16::MAX,
            total: u16::MAX,
            members,
            reasons,
            owner: OwnerReport::User { task: u16::MAX },
        };
        assert!(postcard::to_slice(&info, &mut buffer).is_ok());
        let entry = InterruptEntry {
            entry: u16::MAX,
            holder: Some(u16::MAX),
            vector: u8::MAX,
            source: InterruptSource::Function { id: Bdf::from_requester_id(0xffff), qualifier: 3 },
        };
        let entries = core::iter::repeat_n(entry, INTERRUPT_ENTRIES_PER_REPLY).collect();
        let interrupts =
            Reply::Interrupts { remapping: true, in_use: u32::MAX, capacity: u32::MAX, refused: u64::MAX, entries };
        assert!(postcard::to_slice(&interrupts, &mut buffer).is_ok());
    }
}
