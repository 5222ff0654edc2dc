//! The IOMMU server: owns the VT-d unit and hands out DMA handles and group capabilities.
//!
//! Startup: read the policy's part (`IommuConfig`), check the granted
//! register capability against the ACPI DMAR table, map the registers,
//! set up the invalidation queue and table memory, bring the unit up with
//! translation off, and route its fault event to a notification bit. Then
//! one loop: requests (the PCI server's topology report comes first; the
//! library turns translation on once the groups exist), revoked frames,
//! fault events, and deaths of the tasks that hold groups. All decisions are the library's;
//! this file only moves bytes and slots.
#![no_std]
#![no_main]

mod platform;

use core::cell::RefCell;

use heapless::Vec;

use capabilities::ErrorCode;
use capabilities::abi::ipc::MAX_CAPS;
use capabilities::config::{InvalidationMode, IommuConfig};
use iommu_api::{Reply, Request};
use iommu_server::service::{Service, refused};
use iommu_server::unit::MsiMessage;
use platform::Vtd;
use platform::kernel::{FAULT_BIT, PIN_REVOKED_BIT, Syscalls, deaths};
use platform::queue::QueuePages;
use platform::registers::MmioRegisters;
use platform::tables::FramePool;
use userlib::cap::{Cap, Endpoint, Interrupt, SlotPool, own};
use userlib::ipc::{Buffer, Received};
use userlib::mmio::Mapping;
use userlib::server::Serve;
use userlib::syscall;

userlib::cap_slot!(REQUESTS: Endpoint = "requests");
userlib::cap_slot!(MINTER: Endpoint = "minter");
userlib::cap_slot!(REGISTERS: DeviceMemory = "registers");
userlib::cap_slot!(ACPI: Frame = "acpi");
userlib::cap_slot!(CONTROL: Control = "control");
userlib::cap_slot!(EVENTS: Notification = "events");
userlib::cap_slot!(PCI_EVENTS: Notification = "pci-events");
userlib::entry!(main);

/// Where the unit's registers are mapped.
const REGISTERS_VIRT: u64 = 0x3000_0000;
/// Where the invalidation queue is mapped.
const QUEUE_VIRT: u64 = 0x3010_0000;
/// Where table memory starts.
const TABLES_VIRT: u64 = 0x4000_0000;

fn main() -> u64 {
    let Some(mut buffer) = Buffer::take() else { return 1 };
    let Some(config) = userlib::boot::server_config::<IommuConfig>("IOMMU") else { return 1 };
    let Some(unit) = platform::acpi::describe_unit(ACPI.get(), REGISTERS.get()) else { return 1 };
    let registers = match Mapping::map(own::SPACE, REGISTERS.get(), REGISTERS_VIRT, true) {
        Ok(mapping) => MmioRegisters { mapping },
        Err(code) => {
            defmt::error!("the unit's registers cannot be mapped: {}", code);
            return 1;
        }
    };
    let pool = RefCell::new(SlotPool::new());
    let queue = match config.invalidation {
        InvalidationMode::Registers => {
            defmt::info!("the policy asks for register-based invalidation");
            None
        }
        InvalidationMode::Queued => match QueuePages::create(CONTROL.get(), &mut pool.borrow_mut(), QUEUE_VIRT) {
            Ok(queue) => Some(queue),
            Err(code) => {
                defmt::warn!("no invalidation queue ({}): invalidating through registers", code);
                None
            }
        },
    };
    let pages = FramePool::new(&pool, CONTROL.get(), TABLES_VIRT);
    let start = Service::<Vtd<'_>>::start(
        registers,
        unit.register_size,
        pages,
        queue,
        config,
        unit.host_address_width,
        syscall::now(),
    );
    let mut service = match start {
        Ok(service) => service,
        Err(error) => {
            defmt::error!("the VT-d unit cannot be brought up: {}", defmt::Debug2Format(&error));
            return 1;
        }
    };
    if let Err(code) = service.set_reserved_regions(unit.reserved).and_then(|()| service.set_scope(unit.scope)) {
        defmt::error!("the reserved memory regions and the unit's scope cannot be recorded: {}", code);
        return 1;
    }
    let queued = service.hardware().unit.queued_invalidation();
    let levels = service.hardware().table_config.width.levels();
    let caps = service.capabilities();
    defmt::info!(
        "unit up, translation off: CAP {=u64:#x} ECAP {=u64:#x}, {=u8}-bit guest addresses ({=u8}-level tables), {=u16} fault records, {=str}, {=str}, invalidation through {=str}",
        caps.cap,
        caps.ecap,
        caps.max_guest_address_width,
        levels,
        caps.fault_recording_count,
        if caps.coherent { "coherent table walks" } else { "non-coherent table walks (tables written back)" },
        if caps.caching_mode { "caching mode (not-present entries cached too)" } else { "no caching mode" },
        if queued { "the queue" } else { "registers" }
    );
    platform::ioapic::start(&mut service, REGISTERS.get(), unit.ioapic_source);
    let Some(fault_interrupt) = route_fault_event(&mut service, &pool) else { return 1 };
    if let Err(code) = EVENTS.get().bind() {
        defmt::error!("the events notification cannot be bound ({}): faults and deaths would go unseen", code);
        return 1;
    }
    if let Err(code) = CONTROL.get().watch_pins(EVENTS.get(), PIN_REVOKED_BIT) {
        defmt::error!("revoked pins cannot be watched ({}): revoked frames would stay mapped", code);
        return 1;
    }
    let Some(window) = pool.borrow_mut().take() else { return 1 };
    buffer.set_window(window, 1);
    let mut kernel = Syscalls {
        pool: &pool,
        control: CONTROL.get(),
        minter: MINTER.get(),
        events: EVENTS.get(),
        pci_events: PCI_EVENTS.get(),
    };
    defmt::info!("IOMMU server ready: waiting for the PCI server's topology");
    // The server borrows the service: a second copy of it would not fit the stack.
    let mut server = Server { service: &mut service, kernel: &mut kernel, fault_interrupt };
    userlib::server::serve(REQUESTS.get(), &mut buffer, &mut server)
}

/// The service, the kernel it calls, and the unit's fault event.
struct Server<'s, 'p> {
    service: &'s mut Service<Vtd<'p>>,
    kernel: &'s mut Syscalls<'p>,
    fault_interrupt: Cap<Interrupt>,
}

impl Serve for Server<'_, '_> {
    type Reply = Reply;

    /// Answers one request; the service deletes the capabilities it brought.
    fn request(&mut self, buffer: &mut Buffer, message: Received) -> (Reply, Vec<u32, MAX_CAPS>) {
        let received = buffer.received_caps();
        let answer = match buffer.decode::<Request>(message.len) {
            Ok(request) => self.service.handle(self.kernel, message.badge, request, &received),
            Err(_) => {
                for &slot in &received {
                    let _ = Cap::<Endpoint>::at(slot).delete();
                }
                refused(ErrorCode::Malformed, "no IOMMU request decodes from this message").into()
            }
        };
        if let Reply::Refused { code, reason } = &answer.reply {
            defmt::info!("refused ({}): {=str}", code, reason.as_str());
        }
        (answer.reply, answer.cap.into_iter().collect())
    }

    fn too_large(&self) -> Reply {
        refused(ErrorCode::TooLarge, "the reply did not fit a message")
    }

    /// Revoked frames, fault events and deaths of watched tasks.
    fn notified(&mut self, _buffer: &mut Buffer, bits: u64) {
        // First: until their mappings go, devices still reach frames whose
        // capabilities were taken back.
        if bits & PIN_REVOKED_BIT != 0 {
            self.service.pins_revoked(self.kernel);
        }
        if bits & FAULT_BIT != 0 {
            let drain = self.service.drain_faults(syscall::now());
            if drain.records == 0 && drain.overflows == 0 {
                defmt::debug!("fault event with no fault pending");
            }
            // The unit raises no event while a fault is pending: come back
            // for the rest after the other events.
            if drain.unfinished
                && let Err(code) = EVENTS.get().signal()
            {
                defmt::error!("faults left pending cannot be drained later: {}", code);
            }
            if let Err(code) = self.fault_interrupt.acknowledge() {
                defmt::error!("the fault event cannot be acknowledged: {}", code);
            }
        }
        for task in deaths(bits) {
            self.service.task_died(self.kernel, task);
        }
    }
}

/// Allocates an MSI vector, delivers it as [`FAULT_BIT`] and programs the
/// unit's fault event with it.
fn route_fault_event(service: &mut Service<Vtd<'_>>, pool: &RefCell<SlotPool>) -> Option<Cap<Interrupt>> {
    let slot = pool.borrow_mut().take()?;
    let routed = CONTROL.get().alloc_msi(slot).and_then(|msi| {
        msi.interrupt.bind(EVENTS.get(), FAULT_BIT)?;
        Ok(msi)
    });
    match routed {
        Ok(msi) => {
            service.hardware().unit.configure_fault_event(MsiMessage { address: msi.address, data: msi.data });
            defmt::info!("fault events on vector {=u8}", msi.vector);
            Some(msi.interrupt)
        }
        Err(code) => {
            defmt::error!("no interrupt for fault events: {}", code);
            None
        }
    }
}
