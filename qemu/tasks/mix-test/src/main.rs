//! Test task for a policy whose device rules mix a group on the machine that boots, run in QEMU on machine `bridge`.
//!
//! The policy (`qemu/policies/mixed-at-run-time.toml`) binds the trusted
//! driver `edu-dma` with DMA to 01:02.0 and lets this task own 01:01.0;
//! on machine `bridge` both sit behind one PCIe-to-PCI bridge, in one
//! group. `cargo xtask policy check --machine bridge` rejects that; this
//! scenario boots it anyway, as if the declared machine had differed from
//! the one that booted, and the servers must refuse the mix themselves.
#![no_std]
#![no_main]

use edu_api as edu;
use iommu_api::{OwnerReport, Reply, Request};
use userlib::testkit::prelude::*;

userlib::cap_slot!(IOMMU: Endpoint = "iommu");
userlib::cap_slot!(EDU_DMA: Endpoint = "edu-dma");
userlib::cap_slot!(ACCOUNTING: Control = "accounting");
userlib::entry!(main);

const MINE: Bdf = Bdf::at(1, 1, 0);
/// Where a group capability would land.
const GROUP: u32 = 64;

fn main() -> u64 {
    testkit::run(userlib::cases![the_claim_beside_a_dma_driver_is_refused_as_busy, the_trusted_driver_keeps_working])
}

fn the_claim_beside_a_dma_driver_is_refused_as_busy(buffer: &mut Buffer) -> Outcome {
    let owner = match check_ok!(
        IOMMU
            .get()
            .call_with(buffer, &Request::Owner { device: MINE })
            .and_then(|message| buffer.decode::<Reply>(message.len))
    ) {
        Reply::Owner { owner, .. } => owner,
        _ => OwnerReport::Unowned,
    };
    check_eq!(owner, OwnerReport::Kernel { drivers: 1 }, "edu-dma claimed the group at probe");
    let start = check_ok!(ACCOUNTING.get().figures());
    buffer.set_send_caps(&[own::TASK.slot()]);
    buffer.set_window(GROUP, 1);
    let sent = IOMMU.get().call_with(buffer, &Request::ClaimGroup { device: MINE });
    buffer.set_send_caps(&[]);
    buffer.set_window(0, 0);
    let reply = check_ok!(sent.and_then(|message| buffer.decode::<Reply>(message.len)));
    let Reply::Refused { code, reason } = reply else {
        check!(false, "the claim was refused");
        return Ok(());
    };
    defmt::info!("  refused ({}): {=str}", code, reason.as_str());
    check_eq!(code, ErrorCode::Busy);
    check!(reason.contains("edu-dma on 01:02.0"), "naming the companion and its driver");
    check!(reason.contains("alias through PCIe-to-PCI bridge 00:04.0"), "and why they share a group");
    // The server let go of the task capability the claim presented.
    check!(testkit::figures_are(ACCOUNTING.get(), &start), "a refused claim leaves nothing behind anywhere");
    Ok(())
}

fn the_trusted_driver_keeps_working(buffer: &mut Buffer) -> Outcome {
    let reply = check_ok!(
        EDU_DMA
            .get()
            .call_with(buffer, &edu::Request::Copy { len: 512, seed: 8 })
            .and_then(|message| buffer.decode::<edu::Reply>(message.len))
    );
    check!(matches!(reply, edu::Reply::Copied { matched: true, .. }), "its DMA works");
    check!(iommu_api::client::stats(IOMMU.get(), buffer).is_ok(), "the IOMMU server keeps serving");
    Ok(())
}
