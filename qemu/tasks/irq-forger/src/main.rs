//! A trusted test helper that makes devices send interrupt messages they were never given.
//!
//! The interrupt-remapping scenarios must show what the IOMMU does with a
//! message naming a revoked entry, or another device's entry. The PCI
//! server never programs such a message and refuses a holder's write to
//! the MSI capability, so this system server (the policy gives it ECAM,
//! the right to create device memory, and the RTC) plays the device that
//! misbehaves: it writes configuration space directly, makes an edu raise
//! its interrupt through BAR0 (register 0x60), and ticks the RTC's IO
//! APIC line to see that it arrives. With the right to pin frames it is
//! also the memory scenarios' oracle of physical addresses, which no user
//! task may learn: where a frame of its own (a canary another task's
//! device aims at) or of the caller's is.
//!
//! A request is four little-endian words `[op, a, b, c]` (postcard); the
//! reply is `[0 or an error code, value]`, `PermissionDenied` for an
//! operation the policy did not grant the caller (`forger-api`):
//!
//! | op | request | value |
//! | --- | --- | --- |
//! | 1 | read `c` bytes at offset `b` of function `a` (a requester id) | the bytes |
//! | 2 | write `c & 0xffff_ffff` (`c >> 32` bytes wide) at offset `b` of function `a` | — |
//! | 3 | make edu `a` raise its interrupt | — |
//! | 4 | one RTC periodic interrupt through the IO APIC, waited for up to `a` µs | µs it took |
//! | 5 | edu `a` copies 256 bytes of its buffer to bus address `b`, bus mastering turned on behind everyone's back | 1 once the transfer ended |
//! | 6 | a frame of this task, every byte `a`, pinned (once) so a device could reach it | its physical address |
//! | 7 | how many bytes of that frame differ from `a` | the count |
//! | 8 | where the frame capability sent with the request is (pinned and released at once; the capability is deleted) | its physical address |
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use capabilities::ErrorCode;
use capabilities::abi::PAGE_SIZE;
use capabilities::abi::ipc::NONBLOCK;
use capabilities::badge;
use edu::{DEVICE_BUFFER, command, reg};
use forger_api::Op;
use userlib::cap::{Cap, DeviceMemory, Frame, Notification, own};
use userlib::ipc::Buffer;
use userlib::mmio::Mapping;
use userlib::{objects, syscall};

userlib::cap_slot!(REQUESTS: Endpoint = "requests");
userlib::cap_slot!(ECAM: DeviceMemory = "ecam");
userlib::cap_slot!(CONTROL: Control = "control");
userlib::cap_slot!(RTC: IoPorts = "rtc");
userlib::cap_slot!(RTC_IRQ: Interrupt = "rtc-irq");
userlib::entry!(main);

/// Buses whose configuration space is mapped (QEMU's q35 here has two).
const BUSES: u64 = 2;
/// Pages of one bus's configuration space.
const BUS_PAGES: u64 = 256;
/// Where bus 0's configuration space is mapped; bus `n` follows at `n` MiB.
const ECAM_VIRT: u64 = 0x2000_0000;
/// Where an edu's BAR0 page is mapped while it is poked.
const BAR_VIRT: u64 = 0x2100_0000;
/// Slots: the buses' parts of ECAM, a BAR page, the RTC's notification.
const BUS_SLOT: u32 = 40;
const BAR_SLOT: u32 = 44;
const RTC_DONE: u32 = 45;
const FRAME: u32 = 46;
/// Where a frame sent with a request arrives (op 8).
const RECEIVED: u32 = 47;
/// Where the frame of op 6 is mapped.
const FRAME_VIRT: u64 = 0x2200_0000;

fn main() -> u64 {
    let Some(mut buffer) = Buffer::take() else { return 1 };
    let Some(config) = map_config() else { return 1 };
    let Ok(rtc_done) = objects::create_notification(RTC_DONE) else {
        defmt::error!("irq-forger: no notification (the policy must allow one object)");
        return 1;
    };
    if RTC_IRQ.get().bind(rtc_done, 1).is_err() {
        defmt::error!("irq-forger: the RTC's interrupt cannot be bound");
        return 1;
    }
    defmt::info!("irq-forger: ready (configuration space of buses 0-{=u64} mapped)", BUSES - 1);
    let requests = REQUESTS.get();
    buffer.set_window(RECEIVED, 1);
    let mut next = requests.receive(&mut buffer, 0, 0);
    loop {
        let reply = match next {
            Ok(message) => match buffer.decode::<[u64; 4]>(message.len) {
                Ok(request) => match forger_api::operation(request[0]) {
                    Some(bit) if badge::allows(message.badge, bit) => serve(&config, rtc_done, request),
                    Some(_) => [u64::from(ErrorCode::PermissionDenied as u32), 0],
                    None => [u64::from(ErrorCode::NoSuchCall as u32), 0],
                },
                Err(code) => [u64::from(code as u32), 0],
            },
            Err(_) => {
                next = requests.receive(&mut buffer, 0, 0);
                continue;
            }
        };
        // A frame sent with the request is not kept.
        let _ = Cap::<Frame>::at(RECEIVED).delete();
        let len = buffer.encode(&reply).unwrap_or(0);
        buffer.set_window(RECEIVED, 1);
        next = own::REPLY.reply_receive(&mut buffer, len, requests, 0, 0);
    }
}

/// Maps the configuration space of buses `0..BUSES` from the ECAM grant.
fn map_config() -> Option<[Mapping<DeviceMemory>; BUSES as usize]> {
    let map = |bus: u64| {
        let part = ECAM.get().split(BUS_SLOT + bus as u32, bus * BUS_PAGES, BUS_PAGES)?;
        Mapping::map(own::SPACE, part, ECAM_VIRT + bus * BUS_PAGES * PAGE_SIZE, true)
    };
    match (map(0), map(1)) {
        (Ok(first), Ok(second)) => Some([first, second]),
        (Err(code), _) | (_, Err(code)) => {
            defmt::error!("irq-forger: configuration space cannot be mapped: {}", code);
            None
        }
    }
}

fn serve(config: &[Mapping<DeviceMemory>; BUSES as usize], rtc_done: Cap<Notification>, request: [u64; 4]) -> [u64; 2] {
    let [op, a, b, c] = request;
    let result = match Op::from_word(op) {
        Some(Op::ConfigRead) => read(config, a, b, c),
        Some(Op::ConfigWrite) => write(config, a, b, c as u32, (c >> 32) as u8).map(|()| 0),
        Some(Op::Raise) => raise(config, a).map(|()| 0),
        Some(Op::RtcTick) => rtc_tick(rtc_done, a),
        Some(Op::DmaTo) => dma_to(config, rtc_done, a, b),
        Some(Op::FillFrame) => fill_frame(a as u8),
        Some(Op::FrameDiffers) => frame_differs(a as u8),
        Some(Op::WhereIs) => where_is(Cap::at(RECEIVED)),
        None => Err(ErrorCode::NoSuchCall),
    };
    match result {
        Ok(value) => [0, value],
        Err(code) => [u64::from(code as u32), 0],
    }
}

/// The mapping and offset of `offset` in function `id`'s configuration space.
fn locate(
    config: &[Mapping<DeviceMemory>; BUSES as usize],
    id: u64,
    offset: u64,
) -> Option<(&Mapping<DeviceMemory>, u64)> {
    let bus = usize::try_from(id >> 8).ok()?;
    (offset < 4096).then_some(())?;
    Some((config.get(bus)?, (id & 0xff) << 12 | offset))
}

fn read(config: &[Mapping<DeviceMemory>; BUSES as usize], id: u64, offset: u64, width: u64) -> Result<u64, ErrorCode> {
    let (mapping, at) = locate(config, id, offset).ok_or(ErrorCode::InvalidArgument)?;
    let value = match width {
        1 => mapping.read8(at).map(u64::from),
        2 => mapping.read16(at).map(u64::from),
        4 => mapping.read32(at).map(u64::from),
        _ => None,
    };
    value.ok_or(ErrorCode::InvalidArgument)
}

fn write(
    config: &[Mapping<DeviceMemory>; BUSES as usize],
    id: u64,
    offset: u64,
    value: u32,
    width: u8,
) -> Result<(), ErrorCode> {
    let (mapping, at) = locate(config, id, offset).ok_or(ErrorCode::InvalidArgument)?;
    let written = match width {
        1 => mapping.write8(at, value as u8),
        2 => mapping.write16(at, value as u16),
        4 => mapping.write32(at, value),
        _ => None,
    };
    written.ok_or(ErrorCode::InvalidArgument)
}

/// Runs `work` on the first page of function `id`'s BAR0, mapped for
/// the time of the call from device memory this task makes itself.
fn with_bar0<T>(
    config: &[Mapping<DeviceMemory>; BUSES as usize],
    id: u64,
    work: impl FnOnce(&Mapping<DeviceMemory>) -> T,
) -> Result<T, ErrorCode> {
    let bar = read(config, id, 0x10, 4)? & !0xf;
    if bar == 0 {
        return Err(ErrorCode::NotFound);
    }
    let page = CONTROL.get().create_device_memory(BAR_SLOT, bar, 1)?;
    let mapping = match Mapping::map(own::SPACE, page, BAR_VIRT, true) {
        Ok(mapping) => mapping,
        Err(code) => {
            let _ = page.delete();
            return Err(code);
        }
    };
    let done = work(&mapping);
    let _ = mapping.unmap();
    let _ = page.delete();
    Ok(done)
}

/// Makes edu `id` raise its interrupt: BAR0's page, register 0x60.
fn raise(config: &[Mapping<DeviceMemory>; BUSES as usize], id: u64) -> Result<(), ErrorCode> {
    with_bar0(config, id, |bar| bar.write32(reg::INTERRUPT_RAISE, 1))?.ok_or(ErrorCode::InvalidArgument)
}

/// Command register bits: memory decoding and bus mastering.
const MEMORY_AND_MASTER: u32 = 0x6;

/// Makes edu `id` write 256 bytes of its buffer to bus address `to`, with
/// bus mastering turned on through ECAM, and waits for the transfer to
/// end (QEMU runs it 100 ms of virtual time later); polled, no interrupt.
fn dma_to(
    config: &[Mapping<DeviceMemory>; BUSES as usize],
    sleep: Cap<Notification>,
    id: u64,
    to: u64,
) -> Result<u64, ErrorCode> {
    let pci_command = read(config, id, 0x04, 2)? as u32;
    write(config, id, 0x04, pci_command | MEMORY_AND_MASTER, 2)?;
    with_bar0(config, id, |bar| {
        let started = bar
            .write64(reg::DMA_SOURCE, DEVICE_BUFFER)
            .and_then(|()| bar.write64(reg::DMA_DESTINATION, to))
            .and_then(|()| bar.write64(reg::DMA_COUNT, 256))
            .and_then(|()| bar.write64(reg::DMA_COMMAND, command::RUN | command::TO_MEMORY));
        let mut ended = false;
        for _ in 0..200 {
            if started.is_none() || bar.read64(reg::DMA_COMMAND).is_some_and(|state| state & command::RUN == 0) {
                ended = started.is_some();
                break;
            }
            let _ = sleep.wait(0, 10_000);
        }
        u64::from(ended)
    })
}

/// Op 6's frame's physical address, once pinned (0: not yet).
static PINNED: AtomicU64 = AtomicU64::new(0);

/// Allocates (once) a frame, fills it with `byte` and pins it (once);
/// returns its physical address.
fn fill_frame(byte: u8) -> Result<u64, ErrorCode> {
    let frame = match Cap::<Frame>::at(FRAME).info() {
        Ok(_) => Cap::at(FRAME),
        Err(_) => objects::alloc_frame(FRAME, 1)?,
    };
    let mapping = Mapping::map(own::SPACE, frame, FRAME_VIRT, true)?;
    let mut filled = Some(());
    for offset in (0..PAGE_SIZE).step_by(8) {
        filled = filled.and_then(|()| mapping.write64(offset, u64::from_le_bytes([byte; 8])));
    }
    let _ = mapping.unmap();
    filled.ok_or(ErrorCode::InvalidArgument)?;
    match PINNED.load(Ordering::Relaxed) {
        0 => {
            let physical = CONTROL.get().pin(frame, true)?.physical;
            PINNED.store(physical, Ordering::Relaxed);
            Ok(physical)
        }
        physical => Ok(physical),
    }
}

/// How many bytes of op 6's frame differ from `byte`.
fn frame_differs(byte: u8) -> Result<u64, ErrorCode> {
    let mapping = Mapping::map(own::SPACE, Cap::<Frame>::at(FRAME), FRAME_VIRT, false)?;
    let read: Option<u64> =
        (0..PAGE_SIZE).try_fold(0, |count, at| mapping.read8(at).map(|found| count + u64::from(found != byte)));
    let _ = mapping.unmap();
    read.ok_or(ErrorCode::InvalidArgument)
}

/// The physical address of `frame` (a capability a request brought): a
/// pin reveals it and is released at once.
fn where_is(frame: Cap<Frame>) -> Result<u64, ErrorCode> {
    let pin = CONTROL.get().pin(frame, false)?;
    CONTROL.get().unpin(pin.handle)?;
    Ok(pin.physical)
}

/// CMOS RTC register `register`: read, or written with `value`.
fn cmos(register: u8, value: Option<u8>) -> Result<u8, ErrorCode> {
    let rtc = RTC.get();
    rtc.write(0x70, 1, u32::from(register))?;
    match value {
        Some(value) => rtc.write(0x71, 1, u32::from(value)).map(|()| value),
        None => rtc.read(0x71, 1).map(|value| value as u8),
    }
}

/// Turns the RTC's periodic interrupt on until one arrives (or `timeout`
/// µs pass); how long it took.
fn rtc_tick(done: Cap<Notification>, timeout: u64) -> Result<u64, ErrorCode> {
    let status_b = cmos(0x0b, None)?;
    cmos(0x0c, None)?; // reading C lets the RTC fire again
    let _ = done.wait(NONBLOCK, 0);
    cmos(0x0a, Some(0x26))?; // 1024 Hz
    let start = syscall::now();
    cmos(0x0b, Some(status_b | 0x40))?;
    let arrived = done.wait(0, timeout.clamp(1, 5_000_000));
    let took = syscall::now().saturating_sub(start);
    cmos(0x0b, Some(status_b & !0x40))?;
    cmos(0x0c, None)?;
    let _ = RTC_IRQ.get().acknowledge();
    arrived.map(|_| took)
}
