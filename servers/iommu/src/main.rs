//! The IOMMU server: owns the VT-d units and hands out DMA handles and group capabilities.
//!
//! Startup: read the policy's part (`IommuConfig`), check each granted
//! register capability against the ACPI DMAR table, map each unit's
//! registers and set up its invalidation queue, bring every unit up with
//! translation on and every requester blocked, and route each unit's fault
//! event to one notification bit. Then
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
use iommu_server::service::{MAX_UNITS, Service, UnitParts, refused};
use iommu_server::unit::MsiMessage;
use platform::Vtd;
use platform::acpi::UnitDescription;
use platform::kernel::{FAULT_BIT, PIN_REVOKED_BIT, Syscalls, deaths};
use platform::queue::QueuePages;
use platform::registers::MmioRegisters;
use platform::tables::FramePool;
use userlib::cap::{Cap, DeviceMemory, Endpoint, Interrupt, SlotPool, own};
use userlib::ipc::{Buffer, Received};
use userlib::mmio::Mapping;
use userlib::server::Serve;
use userlib::syscall;

userlib::cap_slot!(REQUESTS: Endpoint = "requests");
userlib::cap_slot!(MINTER: Endpoint = "minter");
userlib::cap_slot!(REGISTERS: DeviceMemory = "registers");
userlib::cap_slot!(REGISTERS_1: DeviceMemory = "registers-1", optional);
userlib::cap_slot!(REGISTERS_2: DeviceMemory = "registers-2", optional);
userlib::cap_slot!(REGISTERS_3: DeviceMemory = "registers-3", optional);
userlib::cap_slot!(REGISTERS_4: DeviceMemory = "registers-4", optional);
userlib::cap_slot!(REGISTERS_5: DeviceMemory = "registers-5", optional);
userlib::cap_slot!(REGISTERS_6: DeviceMemory = "registers-6", optional);
userlib::cap_slot!(REGISTERS_7: DeviceMemory = "registers-7", optional);
userlib::cap_slot!(ACPI: Frame = "acpi");
userlib::cap_slot!(CONTROL: Control = "control");
userlib::cap_slot!(EVENTS: Notification = "events");
userlib::cap_slot!(PCI_EVENTS: Notification = "pci-events");
userlib::entry!(main);

/// Where the first unit's registers are mapped; each next unit's
/// [`REGISTERS_SPAN`] further on.
const REGISTERS_VIRT: u64 = 0x3000_0000;
/// Address space kept for one unit's registers: 32 pages, more than any
/// register set DMAR describes on machines seen.
const REGISTERS_SPAN: u64 = 0x2_0000;
/// Where the first unit's invalidation queue is mapped; each next unit's
/// [`QUEUE_SPAN`] further on.
const QUEUE_VIRT: u64 = REGISTERS_VIRT + MAX_UNITS as u64 * REGISTERS_SPAN;
/// Address space kept for one unit's queue (its two pages).
const QUEUE_SPAN: u64 = 0x2000;
/// Where table memory starts.
const TABLES_VIRT: u64 = 0x4000_0000;

/// The register capabilities the policy may grant, one a unit (`registers`
/// for the first, `registers-1` and on for the others).
fn unit_grants() -> [Cap<DeviceMemory>; MAX_UNITS] {
    [
        REGISTERS.get(),
        REGISTERS_1.get(),
        REGISTERS_2.get(),
        REGISTERS_3.get(),
        REGISTERS_4.get(),
        REGISTERS_5.get(),
        REGISTERS_6.get(),
        REGISTERS_7.get(),
    ]
}

fn main() -> u64 {
    let Some(mut buffer) = Buffer::take() else { return 1 };
    let Some(config) = userlib::boot::server_config::<IommuConfig>("IOMMU") else { return 1 };
    let Some(described) = platform::acpi::describe(ACPI.get(), &unit_grants()) else { return 1 };
    let pool = RefCell::new(SlotPool::new());
    let mut parts = Vec::<UnitParts<Vtd<'_>>, MAX_UNITS>::new();
    for (index, unit) in described.units.iter().enumerate() {
        if let Some(unit) = unit_parts(index as u64, unit, config.invalidation, &pool) {
            let _ = parts.push(unit);
        }
    }
    let pages = FramePool::new(&pool, CONTROL.get(), TABLES_VIRT);
    let haw = described.host_address_width;
    let mut service = match Service::<Vtd<'_>>::start(parts, pages, config, haw, syscall::now()) {
        Ok(service) => service,
        Err(error) => {
            defmt::error!("no VT-d unit can be brought up: {}", defmt::Display2Format(&error));
            return 1;
        }
    };
    let recorded = service.set_reserved_regions(described.reserved).and_then(|()| service.set_scopes(described.scopes));
    if let Err(code) = recorded {
        defmt::error!("the reserved memory regions and the units' scopes cannot be recorded: {}", code);
        return 1;
    }
    let mut fault_interrupts = Vec::<Cap<Interrupt>, MAX_UNITS>::new();
    for index in 0..service.hardware().units.len() as u8 {
        log_unit(&mut service, index);
        let Some(unit) = service.hardware().unit(index) else { continue };
        let base = unit.base;
        if let Some(described) = described.units.iter().find(|unit| unit.base == base) {
            platform::ioapic::start(&mut service, index, described.registers, described.ioapic_source);
        }
        let Some(fault_interrupt) = route_fault_event(&mut service, index, &pool) else { return 1 };
        let _ = fault_interrupts.push(fault_interrupt);
    }
    if let Err(code) = EVENTS.get().bind() {
        defmt::error!("the events notification cannot be bound ({}): faults and deaths would go unseen", code);
        return 1;
    }
    if let Err(code) = CONTROL.get().watch_pins(EVENTS.get(), PIN_REVOKED_BIT) {
        defmt::error!("revoked pins cannot be watched ({}): revoked frames would stay mapped", code);
        return 1;
    }
    // Room for every capability a message may carry: a range map's frames.
    let Some(window) = pool.borrow_mut().take_run(MAX_CAPS as u32) else { return 1 };
    buffer.set_window(window, MAX_CAPS as u32);
    let mut kernel = Syscalls {
        pool: &pool,
        control: CONTROL.get(),
        minter: MINTER.get(),
        events: EVENTS.get(),
        pci_events: PCI_EVENTS.get(),
    };
    defmt::info!("IOMMU server ready: waiting for the PCI server's topology");
    // The server borrows the service: a second copy of it would not fit the stack.
    let mut server = Server { service: &mut service, kernel: &mut kernel, fault_interrupts };
    userlib::server::serve(REQUESTS.get(), &mut buffer, &mut server)
}

/// The `index`th described unit's registers mapped and its queue made
/// (unless the policy asks for register-based invalidation); `None`, with
/// the reason logged, if its registers cannot be mapped: it is not driven.
fn unit_parts<'p>(
    index: u64,
    unit: &UnitDescription,
    invalidation: InvalidationMode,
    pool: &RefCell<SlotPool>,
) -> Option<UnitParts<Vtd<'p>>> {
    if unit.register_size > REGISTERS_SPAN {
        defmt::error!("the unit at {=u64:#x}: registers larger than the window kept for them", unit.base);
        return None;
    }
    let registers = match Mapping::map(own::SPACE, unit.registers, REGISTERS_VIRT + index * REGISTERS_SPAN, true) {
        Ok(mapping) => MmioRegisters { mapping },
        Err(code) => {
            defmt::error!("the unit at {=u64:#x}: registers cannot be mapped ({}); not driven", unit.base, code);
            return None;
        }
    };
    let queue = match invalidation {
        InvalidationMode::Registers => {
            defmt::info!("the policy asks for register-based invalidation");
            None
        }
        InvalidationMode::Queued => {
            match QueuePages::create(CONTROL.get(), &mut pool.borrow_mut(), QUEUE_VIRT + index * QUEUE_SPAN) {
                Ok(queue) => Some(queue),
                Err(code) => {
                    defmt::warn!("no invalidation queue ({}): invalidating through registers", code);
                    None
                }
            }
        }
    };
    Some(UnitParts { base: unit.base, registers, register_window: unit.register_size, queue })
}

/// Logs what driven unit `index` is and how it is driven.
fn log_unit(service: &mut Service<Vtd<'_>>, index: u8) {
    let Some(unit) = service.hardware().unit(index) else { return };
    let queued = unit.unit.queued_invalidation();
    let levels = unit.table_config.width.levels();
    let caps = *unit.unit.capabilities();
    defmt::info!(
        "unit {=u64:#x} up, translation on with every requester blocked: CAP {=u64:#x} ECAP {=u64:#x}, {=u8}-bit guest addresses ({=u8}-level tables), {=u16} fault records, {=str}, {=str}, invalidation through {=str}",
        unit.base,
        caps.cap,
        caps.ecap,
        caps.max_guest_address_width,
        levels,
        caps.fault_recording_count,
        if caps.coherent { "coherent table walks" } else { "non-coherent table walks (tables written back)" },
        if caps.caching_mode { "caching mode (not-present entries cached too)" } else { "no caching mode" },
        if queued { "the queue" } else { "registers" }
    );
}

/// The service, the kernel it calls, and the units' fault events.
struct Server<'s, 'p> {
    service: &'s mut Service<Vtd<'p>>,
    kernel: &'s mut Syscalls<'p>,
    fault_interrupts: Vec<Cap<Interrupt>, MAX_UNITS>,
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
            // A unit raises no event while a fault is pending: come back
            // for the rest after the other events.
            if drain.unfinished
                && let Err(code) = EVENTS.get().signal()
            {
                defmt::error!("faults left pending cannot be drained later: {}", code);
            }
            for interrupt in &self.fault_interrupts {
                if let Err(code) = interrupt.acknowledge() {
                    defmt::error!("a fault event cannot be acknowledged: {}", code);
                }
            }
        }
        for task in deaths(bits) {
            self.service.task_died(self.kernel, task);
        }
    }
}

/// Allocates an MSI vector, delivers it as [`FAULT_BIT`] and programs
/// driven unit `index`'s fault event with it: every unit's faults raise
/// the one bit, and each event drains every unit.
fn route_fault_event(service: &mut Service<Vtd<'_>>, index: u8, pool: &RefCell<SlotPool>) -> Option<Cap<Interrupt>> {
    let slot = pool.borrow_mut().take()?;
    let routed = CONTROL.get().alloc_msi(slot).and_then(|msi| {
        msi.interrupt.bind(EVENTS.get(), FAULT_BIT)?;
        Ok(msi)
    });
    match routed {
        Ok(msi) => {
            let unit = service.hardware().unit(index)?;
            unit.unit.configure_fault_event(MsiMessage { address: msi.address, data: msi.data });
            defmt::info!("unit {=u64:#x}: fault events on vector {=u8}", unit.base, msi.vector);
            Some(msi.interrupt)
        }
        Err(code) => {
            defmt::error!("no interrupt for fault events: {}", code);
            None
        }
    }
}
