//! An MSI flood, run in QEMU: a user task whose edu raises its interrupt as fast as the task can ask.
//!
//! The `storms` scenario's test task asks it to flood. It claims its
//! device's group (the policy's `device` parameter, a requester id),
//! acquires the device, so the PCI server programs its MSI with a
//! remapped entry, turns bus mastering on (an MSI is a memory write of
//! the device), answers, and then writes edu's interrupt-raise register
//! (0x60) in a loop, one MSI a write, until the test task signals `stop`.
//! Every [`BATCH`] writes it acknowledges its interrupt, which gives the
//! kernel's count of the messages it delivered; it never waits for them
//! (its notification's bits just coalesce). A second request returns the
//! figures. It runs at the test task's priority, so the kernel's time
//! slices are all that stands between the flood and the test task.
//!
//! A request is one word (postcard); the reply is `[0 or an error code,
//! writes, arrivals, start, end]`:
//!
//! | op | does | figures |
//! | --- | --- | --- |
//! | 1 | sets the device up, answers, then floods until `stop` | none |
//! | 2 | reports the flood | writes to 0x60, arrivals the kernel counted, and the µs it started and ended |
#![no_std]
#![no_main]

use capabilities::ErrorCode;
use capabilities::abi::ipc::NONBLOCK;
use capabilities::pci::Bdf;
use iommu_api::client::group;
use userlib::cap::{Cap, DeviceMemory, Interrupt, own};
use userlib::ipc::Buffer;
use userlib::mmio::Mapping;
use userlib::{boot, objects, syscall};

userlib::cap_slot!(REQUESTS: Endpoint = "requests");
userlib::cap_slot!(IOMMU: Endpoint = "iommu");
userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::cap_slot!(STOP: Notification = "stop");
userlib::entry!(main);

/// Slots: the device grant's window (four), the group capability, the
/// notification its interrupt is bound to.
const WINDOW: u32 = 64;
const GROUP: u32 = 68;
const RAISED: u32 = 69;
/// Where BAR0 is mapped.
const BAR_VIRT: u64 = 0x2000_0000;
/// Writes between looks at `stop` and at the kernel's count.
const BATCH: u64 = 64;

/// What a flood did.
#[derive(Clone, Copy, Default)]
struct Flood {
    writes: u64,
    arrivals: u64,
    start: u64,
    end: u64,
}

fn main() -> u64 {
    let Some(mut buffer) = Buffer::take() else { return 1 };
    let requests = REQUESTS.get();
    let mut flood = Flood::default();
    let mut device = None;
    let mut next = requests.receive(&mut buffer, 0, 0);
    loop {
        let op = match next {
            Ok(message) => buffer.decode::<u64>(message.len).unwrap_or(0),
            Err(_) => {
                next = requests.receive(&mut buffer, 0, 0);
                continue;
            }
        };
        let reply = match (op, &device) {
            (1, None) => match set_up(&mut buffer) {
                Ok(set) => {
                    // Answer first, then flood until told to stop.
                    let len = buffer.encode(&[0u64; 5]).unwrap_or(0);
                    let _ = own::REPLY.reply(&mut buffer, len);
                    flood = run(&set);
                    device = Some(set);
                    next = requests.receive(&mut buffer, 0, 0);
                    continue;
                }
                Err(code) => [u64::from(code as u32), 0, 0, 0, 0],
            },
            (1, Some(_)) => [u64::from(ErrorCode::Busy as u32), 0, 0, 0, 0],
            (2, _) => [0, flood.writes, flood.arrivals, flood.start, flood.end],
            _ => [u64::from(ErrorCode::NoSuchCall as u32), 0, 0, 0, 0],
        };
        let len = buffer.encode(&reply).unwrap_or(0);
        next = own::REPLY.reply_receive(&mut buffer, len, requests, 0, 0);
    }
}

/// The flooding device: its registers and its interrupt.
struct Device {
    registers: Mapping<DeviceMemory>,
    interrupt: Cap<Interrupt>,
}

/// Claims the device's group, acquires the device with its MSI, maps its
/// registers and binds its interrupt.
fn set_up(buffer: &mut Buffer) -> Result<Device, ErrorCode> {
    let device = Bdf::from_requester_id(boot::parameter("device", 0) as u16);
    group::claim(IOMMU.get(), buffer, device, GROUP).map_err(|refused| refused.code)?;
    let granted = pci_api::client::acquire(PCI.get(), buffer, device, WINDOW).map_err(|refused| refused.code)?;
    let (Some(bar), Some(interrupt)) = (granted.bar(0), granted.interrupt()) else { return Err(ErrorCode::WrongKind) };
    pci_api::client::enable_bus_mastering(PCI.get(), buffer, device).map_err(|refused| refused.code)?;
    let raised = objects::create_notification(RAISED)?;
    let interrupt = Cap::<Interrupt>::at(interrupt);
    interrupt.bind(raised, 1)?;
    let registers = Mapping::map(own::SPACE, Cap::at(bar), BAR_VIRT, true)?;
    defmt::info!("flooder: {} set up, flooding", device);
    Ok(Device { registers, interrupt })
}

/// Raises the device's interrupt until `stop` is signalled.
fn run(device: &Device) -> Flood {
    let mut flood = Flood { start: syscall::now(), ..Flood::default() };
    loop {
        for _ in 0..BATCH {
            if device.registers.write32(edu::reg::INTERRUPT_RAISE, 1).is_none() {
                break;
            }
            flood.writes += 1;
        }
        flood.arrivals += u64::from(device.interrupt.acknowledge().unwrap_or(0));
        if STOP.get().wait(NONBLOCK, 0).is_ok() {
            break;
        }
    }
    flood.arrivals += u64::from(device.interrupt.acknowledge().unwrap_or(0));
    flood.end = syscall::now();
    defmt::info!(
        "flooder: {=u64} MSIs raised in {=u64} us, {=u64} delivered",
        flood.writes,
        flood.end.saturating_sub(flood.start),
        flood.arrivals
    );
    flood
}
