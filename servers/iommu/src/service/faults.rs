//! A group's fault log as its owner reads it.

use capabilities::ErrorCode;
use capabilities::pci::Bdf;
use heapless::Vec;
use iommu_api::{FAULTS_PER_REPLY, Fault, Reply};

use super::text::refused;
use super::{Platform, Service};
use crate::fault::FaultAccess;

/// The oldest of `group`'s recorded faults, as many as a reply holds.
pub(super) fn take<P: Platform>(s: &mut Service<P>, group: u16) -> Reply {
    let Some(log) = s.ready.as_mut().and_then(|ready| ready.faults.get_mut(usize::from(group))) else {
        return refused(ErrorCode::InvalidCapability, "no such group");
    };
    let mut records = Vec::new();
    while records.len() < FAULTS_PER_REPLY {
        let Some(record) = log.pop() else { break };
        let _ = records.push(Fault {
            source: Bdf::from_requester_id(record.source.source_id()),
            address: record.address,
            write: record.access == FaultAccess::Write,
            reason: record.reason.0,
        });
    }
    Reply::Faults { records, remaining: log.len() as u32, dropped: log.take_dropped() }
}
