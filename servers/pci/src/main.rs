//! The PCI server: maps ECAM, enumerates, and serves the driver core over IPC.
//!
//! Startup: read the policy's part (`PciConfig`), check the granted ECAM
//! capability against the ACPI MCFG table, map the buses in use, enumerate
//! (turning ACS isolation on, as Linux does), and hand the topology to the
//! driver core, which creates the BAR capabilities and reports the
//! topology to the IOMMU server. Then one loop: requests from clients, and
//! notification bits (holders' deaths, the IOMMU server's reclaims). All
//! decisions are the library's; this file only moves bytes and slots.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

mod server;

use core::cell::RefCell;

use capabilities::ErrorCode;
use capabilities::config::PciConfig;
use heapless::Vec;
use pci_api::Reply;
use pci_server::driver_core::{Answer, DriverCore, Hardware, Refusal, Slot};
use pci_server::{Options, enumerate, reach};
use server::ecam::EcamSpace;
use server::iommu::IommuClient;
use server::kernel::Syscalls;
use userlib::cap::{Cap, Endpoint, SlotPool, own};
use userlib::ipc::{Buffer, Received};
use userlib::objects;

userlib::cap_slot!(REQUESTS: Endpoint = "requests");
userlib::cap_slot!(ECAM: DeviceMemory = "ecam");
userlib::cap_slot!(ACPI: Frame = "acpi");
userlib::cap_slot!(CONTROL: Control = "control");
userlib::cap_slot!(EVENTS: Notification = "iommu-events");
userlib::cap_slot!(IOMMU: Endpoint = "iommu");
userlib::entry!(main);

/// Longest request the server reads: every PCI request encodes in far
/// fewer bytes; anything longer is malformed.
const REQUEST_MAX: usize = 64;

fn main() -> u64 {
    let Some(mut buffer) = Buffer::take() else { return 1 };
    let config: PciConfig = match userlib::boot::config() {
        Ok(config) => config,
        Err(code) => {
            defmt::error!("no PCI configuration in the boot information: {}", code);
            return 1;
        }
    };
    let pool = RefCell::new(SlotPool::new());
    let Some(ecam) = server::acpi::ecam_window(ACPI.get(), ECAM.get()) else { return 1 };
    let Some(mut space) = map_ecam(ecam, &pool) else { return 1 };
    let options = Options { segment: ecam.segment(), extended_config: true, enable_acs: true };
    let topology = match enumerate(&mut space, &[ecam.buses().0], options) {
        Ok(topology) => topology,
        Err(error) => {
            defmt::error!("enumeration failed: {}", error);
            return 1;
        }
    };
    defmt::info!("{=usize} PCI functions found", topology.functions.len());
    let Some(timer) = pool.borrow_mut().take().and_then(|slot| objects::create_notification(slot).ok()) else {
        defmt::error!("no notification to time resets with (the policy must allow one object)");
        return 1;
    };
    if let Err(code) = EVENTS.get().bind() {
        defmt::error!("the iommu-events notification cannot be bound ({}): deaths and reclaims would go unseen", code);
        return 1;
    }
    let mut kernel = Syscalls { pool: &pool, control: CONTROL.get(), events: EVENTS.get(), timer };
    let Some(window) = pool.borrow_mut().take() else { return 1 };
    buffer.set_window(window, 1);
    let iommu = Iommu { endpoint: IOMMU.get(), window };
    let mut driver_core = {
        let mut link = iommu.client(&mut buffer, &pool);
        let mut hw = Hardware { config: &mut space, kernel: &mut kernel, iommu: iommu.connected(&mut link) };
        DriverCore::start(config, &topology, &mut hw)
    };
    defmt::info!("PCI server ready");
    let requests = REQUESTS.get();
    let mut next = requests.receive(&mut buffer, 0, 0);
    loop {
        let message = match next {
            Ok(message) => message,
            Err(code) => {
                defmt::warn!("receive failed: {}", code);
                next = requests.receive(&mut buffer, 0, 0);
                continue;
            }
        };
        if message.info.is_notification() {
            let mut link = iommu.client(&mut buffer, &pool);
            let mut hw = Hardware { config: &mut space, kernel: &mut kernel, iommu: iommu.connected(&mut link) };
            driver_core.event(&mut hw, message.badge);
            next = requests.receive(&mut buffer, 0, 0);
            continue;
        }
        let answer = serve(&mut driver_core, &mut space, &mut kernel, &iommu, &mut buffer, &pool, message);
        let len = buffer.encode(&answer.reply).unwrap_or_else(|_| {
            let fallback = Refusal::new(ErrorCode::TooLarge, format_args!("the reply did not fit a message"));
            buffer.encode(&fallback.into_reply()).unwrap_or(0)
        });
        let slots: Vec<u32, 4> = answer.caps.iter().map(|slot| slot.0).collect();
        buffer.set_send_caps(&slots);
        next = own::REPLY.reply_receive(&mut buffer, len, requests, 0, 0);
    }
}

/// The IOMMU server, if the policy connects one, and the receive window
/// its calls must restore.
struct Iommu {
    endpoint: Cap<Endpoint>,
    window: u32,
}

impl Iommu {
    /// A client borrowing the IPC buffer for one request.
    fn client<'a>(&self, buffer: &'a mut Buffer, pool: &'a RefCell<SlotPool>) -> IommuClient<'a> {
        IommuClient { endpoint: self.endpoint, buffer, pool, window: self.window }
    }

    /// `link`, if the policy gives an `iommu` capability (else slot 0).
    fn connected<'a, 'b>(&self, link: &'a mut IommuClient<'b>) -> Option<&'a mut IommuClient<'b>> {
        (self.endpoint.slot() != 0).then_some(link)
    }
}

/// Answers one request; deletes the capabilities it brought.
fn serve(
    driver_core: &mut DriverCore,
    space: &mut EcamSpace,
    kernel: &mut Syscalls<'_>,
    iommu: &Iommu,
    buffer: &mut Buffer,
    pool: &RefCell<SlotPool>,
    message: Received,
) -> Answer {
    let received = buffer.received_caps();
    let mut bytes = [0u8; REQUEST_MAX];
    let request = buffer.message().get(..message.len).filter(|request| request.len() <= REQUEST_MAX);
    let answer = match request {
        Some(request) => {
            // The request is copied out: the IOMMU calls it leads to reuse the buffer.
            bytes[..request.len()].copy_from_slice(request);
            let mut link = iommu.client(buffer, pool);
            let mut hw = Hardware { config: space, kernel, iommu: iommu.connected(&mut link) };
            let presented = received.first().map(|&slot| Slot(slot));
            driver_core.handle(&mut hw, message.badge, &bytes[..message.len], presented)
        }
        None => Refusal::new(ErrorCode::Malformed, format_args!("{} bytes is no PCI request", message.len)).into(),
    };
    for slot in received {
        let _ = Cap::<Endpoint>::at(slot).delete();
    }
    if let Reply::Refused { code, reason } = &answer.reply {
        defmt::info!("refused ({}): {=str}", code, reason.as_str());
    }
    answer
}

/// Maps the root bus, then every bus its bridges lead to.
fn map_ecam(ecam: pci_server::ecam::Ecam, pool: &RefCell<SlotPool>) -> Option<EcamSpace> {
    let window = ECAM.get();
    let mut space = match EcamSpace::map_first(ecam, window, &mut pool.borrow_mut()) {
        Ok(space) => space,
        Err(code) => {
            defmt::error!("the ECAM window cannot be mapped: {}", code);
            return None;
        }
    };
    let root = ecam.buses().0;
    let last = match reach::last_bus(&mut space, root) {
        Ok(last) => last,
        Err(error) => {
            defmt::error!("the root bus cannot be read: {}", error);
            return None;
        }
    };
    if let Err(code) = space.map_through(window, &mut pool.borrow_mut(), last) {
        defmt::error!("buses {=u8}-{=u8} cannot be mapped: {}", root, last, code);
        return None;
    }
    defmt::info!("ECAM mapped for buses {=u8}-{=u8}", root, last);
    Some(space)
}
