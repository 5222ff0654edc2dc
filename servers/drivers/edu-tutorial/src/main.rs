//! A driver for QEMU's edu device, written step by step in `docs/writing-a-driver.md`.
//!
//! It probes the device the policy binds to it, checks its identification
//! register through the BAR capability, computes a factorial and waits for
//! the interrupt that says it is done, then moves a pattern to the device
//! and back by DMA through its group's default domain. Each step is a
//! test case, so scenario `edu-tutorial` shows it working.
#![no_std]
#![no_main]

use capabilities::ErrorCode;
use capabilities::protocol::Refused;
use iommu_api::{Reply, Request};
use userlib::cap::{Cap, DeviceMemory, Endpoint, Frame, Interrupt, Notification, SlotPool, own};
use userlib::ipc::Buffer;
use userlib::mmio::Mapping;
use userlib::testkit::{self, Outcome};
use userlib::{check, check_eq, check_ok, objects};

userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::entry!(main);

/// edu's registers: BAR0 offsets.
mod reg {
    pub const IDENTIFICATION: u64 = 0x00;
    pub const FACTORIAL: u64 = 0x08;
    pub const STATUS: u64 = 0x20;
    pub const INTERRUPT_STATUS: u64 = 0x24;
    pub const INTERRUPT_ACK: u64 = 0x64;
    pub const DMA_SOURCE: u64 = 0x80;
    pub const DMA_DESTINATION: u64 = 0x88;
    pub const DMA_COUNT: u64 = 0x90;
    pub const DMA_COMMAND: u64 = 0x98;
}

/// What the identification register reads (version 1.0, "ed").
const IDENTIFICATION: u32 = 0x0100_00ed;
/// Status: raise an interrupt when a factorial is done.
const STATUS_INTERRUPT: u32 = 0x80;
/// Interrupt status: a factorial is done; a DMA is done.
const FACTORIAL_DONE: u32 = 0x01;
const DMA_DONE: u32 = 0x100;
/// DMA command: start; from the device's buffer to memory; interrupt when done.
const DMA_RUN: u64 = 1;
const DMA_TO_MEMORY: u64 = 2;
const DMA_INTERRUPT: u64 = 4;
/// Where edu's own buffer sits in its DMA address map.
const DEVICE_BUFFER: u64 = 0x4_0000;
/// The bits of an address edu can drive (QEMU's default `dma_mask`).
const DMA_MASK_BITS: u8 = 28;
/// QEMU finishes an edu DMA 100 ms of virtual time after it starts.
const INTERRUPT_TIMEOUT_US: u64 = 2_000_000;
/// Where BAR0 and the DMA buffer are mapped in this task.
const BAR_VIRT: u64 = 0x2000_0000;
const BUFFER_VIRT: u64 = 0x2100_0000;
/// Bytes moved by DMA.
const LENGTH: usize = 256;

/// The device once probed: its registers, its interrupt bound to a
/// notification, its DMA handle, and a page to DMA from and to.
struct Device {
    registers: Mapping<DeviceMemory>,
    interrupt: Cap<Interrupt>,
    raised: Cap<Notification>,
    handle: Cap<Endpoint>,
    frame: Cap<Frame>,
}

/// Cases share the device: they run one after the other, in this task.
static DEVICE: spin::Once<Device> = spin::Once::new();

fn main() -> u64 {
    testkit::run(userlib::cases![
        probe_grants_the_bar_an_interrupt_and_a_dma_handle,
        the_identification_register_reads_edu,
        a_factorial_is_computed_and_its_interrupt_arrives,
        a_dma_round_trip_through_the_dma_api_moves_the_pattern
    ])
}

fn probe_grants_the_bar_an_interrupt_and_a_dma_handle(buffer: &mut Buffer) -> Outcome {
    let mut slots = SlotPool::new();
    let (Some(window), Some(raised), Some(frame)) = (slots.take_run(4), slots.take(), slots.take()) else {
        userlib::fail!("no free slots");
    };
    let granted = check_ok!(pci_api::client::probe(PCI.get(), buffer, 0, window).map_err(Refused::logged));
    let (Some(bar), Some(interrupt), Some(handle)) = (granted.bar(0), granted.interrupt(), granted.dma_handle()) else {
        userlib::fail!("the grant lacks BAR0, the interrupt or the DMA handle");
    };
    defmt::info!("edu-tutorial holds {} (IOMMU group {})", granted.grant.device, granted.group());
    let registers = check_ok!(Mapping::map(own::SPACE, Cap::<DeviceMemory>::at(bar), BAR_VIRT, true));
    let raised = check_ok!(objects::create_notification(raised));
    let interrupt = Cap::<Interrupt>::at(interrupt);
    check_ok!(interrupt.bind(raised, 1));
    let frame = check_ok!(objects::alloc_frame(frame, 1));
    // The grant leaves bus mastering off: the driver turns it on once it
    // is ready for the device to do DMA.
    check_ok!(pci_api::client::enable_bus_mastering(PCI.get(), buffer, granted.grant.device).map_err(Refused::logged));
    DEVICE.call_once(|| Device { registers, interrupt, raised, handle: Cap::at(handle), frame });
    Ok(())
}

fn device() -> Result<&'static Device, testkit::Failure> {
    DEVICE.get().ok_or(testkit::Failure { file: file!(), line: line!() })
}

fn the_identification_register_reads_edu(_: &mut Buffer) -> Outcome {
    let device = device()?;
    check_eq!(device.registers.read32(reg::IDENTIFICATION), Some(IDENTIFICATION));
    Ok(())
}

/// Waits for the device's interrupt and acknowledges it; the interrupt
/// status it had.
fn wait_for_interrupt(device: &Device) -> Result<u32, ErrorCode> {
    device.raised.wait(0, INTERRUPT_TIMEOUT_US)?;
    let status = device.registers.read32(reg::INTERRUPT_STATUS).ok_or(ErrorCode::InvalidArgument)?;
    device.registers.write32(reg::INTERRUPT_ACK, status).ok_or(ErrorCode::InvalidArgument)?;
    device.interrupt.acknowledge()?;
    Ok(status)
}

fn a_factorial_is_computed_and_its_interrupt_arrives(_: &mut Buffer) -> Outcome {
    let device = device()?;
    check_eq!(device.registers.write32(reg::STATUS, STATUS_INTERRUPT), Some(()));
    check_eq!(device.registers.write32(reg::FACTORIAL, 5), Some(()));
    let status = check_ok!(wait_for_interrupt(device));
    check!(status & FACTORIAL_DONE != 0, "the interrupt says the factorial is done");
    check_eq!(device.registers.read32(reg::FACTORIAL), Some(120));
    Ok(())
}

/// Runs one DMA of `LENGTH` bytes and waits for its interrupt.
fn dma(device: &Device, source: u64, destination: u64, command: u64) -> Result<u32, ErrorCode> {
    let r = &device.registers;
    r.write64(reg::DMA_SOURCE, source)
        .and_then(|()| r.write64(reg::DMA_DESTINATION, destination))
        .and_then(|()| r.write64(reg::DMA_COUNT, LENGTH as u64))
        .and_then(|()| r.write64(reg::DMA_COMMAND, DMA_RUN | DMA_INTERRUPT | command))
        .ok_or(ErrorCode::InvalidArgument)?;
    wait_for_interrupt(device)
}

fn a_dma_round_trip_through_the_dma_api_moves_the_pattern(buffer: &mut Buffer) -> Outcome {
    let device = device()?;
    let request = Request::DmaMap { writable: true, mask_bits: DMA_MASK_BITS };
    let reply = check_ok!(
        iommu_api::client::request(device.handle, buffer, &request, &[device.frame.slot()]).map_err(Refused::logged)
    );
    let Reply::Mapped { iova } = reply else { userlib::fail!("DmaMap answered with no IOVA") };
    defmt::info!("edu-tutorial's buffer is at IOVA {=u64:#x}", iova);
    let memory = check_ok!(Mapping::map(own::SPACE, device.frame, BUFFER_VIRT, true));
    let pattern = |i: usize| (i as u8).wrapping_mul(7) ^ 0x5a;
    for i in 0..LENGTH {
        check_eq!(memory.write8(i as u64, pattern(i)), Some(()));
    }
    check_eq!(memory.write_back(0, LENGTH as u64), Some(()));
    let to_device = check_ok!(dma(device, iova, DEVICE_BUFFER, 0));
    check!(to_device & DMA_DONE != 0, "the interrupt says the DMA to the device is done");
    for i in 0..LENGTH {
        check_eq!(memory.write8(i as u64, 0), Some(()));
    }
    check_eq!(memory.write_back(0, LENGTH as u64), Some(()));
    let back = check_ok!(dma(device, DEVICE_BUFFER, iova, DMA_TO_MEMORY));
    check!(back & DMA_DONE != 0, "the interrupt says the DMA back is done");
    for i in 0..LENGTH {
        check_eq!(memory.read8(i as u64), Some(pattern(i)));
    }
    check_ok!(memory.unmap());
    check_ok!(
        iommu_api::client::request(device.handle, buffer, &Request::DmaUnmap { iova }, &[]).map_err(Refused::logged)
    );
    Ok(())
}
