//! A user task's side of group ownership: claim a device's group, learn who owns one, release it.

use capabilities::ErrorCode;
use capabilities::pci::Bdf;
use userlib::cap::{Cap, Endpoint, Notification, own};
use userlib::ipc::Buffer;

use super as iommu;
use crate::{OwnerReport, Reply, Request};
use capabilities::protocol::Refused;

/// Claims `device`'s whole group through the IOMMU server's policy
/// capability `iommu`, presenting this task's own task capability (so its
/// death releases the group); the group capability lands in `slot`.
/// Returns the group.
pub fn claim(iommu: Cap<Endpoint>, buffer: &mut Buffer, device: Bdf, slot: u32) -> Result<u16, Refused> {
    match iommu::call(iommu, buffer, &Request::ClaimGroup { device }, &[own::TASK.slot()], slot)? {
        (Reply::Group { group }, Some(_)) => Ok(group),
        _ => Err(iommu::unexpected()),
    }
}

/// Gives the group back and deletes the capability `group` (already
/// revoked by the server, if the release succeeded).
pub fn release(group: Cap<Endpoint>, buffer: &mut Buffer) -> Result<(), Refused> {
    let released = iommu::request(group, buffer, &Request::Release, &[]);
    let _ = group.delete();
    released.map(|_| ())
}

/// Who owns `device`'s group.
pub fn owner(iommu: Cap<Endpoint>, buffer: &mut Buffer, device: Bdf) -> Result<OwnerReport, Refused> {
    match iommu::request(iommu, buffer, &Request::Owner { device }, &[])? {
        Reply::Owner { owner, .. } => Ok(owner),
        _ => Err(iommu::unexpected()),
    }
}

/// Waits until `device`'s group is unowned: a released group is quiesced
/// by the PCI server first. Sleeps on `sleep` (a notification nothing
/// signals) between looks; gives up with `TimedOut` after `timeout_us`.
pub fn wait_unowned(
    iommu: Cap<Endpoint>,
    buffer: &mut Buffer,
    device: Bdf,
    sleep: Cap<Notification>,
    timeout_us: u64,
) -> Result<(), Refused> {
    const POLL_US: u64 = 10_000;
    for _ in 0..=timeout_us / POLL_US {
        if owner(iommu, buffer, device)? == OwnerReport::Unowned {
            return Ok(());
        }
        let _ = sleep.wait(0, POLL_US);
    }
    Err(ErrorCode::TimedOut.into())
}
