//! Device messages on vectors the CPU uses for exceptions (issue 23).
//!
//! A fixed-delivery message with a vector below 32, or one in NMI delivery
//! mode, arrives through the same IDT entries as the CPU's exceptions. The
//! kernel used to take them as faults of whatever ran (killing it) or of
//! itself (panicking), and a vector whose exception pushes an error code
//! (17, alignment check) left it a frame of the wrong shape; a vector no
//! exception uses (9, 15, 22-27, 31) had no IDT entry at all, so the CPU
//! raised a segment-not-present fault instead; and a fixed-mode message on
//! vector 2 entered the NMI's entry without the NMI blocking a real one
//! has, so an NMI meanwhile reused its stack and hung the machine. Now the
//! local APIC's task priority holds off every message on vectors 0-31, and
//! the kernel logs at the end which wait there; one that came anyway would
//! be counted and ignored. NMIs are counted and ignored. QEMU 7.2 delivers
//! compatibility-format messages even with remapping on, so the forger can
//! make a device send them.

use edu_api as edu;
use forger_api::Op;
use userlib::testkit::prelude::*;

use crate::{
    EDU_SPARE, EDU_SPARE_TASK, SPARE, SavedMsi, ask_edu, ask_pci, copied, forge, forge_read, forge_write, msi_message,
    msi_offset,
};

/// Compatibility-format message address for the boot CPU (APIC id 0).
const LOCAL_APIC: u32 = 0xfee0_0000;
/// Message data: fixed delivery on vector 17 (#AC, which pushes an error
/// code), 5 (#BR, which does not), 15 and 22 (reserved: no exception uses
/// them) and 2 (the NMI's), and NMI delivery (mode 0b100).
const MESSAGES: [(u32, &str); 6] =
    [(17, "vector 17"), (5, "vector 5"), (15, "vector 15"), (22, "vector 22"), (2, "vector 2"), (0b100 << 8, "an NMI")];
/// The reserved vector the idle case's message uses.
const IDLE_VECTOR: u32 = 15;

/// 00:06.0, unheld and quiesced, sends each message while the forger
/// runs; the forger, the kernel and this task carry on.
pub fn device_messages_on_exception_vectors_are_ignored(buffer: &mut Buffer) -> Outcome {
    let saved = check_ok!(SavedMsi::take(buffer, SPARE));
    for (data, what) in MESSAGES {
        check_ok!(saved.forge(buffer, (u64::from(LOCAL_APIC), data)));
        defmt::info!("  00:06.0 sends {=str}", what);
        check_ok!(forge(buffer, Op::Raise, SPARE.requester_id().into(), 0, 0));
        check_eq!(forge_read(buffer, SPARE, 0x00, 2), Ok(0x1234), "the forger still serves");
    }
    check_ok!(saved.restore(buffer));
    let status = forge_read(buffer, SPARE, 0x04, 2);
    check!(status.is_ok_and(|status| status & 0x4 == saved.command & 0x4), "00:06.0 back as it was");
    Ok(())
}

/// 00:06.0, driven by the trusted driver edu-spare, finishes a DMA with a
/// message on a reserved vector while every task waits, so the CPU idles.
/// Before every vector had a gate this was a segment-not-present fault in
/// the kernel, which panicked; now the task priority holds the message off
/// (and the kernel would count it). edu-spare's own interrupt never comes,
/// so its transfer times out; with its message back it copies.
pub fn a_device_message_on_a_reserved_vector_while_the_cpu_idles_is_ignored(buffer: &mut Buffer) -> Outcome {
    let bind = pci_api::Request::Bind { device: SPARE, driver: EDU_SPARE_TASK };
    check_eq!(check_ok!(ask_pci(buffer, &bind)), pci_api::Reply::Done);
    let adopted = check_ok!(ask_edu(EDU_SPARE.get(), buffer, &edu::Request::Adopt { device: SPARE }));
    check!(matches!(adopted, edu::Reply::Adopted { .. }), "edu-spare drives 00:06.0");
    let read = |buffer: &mut Buffer, offset: u16, width: u8| forge_read(buffer, SPARE, offset, width);
    let msi = check_ok!(msi_offset(|offset, width| read(buffer, offset, width)));
    let own = check_ok!(msi_message(|offset, width| read(buffer, offset, width), msi));
    for (offset, width, value) in [(msi + 4, 4, LOCAL_APIC), (msi + 8, 4, 0), (msi + 12, 2, IDLE_VECTOR)] {
        check_ok!(forge_write(buffer, SPARE, offset, width, value));
    }
    defmt::info!("  00:06.0 finishes a DMA with a message on vector {=u32} while the CPU idles", IDLE_VECTOR);
    let reply = check_ok!(ask_edu(EDU_SPARE.get(), buffer, &edu::Request::Copy { len: 64, seed: 7 }));
    check_eq!(testkit::refusal(&reply), Some(ErrorCode::TimedOut), "the completion went to the reserved vector");
    for (offset, width, value) in [(msi + 4, 4, own.0 as u32), (msi + 8, 4, (own.0 >> 32) as u32), (msi + 12, 2, own.1)]
    {
        check_ok!(forge_write(buffer, SPARE, offset, width, value));
    }
    let reply = check_ok!(ask_edu(EDU_SPARE.get(), buffer, &edu::Request::Copy { len: 64, seed: 8 }));
    check!(copied(&reply), "with its own message back, edu-spare copies");
    check_eq!(check_ok!(ask_edu(EDU_SPARE.get(), buffer, &edu::Request::Release)), edu::Reply::Done);
    check_eq!(check_ok!(ask_pci(buffer, &pci_api::Request::Unbind { device: SPARE })), pci_api::Reply::Done);
    Ok(())
}
