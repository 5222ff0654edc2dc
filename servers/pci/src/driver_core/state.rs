//! The driver core's state and its dispatch: one request in, one answer out.

use capabilities::abi::ipc::MAX_CAPS;
use capabilities::config::{DriverTask, TaskNames};
use capabilities::manifest::MAX_TASKS;
use capabilities::pci::{Bdf, MAX_FUNCTIONS};
use capabilities::{ErrorCode, badge};
use heapless::Vec;
use pci_api::{PROTOCOL, Reply, Request};

use super::device::Device;
use super::env::{Hardware, IommuLink, Kernel, Slot};
use super::refusal::{Refusal, refuse};
use crate::config::ConfigSpace;

/// Most devices handed out at once (each holds up to two of the server's
/// 64 dynamic slots: its MSI vector and its DMA handle).
pub const MAX_HOLDERS: usize = 16;

/// Notification bit the IOMMU server signals when groups need their
/// devices quiesced (its capability to the notification has badge 1).
pub const IOMMU_EVENT: u64 = 1 << 0;

/// The notification bit a holder's death sets: bit `task + 1` (tasks are
/// at most 32, so every task has one).
pub const fn death_bit(task: u16) -> Option<u64> {
    if task < 63 { Some(1 << (task + 1)) } else { None }
}

/// What to answer a request with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The reply.
    pub reply: Reply,
    /// Capabilities to send with it, in the order the reply documents.
    pub caps: Vec<Slot, MAX_CAPS>,
}

impl From<Refusal> for Answer {
    fn from(refusal: Refusal) -> Self {
        Self { reply: refusal.into_reply(), caps: Vec::new() }
    }
}

impl From<Reply> for Answer {
    fn from(reply: Reply) -> Self {
        Self { reply, caps: Vec::new() }
    }
}

/// The driver core: every device, its binding and its holder.
pub struct DriverCore {
    /// Task names, for logs and reasons.
    pub(super) names: TaskNames,
    /// The driver tasks, and which of them do DMA.
    pub(super) drivers: Vec<DriverTask, MAX_TASKS>,
    /// The devices in enumeration order.
    pub(super) devices: Vec<Device, MAX_FUNCTIONS>,
    /// Devices held right now.
    pub(super) holders: usize,
    /// The policy lets users acquire functions without a reset.
    pub(super) assignment_without_reset: bool,
    /// Why the IOMMU server did not take the topology, if it did not:
    /// then every requester stays blocked there, and no device is handed
    /// out here.
    pub(super) withheld: Option<heapless::String<200>>,
}

impl DriverCore {
    /// The devices, in enumeration order.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// The name of task `index`.
    pub(super) fn name(&self, index: u16) -> &str {
        self.names.name(index)
    }

    /// The position of `bdf` among the devices.
    pub(super) fn find(&self, bdf: Bdf) -> Result<usize, Refusal> {
        self.devices
            .iter()
            .position(|device| device.function.bdf == bdf)
            .ok_or_else(|| refuse!(ErrorCode::NotFound, "no function {bdf} was found at boot"))
    }

    /// Answers the request in `bytes`, sent with a capability whose badge is
    /// `badge`; `presented` is the capability that came with it, if any
    /// (the caller deletes it afterwards).
    pub fn handle<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &mut self,
        hw: &mut Hardware<'_, C, K, I>,
        badge: u64,
        bytes: &[u8],
        presented: Option<Slot>,
    ) -> Answer {
        let Ok(request) = postcard::from_bytes::<Request>(bytes) else {
            return refuse!(ErrorCode::Malformed, "the message is not a PCI server request").into();
        };
        let Some(caller) = badge::client(badge) else {
            return refuse!(ErrorCode::PermissionDenied, "requests need a capability the policy gave a task").into();
        };
        let operation = request.operation();
        if !badge::allows(badge, operation as u8) {
            let name = PROTOCOL.name_of(operation as u8);
            return refuse!(ErrorCode::PermissionDenied, "{} may not invoke `{name}`", self.name(caller)).into();
        }
        let answer = match request {
            Request::Probe { index } => self.probe(hw, caller, index, presented),
            Request::Acquire { device } => self.acquire(hw, caller, device, presented),
            Request::Release { device } => self.release(hw, caller, device).map(Answer::from),
            Request::ConfigRead { device, offset, width } => {
                self.config_read(hw, caller, device, offset, width).map(Answer::from)
            }
            Request::ConfigWrite { device, offset, width, value } => {
                self.config_write(hw, caller, device, offset, width, value).map(Answer::from)
            }
            Request::Bind { device, driver } => self.bind(hw, caller, device, driver).map(Answer::from),
            Request::Unbind { device } => self.unbind(hw, caller, device).map(Answer::from),
            Request::Devices { index } => self.device_at(index).map(Answer::from),
            Request::MsixVectors { device, first, count } => self.msix_vectors(hw, caller, device, first, count),
            Request::MsixMask { device, entry, masked } => {
                self.msix_mask(hw, caller, device, entry, masked).map(Answer::from)
            }
        };
        answer.unwrap_or_else(Answer::from)
    }

    /// Handles the notification bits `bits`: the IOMMU server's reclaims
    /// and holders' deaths.
    pub fn event<C: ConfigSpace, K: Kernel, I: IommuLink>(&mut self, hw: &mut Hardware<'_, C, K, I>, bits: u64) {
        if bits & IOMMU_EVENT != 0 {
            self.reclaim(hw);
        }
        for task in 0..63 {
            if death_bit(task).is_some_and(|bit| bits & bit != 0) {
                self.holder_died(hw, task);
            }
        }
    }
}
