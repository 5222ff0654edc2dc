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

mod platform;

use core::cell::RefCell;

use capabilities::ErrorCode;
use capabilities::abi::ipc::MAX_CAPS;
use capabilities::config::PciConfig;
use heapless::Vec;
use pci_api::Reply;
use pci_server::driver_core::{DriverCore, Hardware, Refusal, Slot};
use pci_server::{Options, enumerate, reach};
use platform::ecam::EcamSpace;
use platform::iommu::IommuClient;
use platform::kernel::Syscalls;
use userlib::cap::{Cap, Endpoint, SlotPool};
use userlib::ipc::{Buffer, Received};
use userlib::objects;
use userlib::server::Serve;

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
    let Some(config) = userlib::boot::server_config::<PciConfig>("PCI") else { return 1 };
    let pool = RefCell::new(SlotPool::new());
    let Some(ecam) = platform::acpi::ecam_window(ACPI.get(), ECAM.get()) else { return 1 };
    let roots = platform::acpi::root_buses(ACPI.get(), &ecam);
    let Some(mut space) = map_ecam(ecam, &roots, &pool) else { return 1 };
    let options = Options { segment: ecam.segment(), extended_config: true, enable_acs: true };
    let topology = match enumerate(&mut space, &roots, options) {
        Ok(topology) => topology,
        Err(error) => {
            defmt::error!("enumeration failed: {}", defmt::Display2Format(&error));
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
    let mut kernel =
        Syscalls { pool: &pool, control: CONTROL.get(), events: EVENTS.get(), timer, tables: Default::default() };
    let Some(window) = pool.borrow_mut().take() else { return 1 };
    buffer.set_window(window, 1);
    let iommu = Iommu { endpoint: IOMMU.get(), window };
    let mut driver_core = {
        let mut link = iommu.client(&mut buffer, &pool);
        let mut hw = Hardware { config: &mut space, kernel: &mut kernel, iommu: iommu.connected(&mut link) };
        DriverCore::start(config, &topology, &mut hw)
    };
    defmt::info!("PCI server ready");
    // The server borrows the driver core: a second copy would not fit the stack.
    let mut server =
        Server { driver_core: &mut driver_core, space: &mut space, kernel: &mut kernel, iommu, pool: &pool };
    userlib::server::serve(REQUESTS.get(), &mut buffer, &mut server)
}

/// The driver core and what it works through.
struct Server<'s, 'p> {
    driver_core: &'s mut DriverCore,
    space: &'s mut EcamSpace,
    kernel: &'s mut Syscalls<'p>,
    iommu: Iommu,
    pool: &'p RefCell<SlotPool>,
}

impl Serve for Server<'_, '_> {
    type Reply = Reply;

    /// Answers one request; deletes the capabilities it brought.
    fn request(&mut self, buffer: &mut Buffer, message: Received) -> (Reply, Vec<u32, MAX_CAPS>) {
        let received = buffer.received_caps();
        let mut bytes = [0u8; REQUEST_MAX];
        let request = buffer.message().get(..message.len).filter(|request| request.len() <= REQUEST_MAX);
        let answer = match request {
            Some(request) => {
                // The request is copied out: the IOMMU calls it leads to reuse the buffer.
                bytes[..request.len()].copy_from_slice(request);
                let mut link = self.iommu.client(buffer, self.pool);
                let mut hw =
                    Hardware { config: self.space, kernel: self.kernel, iommu: self.iommu.connected(&mut link) };
                let presented = received.first().map(|&slot| Slot(slot));
                self.driver_core.handle(&mut hw, message.badge, &bytes[..message.len], presented)
            }
            None => Refusal::new(ErrorCode::Malformed, format_args!("{} bytes is no PCI request", message.len)).into(),
        };
        for slot in received {
            let _ = Cap::<Endpoint>::at(slot).delete();
        }
        if let Reply::Refused { code, reason } = &answer.reply {
            defmt::info!("refused ({}): {=str}", code, reason.as_str());
        }
        (answer.reply, answer.caps.iter().map(|slot| slot.0).collect())
    }

    fn too_large(&self) -> Reply {
        Refusal::new(ErrorCode::TooLarge, format_args!("the reply did not fit a message")).into_reply()
    }

    /// Holders' deaths and the IOMMU server's reclaims.
    fn notified(&mut self, buffer: &mut Buffer, bits: u64) {
        let mut link = self.iommu.client(buffer, self.pool);
        let mut hw = Hardware { config: self.space, kernel: self.kernel, iommu: self.iommu.connected(&mut link) };
        self.driver_core.event(&mut hw, bits);
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

/// Maps the root buses, then every bus their bridges lead to.
fn map_ecam(ecam: pci_server::ecam::Ecam, roots: &[u8], pool: &RefCell<SlotPool>) -> Option<EcamSpace> {
    let window = ECAM.get();
    let mut space = match EcamSpace::map_first(ecam, window, &mut pool.borrow_mut()) {
        Ok(space) => space,
        Err(code) => {
            defmt::error!("the ECAM window cannot be mapped: {}", code);
            return None;
        }
    };
    let first = ecam.buses().0;
    let mut last = roots.iter().copied().max().unwrap_or(first);
    if let Err(code) = space.map_through(window, &mut pool.borrow_mut(), last) {
        defmt::error!("root buses {=u8}-{=u8} cannot be mapped: {}", first, last, code);
        return None;
    }
    for &root in roots {
        match reach::last_bus(&mut space, root) {
            Ok(reach) => last = last.max(reach),
            Err(error) => {
                defmt::error!("root bus {=u8:02x} cannot be read: {}", root, error);
                return None;
            }
        }
    }
    if let Err(code) = space.map_through(window, &mut pool.borrow_mut(), last) {
        defmt::error!("buses {=u8}-{=u8} cannot be mapped: {}", first, last, code);
        return None;
    }
    defmt::info!("ECAM mapped for buses {=u8}-{=u8}", first, last);
    Some(space)
}
