//! Test task: a device that DMAs before the IOMMU server has the topology is blocked.
//!
//! The policy (`qemu/policies/early-dma.toml`) has no PCI server, so the
//! IOMMU server waits for a topology that never comes: every requester
//! must be blocked all the while (issue 15, hole 3). The trusted helper
//! `irq-forger` turns bus mastering on for edu 00:03.0 through ECAM and
//! makes it write its buffer to a frame whose bytes this task then reads.
#![no_std]
#![no_main]

use forger_api::Op;
use userlib::testkit::prelude::*;

userlib::cap_slot!(FORGER: Endpoint = "forger");
userlib::entry!(main);

/// The edu the forger drives.
const EDU: Bdf = Bdf::at(0, 3, 0);
/// What the target frame is filled with.
const CANARY: u8 = 0x5a;

fn main() -> u64 {
    testkit::run(userlib::cases![a_dma_before_the_topology_is_blocked_and_its_target_untouched])
}

fn forge(buffer: &mut Buffer, op: Op, a: u64, b: u64) -> Result<u64, ErrorCode> {
    forger_api::client::call(FORGER.get(), buffer, op, [a, b, 0], &[])
}

fn a_dma_before_the_topology_is_blocked_and_its_target_untouched(buffer: &mut Buffer) -> Outcome {
    let target = check_ok!(forge(buffer, Op::FillFrame, u64::from(CANARY), 0));
    defmt::info!("  target frame at physical {=u64:#x}, every byte {=u8:#x}", target, CANARY);
    check_eq!(check_ok!(forge(buffer, Op::DmaTo, u64::from(EDU.requester_id()), target)), 1, "the transfer ended");
    let changed = check_ok!(forge(buffer, Op::FrameDiffers, u64::from(CANARY), 0));
    check_eq!(changed, 0, "every byte of the frame is as it was");
    defmt::info!("  the device's write to {=u64:#x} did not land", target);
    Ok(())
}
