//! Test task for interrupt remapping, run in QEMU on machines `iommu` and `iommu-nointremap`.
//!
//! The policy (`qemu/policies/intremap.toml`) binds edu 00:03.0 to the
//! trusted driver `edu-dma`, lets `edu-user` own 00:04.0's group and this
//! task own the groups of 00:06.0, 01:01.0 (behind the PCIe-to-PCI
//! bridge) and the e1000e 00:07.0 (MSI-X), and gives the trusted helper `irq-forger` ECAM and the RTC:
//! it makes devices send messages the PCI server never programmed. The
//! parameter `expect-remapping` says which machine this is: with
//! remapping every device interrupt must go through an entry only that
//! device may use; without, user claims must be refused.
#![no_std]
#![no_main]

mod exception_vectors;
mod msix;

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use ::edu::reg as edu_reg;
use capabilities::abi::ipc::NONBLOCK;
use edu_api as edu;
use forger_api::Op;
use iommu_api as iommu;
use iommu_api::client::group;
use iommu_api::{InterruptEntry, InterruptSource};
use userlib::testkit::prelude::*;

userlib::cap_slot!(IOMMU: Endpoint = "iommu");
userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::cap_slot!(EDU_DMA: Endpoint = "edu-dma");
userlib::cap_slot!(EDU_SPARE: Endpoint = "edu-spare");
userlib::cap_slot!(EDU_USER: Endpoint = "edu-user");
userlib::cap_slot!(FORGER: Endpoint = "forger");
userlib::entry!(main);

/// Task indices, in the policy's declaration order.
const EDU_DMA_TASK: u16 = 2;
const EDU_SPARE_TASK: u16 = 3;
const EDU_USER_TASK: u16 = 4;
const THIS_TASK: u16 = 8;

/// The machine's devices.
const TRUSTED: Bdf = Bdf::at(0, 3, 0);
const USER: Bdf = Bdf::at(0, 4, 0);
const BEHIND_A: Bdf = Bdf::at(1, 1, 0);
const SPARE: Bdf = Bdf::at(0, 6, 0);
/// The IO APIC's source id (DMAR device scope: bus 0xff, 00.0).
const IOAPIC: Bdf = Bdf::from_requester_id(0xff00);

/// Slots: a device grant's window (four), a group capability, a
/// notification to sleep on and one for interrupts.
const WINDOW: u32 = 64;
const GROUP: u32 = 70;
const SLEEP: u32 = 72;
const DONE: u32 = 73;
/// Where a held device's BAR0 is mapped.
const BAR_VIRT: u64 = 0x2000_0000;
/// How long an interrupt that must not come is waited for.
const SILENCE_US: u64 = 200_000;
/// How long one that must come may take.
const ARRIVAL_US: u64 = 1_000_000;
/// Raises timed for the latency figure.
const TIMED_RAISES: u64 = 20;

/// Entries in use and refusals when the first case ran.
static START_IN_USE: AtomicU32 = AtomicU32::new(0);
static START_REFUSED: AtomicU64 = AtomicU64::new(0);
/// Refusals cases asked for on purpose (a quota reached).
static MEANT_REFUSALS: AtomicU64 = AtomicU64::new(0);

fn main() -> u64 {
    if objects::create_notification(SLEEP).is_err() || objects::create_notification(DONE).is_err() {
        return testkit::setup_failed("no notifications (the policy must allow two objects)");
    }
    if boot::parameter("expect-remapping", 1) != 0 {
        testkit::run(userlib::cases![
            remapping_is_on_and_the_io_apic_line_goes_through_an_entry,
            trusted_and_user_dma_complete_through_remapped_entries,
            a_user_tasks_device_interrupts_through_its_own_entry,
            a_holder_cannot_write_its_msi_capability,
            a_revoked_entry_no_longer_interrupts_its_old_owner,
            an_entry_used_with_another_devices_source_id_is_not_delivered,
            exception_vectors::device_messages_on_exception_vectors_are_ignored,
            exception_vectors::a_device_message_on_a_reserved_vector_while_the_cpu_idles_is_ignored,
            msix::a_holders_msix_vectors_interrupt_through_remapped_entries,
            the_entry_count_returns_to_its_start
        ])
    } else {
        testkit::run(userlib::cases![
            remapping_is_off_and_said_so,
            user_claims_are_refused_with_the_reason,
            trusted_dma_completes_with_the_kernels_message
        ])
    }
}

// ----- talking to the servers -----

fn ask_iommu(
    endpoint: Cap<Endpoint>,
    buffer: &mut Buffer,
    request: &iommu::Request,
) -> Result<iommu::Reply, ErrorCode> {
    endpoint.ask(buffer, request, &[], 0)
}

fn ask_pci(buffer: &mut Buffer, request: &pci_api::Request) -> Result<pci_api::Reply, ErrorCode> {
    PCI.get().ask(buffer, request, &[], 0)
}

fn ask_edu(endpoint: Cap<Endpoint>, buffer: &mut Buffer, request: &edu::Request) -> Result<edu::Reply, ErrorCode> {
    endpoint.ask(buffer, request, &[], 0)
}

/// One request to the forger; its value.
fn forge(buffer: &mut Buffer, op: Op, a: u64, b: u64, c: u64) -> Result<u64, ErrorCode> {
    forger_api::client::call(FORGER.get(), buffer, op, [a, b, c], &[])
}

/// Reads `width` bytes of `device`'s configuration space behind the PCI server's back.
fn forge_read(buffer: &mut Buffer, device: Bdf, offset: u16, width: u8) -> Result<u32, ErrorCode> {
    forge(buffer, Op::ConfigRead, device.requester_id().into(), offset.into(), width.into()).map(|value| value as u32)
}

/// Writes them.
fn forge_write(buffer: &mut Buffer, device: Bdf, offset: u16, width: u8, value: u32) -> Result<(), ErrorCode> {
    let word = u64::from(width) << 32 | u64::from(value);
    forge(buffer, Op::ConfigWrite, device.requester_id().into(), offset.into(), word).map(|_| ())
}

/// The IOMMU server's interrupt report: remapping on, entries in use, the
/// table's size, refusals, and `device`'s entries.
struct Report {
    remapping: bool,
    in_use: u32,
    capacity: u32,
    refused: u64,
    entries: heapless::Vec<InterruptEntry, { iommu::INTERRUPT_ENTRIES_PER_REPLY }>,
}

fn interrupts(buffer: &mut Buffer, device: Option<Bdf>) -> Result<Report, ErrorCode> {
    match ask_iommu(IOMMU.get(), buffer, &iommu::Request::Interrupts { device })? {
        iommu::Reply::Interrupts { remapping, in_use, capacity, refused, entries } => {
            Ok(Report { remapping, in_use, capacity, refused, entries })
        }
        reply => Err(testkit::refusal(&reply).unwrap_or(ErrorCode::Malformed)),
    }
}

/// Claims `device`'s group; the capability lands in [`GROUP`].
fn claim(buffer: &mut Buffer, device: Bdf) -> Result<u16, ErrorCode> {
    group::claim(IOMMU.get(), buffer, device, GROUP).map_err(Refused::logged)
}

/// Releases the group capability in [`GROUP`].
fn release_group(buffer: &mut Buffer) -> Result<(), ErrorCode> {
    group::release(Cap::at(GROUP), buffer).map_err(Refused::logged)
}

/// Waits (up to two seconds) until `device`'s group is unowned again.
fn wait_unowned(buffer: &mut Buffer, device: Bdf) -> bool {
    group::wait_unowned(IOMMU.get(), buffer, device, Cap::at(SLEEP), 2_000_000).is_ok()
}

/// Acquires `device`, whose group this task owns: BAR0 and the interrupt
/// (bound to [`DONE`]) in [`WINDOW`] and the slot after it.
fn acquire(buffer: &mut Buffer, device: Bdf) -> Result<(Cap<DeviceMemory>, Cap<Interrupt>), ErrorCode> {
    let granted = pci_api::client::acquire(PCI.get(), buffer, device, WINDOW).map_err(|refused| {
        defmt::error!("  acquire refused ({}): {=str}", refused.code, refused.reason.as_str());
        refused.code
    })?;
    let (Some(bar), Some(interrupt)) = (granted.bar(0), granted.interrupt()) else {
        return Err(ErrorCode::NotFound);
    };
    // An MSI is a memory write by the device: it needs bus mastering,
    // which the grant leaves off.
    pci_api::client::enable_bus_mastering(PCI.get(), buffer, device).map_err(|refused| refused.code)?;
    let interrupt = Cap::<Interrupt>::at(interrupt);
    interrupt.bind(Cap::at(DONE), 1)?;
    Ok((Cap::at(bar), interrupt))
}

/// The offset of `device`'s MSI capability, found through `read`.
fn msi_offset(mut read: impl FnMut(u16, u8) -> Result<u32, ErrorCode>) -> Result<u16, ErrorCode> {
    let mut at = read(0x34, 1)? as u16 & 0xfc;
    for _ in 0..48 {
        if at < 0x40 {
            break;
        }
        let header = read(at, 2)?;
        if header & 0xff == 0x05 {
            return Ok(at);
        }
        at = (header >> 8) as u16 & 0xfc;
    }
    Err(ErrorCode::NotFound)
}

/// A 64-bit MSI capability's message (edu's layout): address, data.
fn msi_message(mut read: impl FnMut(u16, u8) -> Result<u32, ErrorCode>, msi: u16) -> Result<(u64, u32), ErrorCode> {
    let low = read(msi + 4, 4)?;
    let high = read(msi + 8, 4)?;
    let data = read(msi + 12, 2)?;
    Ok((u64::from(high) << 32 | u64::from(low), data))
}

/// What the forger overwrites in a device's configuration space to make
/// it send a message of the test's choosing, read before so that it can
/// be written back: the command register, MSI control and MSI message.
struct SavedMsi {
    device: Bdf,
    msi: u16,
    command: u32,
    control: u32,
    message: (u64, u32),
}

impl SavedMsi {
    /// Reads `device`'s command register and MSI capability.
    fn take(buffer: &mut Buffer, device: Bdf) -> Result<Self, ErrorCode> {
        let msi = msi_offset(|offset, width| forge_read(buffer, device, offset, width))?;
        let command = forge_read(buffer, device, 0x04, 2)?;
        let control = forge_read(buffer, device, msi + 2, 2)?;
        let message = msi_message(|offset, width| forge_read(buffer, device, offset, width), msi)?;
        Ok(Self { device, msi, command, control, message })
    }

    /// Programs `(address, data)` as the device's MSI message, enables
    /// MSI and turns memory decoding and bus mastering on.
    fn forge(&self, buffer: &mut Buffer, (address, data): (u64, u32)) -> Result<(), ErrorCode> {
        let msi = self.msi;
        let forged = [
            (msi + 4, 4, address as u32),
            (msi + 8, 4, (address >> 32) as u32),
            (msi + 12, 2, data),
            (msi + 2, 2, self.control | 1),
            (0x04, 2, self.command | 0x6),
        ];
        forged.into_iter().try_for_each(|(offset, width, value)| forge_write(buffer, self.device, offset, width, value))
    }

    /// Writes back what [`SavedMsi::take`] read.
    fn restore(&self, buffer: &mut Buffer) -> Result<(), ErrorCode> {
        let (msi, (address, data)) = (self.msi, self.message);
        let restored = [
            (0x04, 2, self.command),
            (msi + 2, 2, self.control),
            (msi + 4, 4, address as u32),
            (msi + 8, 4, (address >> 32) as u32),
            (msi + 12, 2, data),
        ];
        restored
            .into_iter()
            .try_for_each(|(offset, width, value)| forge_write(buffer, self.device, offset, width, value))
    }
}

/// The entry a remappable-format message names, `None` in compatibility format.
fn handle_of((address, data): (u64, u32)) -> Option<u16> {
    if address & !0xf_ffff != 0xfee0_0000 || address & 1 << 4 == 0 {
        return None;
    }
    let handle = ((address >> 5) & 0x7fff) as u16 | (((address >> 2) & 1) as u16) << 15;
    Some(if address & 1 << 3 != 0 { handle.wrapping_add(data as u16) } else { handle })
}

/// Clears stale bits of [`DONE`].
fn drain_done() {
    let _ = Cap::<Notification>::at(DONE).wait(NONBLOCK, 0);
}

/// Raises the interrupt of the edu whose BAR0 is mapped, waits for it and
/// acknowledges it; the microseconds it took.
fn raise_and_wait(registers: &Mapping<DeviceMemory>, interrupt: Cap<Interrupt>) -> Result<u64, ErrorCode> {
    drain_done();
    let start = syscall::now();
    registers.write32(edu_reg::INTERRUPT_RAISE, 1).ok_or(ErrorCode::InvalidArgument)?;
    Cap::<Notification>::at(DONE).wait(0, ARRIVAL_US)?;
    let took = syscall::now().saturating_sub(start);
    acknowledge(registers, interrupt)?;
    Ok(took)
}

/// Acknowledges the edu's interrupt status and the kernel's interrupt.
fn acknowledge(registers: &Mapping<DeviceMemory>, interrupt: Cap<Interrupt>) -> Result<(), ErrorCode> {
    let status = registers.read32(edu_reg::INTERRUPT_STATUS).ok_or(ErrorCode::InvalidArgument)?;
    registers.write32(edu_reg::INTERRUPT_ACK, status).ok_or(ErrorCode::InvalidArgument)?;
    interrupt.acknowledge().map(|_| ())
}

fn copied(reply: &edu::Reply) -> bool {
    if testkit::refusal(reply).is_some() {
        return false;
    }
    matches!(reply, edu::Reply::Copied { matched: true, .. })
}

// ----- with remapping -----

fn remapping_is_on_and_the_io_apic_line_goes_through_an_entry(buffer: &mut Buffer) -> Outcome {
    let report = check_ok!(interrupts(buffer, None));
    check!(report.remapping, "the unit remaps interrupts");
    check_eq!(report.capacity, 255);
    START_IN_USE.store(report.in_use, Ordering::Relaxed);
    START_REFUSED.store(report.refused, Ordering::Relaxed);
    defmt::info!("  {=u32} interrupt entries in use at the start, {=u64} refusals", report.in_use, report.refused);
    let ioapic = check_ok!(interrupts(buffer, Some(IOAPIC)));
    let kernel_entry = ioapic.entries.iter().find(|entry| entry.holder.is_none());
    check!(
        kernel_entry.is_some_and(|e| e.source == InterruptSource::Exact(IOAPIC)),
        "the RTC's line, checked for ff:00.0"
    );
    let took = check_ok!(forge(buffer, Op::RtcTick, ARRIVAL_US, 0, 0));
    defmt::info!("  the RTC's IO APIC interrupt arrived through its entry after {=u64} us", took);
    Ok(())
}

fn trusted_and_user_dma_complete_through_remapped_entries(buffer: &mut Buffer) -> Outcome {
    let trusted = check_ok!(interrupts(buffer, Some(TRUSTED)));
    check_eq!(trusted.entries.len(), 1);
    let entry = trusted.entries[0];
    check_eq!(entry.holder, Some(EDU_DMA_TASK));
    check_eq!(entry.source, InterruptSource::Exact(TRUSTED));
    let msi = check_ok!(msi_offset(|offset, width| forge_read(buffer, TRUSTED, offset, width)));
    let message = check_ok!(msi_message(|offset, width| forge_read(buffer, TRUSTED, offset, width), msi));
    check_eq!(handle_of(message), Some(entry.entry), "00:03.0's MSI names its entry, in remappable format");
    let reply = check_ok!(ask_edu(EDU_DMA.get(), buffer, &edu::Request::Copy { len: 512, seed: 3 }));
    check!(copied(&reply), "the trusted driver's completion interrupts arrive");
    let adopted = check_ok!(ask_edu(EDU_USER.get(), buffer, &edu::Request::Adopt { device: USER }));
    check!(matches!(adopted, edu::Reply::Adopted { .. }), "edu-user owns its group");
    let user = check_ok!(interrupts(buffer, Some(USER)));
    check!(user.entries.iter().any(|e| e.holder == Some(EDU_USER_TASK) && e.source == InterruptSource::Exact(USER)));
    let reply = check_ok!(ask_edu(EDU_USER.get(), buffer, &edu::Request::Copy { len: 512, seed: 4 }));
    check!(copied(&reply), "the user task's completion interrupts arrive");
    Ok(())
}

fn a_user_tasks_device_interrupts_through_its_own_entry(buffer: &mut Buffer) -> Outcome {
    check_ok!(claim(buffer, SPARE));
    let (bar, interrupt) = check_ok!(acquire(buffer, SPARE));
    let report = check_ok!(interrupts(buffer, Some(SPARE)));
    check_eq!(report.entries.len(), 1);
    let entry = report.entries[0];
    check_eq!((entry.holder, entry.source), (Some(THIS_TASK), InterruptSource::Exact(SPARE)));
    let read = |buffer: &mut Buffer, offset: u16, width: u8| {
        pci_api::client::config_read(PCI.get(), buffer, SPARE, offset, width).map_err(|refused| refused.code)
    };
    let msi = check_ok!(msi_offset(|offset, width| read(buffer, offset, width)));
    let message = check_ok!(msi_message(|offset, width| read(buffer, offset, width), msi));
    check_eq!(handle_of(message), Some(entry.entry), "the MSI the holder reads names its entry");
    let registers = check_ok!(Mapping::map(own::SPACE, bar, BAR_VIRT, true));
    let (mut least, mut most, mut total) = (u64::MAX, 0, 0);
    for _ in 0..TIMED_RAISES {
        let took = check_ok!(raise_and_wait(&registers, interrupt));
        least = least.min(took);
        most = most.max(took);
        total += took;
    }
    defmt::info!(
        "  MSI through a remapped entry, raise to wake-up: min {=u64} us, mean {=u64} us, max {=u64} us ({=u64} raises)",
        least,
        total / TIMED_RAISES,
        most,
        TIMED_RAISES
    );
    check_ok!(registers.unmap());
    // The device stays held for the next two cases.
    Ok(())
}

fn a_holder_cannot_write_its_msi_capability(buffer: &mut Buffer) -> Outcome {
    let read = |buffer: &mut Buffer, offset: u16, width: u8| {
        pci_api::client::config_read(PCI.get(), buffer, SPARE, offset, width).map_err(|refused| refused.code)
    };
    let msi = check_ok!(msi_offset(|offset, width| read(buffer, offset, width)));
    let before = check_ok!(msi_message(|offset, width| read(buffer, offset, width), msi));
    // Address low and high, data, control, and the header byte.
    for (offset, width, value) in [(4, 4, 0xfee0_0000), (8, 4, 0), (12, 2, 0x31), (2, 2, 0), (0, 1, 0)] {
        let write = pci_api::Request::ConfigWrite { device: SPARE, offset: msi + offset, width, value };
        let reply = check_ok!(ask_pci(buffer, &write));
        check_eq!(testkit::refusal(&reply), Some(ErrorCode::PermissionDenied), "the PCI server refuses it");
    }
    let after = check_ok!(msi_message(|offset, width| read(buffer, offset, width), msi));
    check_eq!(after, before, "the message is unchanged");
    Ok(())
}

fn a_revoked_entry_no_longer_interrupts_its_old_owner(buffer: &mut Buffer) -> Outcome {
    let read = |buffer: &mut Buffer, offset: u16, width: u8| forge_read(buffer, SPARE, offset, width);
    let msi = check_ok!(msi_offset(|offset, width| read(buffer, offset, width)));
    let old = check_ok!(msi_message(|offset, width| read(buffer, offset, width), msi));
    let old_report = check_ok!(interrupts(buffer, Some(SPARE)));
    check_eq!(old_report.entries.len(), 1);
    let old_entry = old_report.entries[0];
    // Hand-over: this task gives the device and its group back.
    check!(pci_api::client::release(PCI.get(), buffer, SPARE).is_ok());
    check_ok!(release_group(buffer));
    check!(wait_unowned(buffer, SPARE), "quiesced and unowned");
    check!(check_ok!(interrupts(buffer, Some(SPARE))).entries.is_empty(), "its entry went with the group");
    // A trusted driver takes the device and gets an entry of its own.
    let bind = pci_api::Request::Bind { device: SPARE, driver: EDU_SPARE_TASK };
    check_eq!(check_ok!(ask_pci(buffer, &bind)), pci_api::Reply::Done);
    let adopted = check_ok!(ask_edu(EDU_SPARE.get(), buffer, &edu::Request::Adopt { device: SPARE }));
    check!(matches!(adopted, edu::Reply::Adopted { .. }));
    let new_report = check_ok!(interrupts(buffer, Some(SPARE)));
    check_eq!(new_report.entries.len(), 1);
    let new_entry = new_report.entries[0];
    check_eq!(new_entry.holder, Some(EDU_SPARE_TASK));
    check!(new_entry.entry != old_entry.entry, "a new entry, not the old one");
    defmt::info!(
        "  old entry {=u16} (vector {=u8:#x}), new entry {=u16} (vector {=u8:#x}{=str})",
        old_entry.entry,
        old_entry.vector,
        new_entry.entry,
        new_entry.vector,
        if new_entry.vector == old_entry.vector { ", the old owner's vector reused" } else { "" }
    );
    let new = check_ok!(msi_message(|offset, width| read(buffer, offset, width), msi));
    check_eq!(handle_of(new), Some(new_entry.entry));
    // The device sends its old message again.
    for (offset, width, value) in [(4, 4, old.0 as u32), (8, 4, (old.0 >> 32) as u32), (12, 2, old.1)] {
        check_ok!(forge_write(buffer, SPARE, msi + offset, width, value));
    }
    drain_done();
    check_ok!(forge(buffer, Op::Raise, SPARE.requester_id().into(), 0, 0));
    let waited = Cap::<Notification>::at(DONE).wait(0, SILENCE_US);
    check_eq!(waited, Err(ErrorCode::TimedOut), "the old owner is not interrupted");
    // Its own message back: the new holder's DMA completes, which it would
    // not if a stray interrupt had been delivered to it (its first wait
    // would end before the transfer).
    for (offset, width, value) in [(4, 4, new.0 as u32), (8, 4, (new.0 >> 32) as u32), (12, 2, new.1)] {
        check_ok!(forge_write(buffer, SPARE, msi + offset, width, value));
    }
    let reply = check_ok!(ask_edu(EDU_SPARE.get(), buffer, &edu::Request::Copy { len: 256, seed: 5 }));
    check!(copied(&reply), "the new holder saw no stray interrupt and gets its own");
    check_eq!(check_ok!(ask_edu(EDU_SPARE.get(), buffer, &edu::Request::Release)), edu::Reply::Done);
    check_eq!(check_ok!(ask_pci(buffer, &pci_api::Request::Unbind { device: SPARE })), pci_api::Reply::Done);
    Ok(())
}

fn an_entry_used_with_another_devices_source_id_is_not_delivered(buffer: &mut Buffer) -> Outcome {
    check_ok!(claim(buffer, BEHIND_A));
    let (bar, interrupt) = check_ok!(acquire(buffer, BEHIND_A));
    let report = check_ok!(interrupts(buffer, Some(BEHIND_A)));
    let entry = report.entries.iter().find(|e| e.holder == Some(THIS_TASK)).copied();
    check_eq!(entry.map(|e| e.source), Some(InterruptSource::Buses { first: 1, last: 1 }), "behind the bridge");
    let registers = check_ok!(Mapping::map(own::SPACE, bar, BAR_VIRT, true));
    check_ok!(raise_and_wait(&registers, interrupt));
    let read_b = |buffer: &mut Buffer, offset: u16, width: u8| forge_read(buffer, BEHIND_A, offset, width);
    let msi_b = check_ok!(msi_offset(|offset, width| read_b(buffer, offset, width)));
    let message_b = check_ok!(msi_message(|offset, width| read_b(buffer, offset, width), msi_b));
    // 00:06.0, unheld and quiesced, is made to send 01:01.0's message.
    let saved = check_ok!(SavedMsi::take(buffer, SPARE));
    check_ok!(saved.forge(buffer, message_b));
    drain_done();
    check_ok!(forge(buffer, Op::Raise, SPARE.requester_id().into(), 0, 0));
    let waited = Cap::<Notification>::at(DONE).wait(0, SILENCE_US);
    check_eq!(waited, Err(ErrorCode::TimedOut), "01:01.0's entry does not deliver 00:06.0's message");
    // The same forged raise, from 01:01.0 itself, is delivered.
    drain_done();
    check_ok!(forge(buffer, Op::Raise, BEHIND_A.requester_id().into(), 0, 0));
    check_ok!(Cap::<Notification>::at(DONE).wait(0, ARRIVAL_US));
    check_ok!(acknowledge(&registers, interrupt));
    check_ok!(saved.restore(buffer));
    let status = check_ok!(forge_read(buffer, SPARE, 0x04, 2));
    check_eq!(status & 0x4, saved.command & 0x4, "00:06.0 back as it was");
    check_ok!(registers.unmap());
    check!(pci_api::client::release(PCI.get(), buffer, BEHIND_A).is_ok());
    check_ok!(release_group(buffer));
    check!(wait_unowned(buffer, BEHIND_A));
    Ok(())
}

fn the_entry_count_returns_to_its_start(buffer: &mut Buffer) -> Outcome {
    // edu-user still holds its device (and its entry) from the second case.
    let user = check_ok!(ask_edu(EDU_USER.get(), buffer, &edu::Request::Release));
    check_eq!(user, edu::Reply::Done);
    check!(wait_unowned(buffer, USER));
    let report = check_ok!(interrupts(buffer, None));
    check_eq!(report.in_use, START_IN_USE.load(Ordering::Relaxed), "every entry handed out came back");
    let meant = MEANT_REFUSALS.load(Ordering::Relaxed);
    check_eq!(report.refused, START_REFUSED.load(Ordering::Relaxed) + meant, "nothing else was refused");
    Ok(())
}

// ----- without remapping -----

fn remapping_is_off_and_said_so(buffer: &mut Buffer) -> Outcome {
    let report = check_ok!(interrupts(buffer, None));
    check!(!report.remapping);
    check_eq!((report.in_use, report.capacity), (0, 0));
    Ok(())
}

fn user_claims_are_refused_with_the_reason(buffer: &mut Buffer) -> Outcome {
    let request = iommu::Request::ClaimGroup { device: SPARE };
    let reply = check_ok!(IOMMU.get().ask::<_, iommu::Reply>(buffer, &request, &[own::TASK.slot()], GROUP));
    let refusal = capabilities::protocol::Refusal::refusal(&reply);
    check_eq!(refusal.map(|(code, _)| code), Some(ErrorCode::PermissionDenied));
    check!(refusal.is_some_and(|(_, reason)| reason.contains("no interrupt remapping")), "says why");
    let adopted = check_ok!(ask_edu(EDU_USER.get(), buffer, &edu::Request::Adopt { device: USER }));
    check_eq!(testkit::refusal(&adopted), Some(ErrorCode::PermissionDenied), "edu-user cannot own its group either");
    let report = check_ok!(interrupts(buffer, None));
    check_eq!(report.refused, 2, "both counted");
    Ok(())
}

fn trusted_dma_completes_with_the_kernels_message(buffer: &mut Buffer) -> Outcome {
    let reply = check_ok!(ask_edu(EDU_DMA.get(), buffer, &edu::Request::Copy { len: 512, seed: 6 }));
    check!(copied(&reply), "trusted drivers need no remapping");
    let msi = check_ok!(msi_offset(|offset, width| forge_read(buffer, TRUSTED, offset, width)));
    let message = check_ok!(msi_message(|offset, width| forge_read(buffer, TRUSTED, offset, width), msi));
    check_eq!(handle_of(message), None, "compatibility format: nothing to remap it");
    check_eq!(message.0 & !0xff000, 0xfee0_0000);
    check_ok!(forge(buffer, Op::RtcTick, ARRIVAL_US, 0, 0));
    Ok(())
}
