//! Typed calls to the PCI server: probe, acquire, release, config space, MSI-X vectors.
//!
//! A driver presents its own task capability with each probe, so the PCI
//! server notices its death and takes its devices back; the capabilities a
//! grant carries arrive in a window of four slots the driver chooses.
#![expect(clippy::result_large_err, reason = "a refusal carries the server's reason inline; there is no heap")]
use capabilities::ErrorCode;
use capabilities::abi::ipc::MAX_CAPS;
use capabilities::pci::Bdf;
use capabilities::protocol::Refused;
use heapless::Vec;
use userlib::cap::{Cap, Endpoint, own};
use userlib::ipc::Buffer;

use crate::{DeviceGrant, MSIX_PAGE, NO_GROUP, Reply, Request};

/// A device the PCI server granted, with the slots its capabilities arrived
/// in: the BARs in grant order, then the interrupt, then the DMA handle.
pub struct Granted {
    /// What was granted.
    pub grant: DeviceGrant,
    /// Where the capabilities are.
    pub caps: Vec<u32, MAX_CAPS>,
}

impl Granted {
    /// The slot of the `n`th granted BAR's device memory.
    pub fn bar(&self, n: usize) -> Option<u32> {
        (n < self.grant.bars.len()).then(|| self.caps.get(n).copied()).flatten()
    }

    /// The slot of BAR `number`'s device memory (BAR5 for an AHCI ABAR),
    /// if it was granted.
    pub fn bar_number(&self, number: u8) -> Option<u32> {
        self.grant.bars.iter().position(|bar| bar.index == number).and_then(|n| self.bar(n))
    }

    /// The slot of the device's interrupt (its MSI vector), if it has one.
    pub fn interrupt(&self) -> Option<u32> {
        self.grant.vector.and_then(|_| self.caps.get(self.grant.bars.len()).copied())
    }

    /// The slot of the DMA handle a DMA-capable driver's grant carries.
    pub fn dma_handle(&self) -> Option<u32> {
        let at = self.grant.bars.len() + usize::from(self.grant.vector.is_some());
        self.grant.dma.then(|| self.caps.get(at).copied()).flatten()
    }

    /// The device's IOMMU group, if known.
    pub fn group(&self) -> Option<u16> {
        (self.grant.group != NO_GROUP).then_some(self.grant.group)
    }
}

/// Calls the PCI server with `request`; the decoded reply.
fn call(pci: Cap<Endpoint>, buffer: &mut Buffer, request: &Request) -> Result<Reply, Refused> {
    let received = pci.call_with(buffer, request)?;
    match buffer.decode::<Reply>(received.len)? {
        Reply::Refused { code, reason } => Err(Refused { code, reason }),
        reply => Ok(reply),
    }
}

/// Probes the `index`th device bound to this task; its capabilities land
/// in the four slots from `window`.
pub fn probe(pci: Cap<Endpoint>, buffer: &mut Buffer, index: u8, window: u32) -> Result<Granted, Refused> {
    take(pci, buffer, &Request::Probe { index }, window)
}

/// Slots each grant's capabilities take (a probe's window).
pub const GRANT_SLOTS: u32 = MAX_CAPS as u32;

/// Probes every device bound to this task, at most `max`: the `i`th grant
/// arrives in the slots from `windows + GRANT_SLOTS * i` and goes to
/// `each`. A refusal other than the end of the list is logged and skipped.
pub fn probe_all(
    pci: Cap<Endpoint>,
    buffer: &mut Buffer,
    max: u8,
    windows: u32,
    mut each: impl FnMut(&mut Buffer, Granted),
) {
    for index in 0..max {
        match probe(pci, buffer, index, windows + GRANT_SLOTS * u32::from(index)) {
            Ok(granted) => each(buffer, granted),
            Err(refused) if refused.code == ErrorCode::NotFound && index > 0 => break,
            Err(refused) => {
                defmt::warn!("probe {=u8} refused ({}): {=str}", index, refused.code, refused.reason.as_str())
            }
        }
    }
}

/// Most devices [`hold_all`] keeps: four slots each from [`HELD_WINDOWS`],
/// below [`IDLE_SLOT`].
pub const HELD_MAX: u8 = 15;
/// First slot of the windows [`hold_all`]'s grants arrive in.
pub const HELD_WINDOWS: u32 = 64;
/// Slot of the notification [`hold_all`] idles on.
pub const IDLE_SLOT: u32 = 127;

/// The whole of a driver that only holds its devices (the stub, the
/// bridge driver): probes every device bound to it, shows each to
/// `each`, and keeps them until the task dies. Returns only on failure,
/// with the exit code.
pub fn hold_all(pci: Cap<Endpoint>, each: impl FnMut(&mut Buffer, Granted)) -> u64 {
    let Some(mut buffer) = Buffer::take() else { return 1 };
    probe_all(pci, &mut buffer, HELD_MAX, HELD_WINDOWS, each);
    userlib::objects::hold_forever(IDLE_SLOT)
}

/// Acquires `device`, whose group this (user) task owns; its capabilities
/// land in the four slots from `window`.
pub fn acquire(pci: Cap<Endpoint>, buffer: &mut Buffer, device: Bdf, window: u32) -> Result<Granted, Refused> {
    take(pci, buffer, &Request::Acquire { device }, window)
}

/// Gives `device` back; the server revokes its capabilities.
pub fn release(pci: Cap<Endpoint>, buffer: &mut Buffer, device: Bdf) -> Result<(), Refused> {
    call(pci, buffer, &Request::Release { device }).map(|_| ())
}

/// A request that grants a device, sent with this task's own task
/// capability (so the server notices its death).
fn take(pci: Cap<Endpoint>, buffer: &mut Buffer, request: &Request, window: u32) -> Result<Granted, Refused> {
    buffer.set_send_caps(&[own::TASK.slot()]);
    buffer.set_window(window, GRANT_SLOTS);
    let reply = call(pci, buffer, request);
    let caps = buffer.received_caps();
    buffer.set_send_caps(&[]);
    buffer.set_window(0, 0);
    match reply? {
        Reply::Granted(grant) => Ok(Granted { grant, caps }),
        _ => Err(ErrorCode::Malformed.into()),
    }
}

/// Reads `width` bytes of `device`'s configuration space at `offset`.
pub fn config_read(
    pci: Cap<Endpoint>,
    buffer: &mut Buffer,
    device: Bdf,
    offset: u16,
    width: u8,
) -> Result<u32, Refused> {
    match call(pci, buffer, &Request::ConfigRead { device, offset, width })? {
        Reply::Value(value) => Ok(value),
        _ => Err(ErrorCode::Malformed.into()),
    }
}

/// The command register and its bus-master bit.
const COMMAND: u16 = 0x04;
const COMMAND_BUS_MASTER: u32 = 1 << 2;

/// Turns bus mastering on for `device`, which this task holds: a grant
/// leaves it off, so that a DMA-capable holder sets its device up before
/// the device may DMA (or deliver an MSI, a memory write too). The server
/// refuses it to a driver bound without DMA. Needs `config-read` and
/// `config-write`.
pub fn enable_bus_mastering(pci: Cap<Endpoint>, buffer: &mut Buffer, device: Bdf) -> Result<(), Refused> {
    let command = config_read(pci, buffer, device, COMMAND, 2)?;
    let value = command | COMMAND_BUS_MASTER;
    match call(pci, buffer, &Request::ConfigWrite { device, offset: COMMAND, width: 2, value })? {
        Reply::Done => Ok(()),
        _ => Err(ErrorCode::Malformed.into()),
    }
}

/// Takes MSI-X table entries `first` to `first + count - 1` of `device`
/// (at most [`MSIX_PAGE`]); their interrupt capabilities land in the
/// slots from `window`, in order. The CPU vector of each.
pub fn msix_vectors(
    pci: Cap<Endpoint>,
    buffer: &mut Buffer,
    device: Bdf,
    first: u16,
    count: u8,
    window: u32,
) -> Result<Vec<u8, MSIX_PAGE>, Refused> {
    buffer.set_window(window, u32::from(count));
    let reply = call(pci, buffer, &Request::MsixVectors { device, first, count });
    buffer.set_window(0, 0);
    match reply? {
        Reply::Vectors(vectors) => Ok(vectors),
        _ => Err(ErrorCode::Malformed.into()),
    }
}

/// Masks (`masked`) or unmasks MSI-X table entry `entry` of `device`.
pub fn msix_mask(
    pci: Cap<Endpoint>,
    buffer: &mut Buffer,
    device: Bdf,
    entry: u16,
    masked: bool,
) -> Result<(), Refused> {
    match call(pci, buffer, &Request::MsixMask { device, entry, masked })? {
        Reply::Done => Ok(()),
        _ => Err(ErrorCode::Malformed.into()),
    }
}
