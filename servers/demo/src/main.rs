//! The default system's first task: shows DMA ownership by capability, step by step, in the log.
//!
//! Every step is a request to a server, as any task would make it, and
//! each line says what happened and why. The trusted driver `edu-dma`
//! drives 00:03.0 through its group's default domain; `edu-user` owns
//! 00:04.0's group and drives that device itself; `edu-spare` is a trusted
//! driver this task binds at run time. The story ends by checking every
//! server still answers. Each step is a test case of the kit, so the
//! default system is also a scenario of `cargo xtask test`, and the
//! task's exit status (failed steps) is the system's.
#![no_std]
#![no_main]

use edu_api as edu;
use iommu_api as iommu;
use iommu_api::OwnerReport;
use userlib::testkit::prelude::*;

userlib::cap_slot!(IOMMU: Endpoint = "iommu");
userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::cap_slot!(EDU_DMA: Endpoint = "edu-dma");
userlib::cap_slot!(EDU_SPARE: Endpoint = "edu-spare");
userlib::cap_slot!(EDU_USER: Endpoint = "edu-user");
userlib::entry!(main);

/// `edu-spare`'s task index (the policy's declaration order).
const EDU_SPARE_TASK: u16 = 3;
const TRUSTED: Bdf = Bdf::at(0, 3, 0);
const USER: Bdf = Bdf::at(0, 4, 0);
const SPARE: Bdf = Bdf::at(0, 6, 0);
/// Where a group capability would land.
const GROUP_SLOT: u32 = 64;
/// The physical address the kernel image is loaded at: the target of
/// the "attack".
const KERNEL_IMAGE: u64 = 0x10_0000;

fn main() -> u64 {
    testkit::run(userlib::cases![
        a_trusted_driver_does_dma_in_its_kernel_owned_group,
        a_user_task_owns_another_group_and_does_its_own_dma,
        a_dma_capable_driver_may_not_bind_in_the_user_owned_group,
        a_user_claim_on_a_kernel_owned_group_is_refused,
        a_dma_attack_by_the_users_device_is_blocked_and_reported_to_its_owner,
        the_system_keeps_running
    ])
}

fn edu(endpoint: Cap<Endpoint>, buffer: &mut Buffer, request: &edu::Request) -> Option<edu::Reply> {
    match endpoint.ask(buffer, request, &[], 0) {
        Ok(reply) => Some(reply),
        Err(code) => {
            defmt::error!("  the edu server did not answer: {}", code);
            None
        }
    }
}

fn copied(reply: Option<edu::Reply>, who: &str) -> Outcome {
    match reply {
        Some(edu::Reply::Copied { iova, matched: true }) => {
            defmt::info!("  {=str}: 2 KiB went to the device and back through IOVA {=u64:#x}, intact", who, iova);
            Ok(())
        }
        Some(edu::Reply::Refused { code, reason }) => {
            defmt::error!("  {=str}: refused ({}): {=str}", who, code, reason.as_str());
            userlib::fail!()
        }
        _ => {
            defmt::error!("  {=str}: the bytes did not come back intact", who);
            userlib::fail!()
        }
    }
}

fn a_trusted_driver_does_dma_in_its_kernel_owned_group(buffer: &mut Buffer) -> Outcome {
    copied(edu(EDU_DMA.get(), buffer, &edu::Request::Copy { len: 2048, seed: 1 }), "edu-dma on 00:03.0")
}

fn a_user_task_owns_another_group_and_does_its_own_dma(buffer: &mut Buffer) -> Outcome {
    match edu(EDU_USER.get(), buffer, &edu::Request::Adopt { device: USER }) {
        Some(edu::Reply::Adopted { group }) => {
            defmt::info!(
                "  edu-user owns group {=u16}: the group was blocked, then attached to its own address space",
                group
            );
        }
        other => {
            defmt::error!("  edu-user could not take 00:04.0: {}", other);
            userlib::fail!()
        }
    }
    copied(edu(EDU_USER.get(), buffer, &edu::Request::Copy { len: 2048, seed: 2 }), "edu-user on 00:04.0")
}

fn a_dma_capable_driver_may_not_bind_in_the_user_owned_group(buffer: &mut Buffer) -> Outcome {
    let request = pci_api::Request::Bind { device: USER, driver: EDU_SPARE_TASK };
    let reply = PCI.get().ask::<_, pci_api::Reply>(buffer, &request, &[], 0);
    refused_as_busy(reply, "binding edu-spare to 00:04.0 with DMA")
}

fn a_user_claim_on_a_kernel_owned_group_is_refused(buffer: &mut Buffer) -> Outcome {
    let bind = pci_api::Request::Bind { device: SPARE, driver: EDU_SPARE_TASK };
    let bound = PCI.get().ask::<_, pci_api::Reply>(buffer, &bind, &[], 0);
    let adopted = edu(EDU_SPARE.get(), buffer, &edu::Request::Adopt { device: SPARE });
    if !matches!((bound, adopted), (Ok(pci_api::Reply::Done), Some(edu::Reply::Adopted { .. }))) {
        defmt::error!("  edu-spare could not take 00:06.0 for the demonstration");
        userlib::fail!()
    }
    defmt::info!("  edu-spare now drives 00:06.0 with DMA: its group is kernel-owned");
    let claim = iommu::Request::ClaimGroup { device: SPARE };
    let reply = IOMMU.get().ask::<_, iommu::Reply>(buffer, &claim, &[own::TASK.slot()], GROUP_SLOT);
    refused_as_busy(reply, "this task claiming 00:06.0's group")
}

/// Passes if `reply` refuses with `Busy`, telling `what` was refused and
/// the server's reason.
fn refused_as_busy<R: Refusal + defmt::Format>(reply: Result<R, ErrorCode>, what: &str) -> Outcome {
    match reply.as_ref().ok().and_then(Refusal::refusal) {
        Some((ErrorCode::Busy, reason)) => {
            defmt::info!("  {=str}: busy: {=str}", what, reason);
            Ok(())
        }
        _ => {
            defmt::error!("  {=str} was not refused as busy: {}", what, reply);
            userlib::fail!()
        }
    }
}

fn a_dma_attack_by_the_users_device_is_blocked_and_reported_to_its_owner(buffer: &mut Buffer) -> Outcome {
    let _ = edu(EDU_USER.get(), buffer, &edu::Request::Faults);
    defmt::info!("  edu-user tells its device to write to physical {=u64:#x}, the kernel's image", KERNEL_IMAGE);
    let attack = edu::Request::DmaAt { iova: KERNEL_IMAGE, to_device: false };
    check!(edu(EDU_USER.get(), buffer, &attack) == Some(edu::Reply::Done), "the device finishes the DMA");
    match edu(EDU_USER.get(), buffer, &edu::Request::Faults) {
        Some(edu::Reply::Faults { records, .. }) => match records.iter().find(|fault| fault.address == KERNEL_IMAGE) {
            Some(fault) => {
                defmt::info!(
                    "  edu-user's fault log: {} {=str} at {=u64:#x} blocked (VT-d reason {=u8})",
                    fault.source,
                    if fault.write { "write" } else { "read" },
                    fault.address,
                    fault.reason
                );
                defmt::info!("  the kernel compares its image with the digest it took at boot when the system ends");
                Ok(())
            }
            None => {
                defmt::error!("  the write is not in edu-user's fault log");
                userlib::fail!()
            }
        },
        other => {
            defmt::error!("  no fault log: {}", other);
            userlib::fail!()
        }
    }
}

fn the_system_keeps_running(buffer: &mut Buffer) -> Outcome {
    let Ok(iommu::client::Stats { mappings, table_pages, domains, faults, .. }) =
        iommu::client::stats(IOMMU.get(), buffer)
    else {
        userlib::fail!()
    };
    defmt::info!(
        "  IOMMU server: {=u32} mappings, {=u32} table pages, {=u32} domains, {=u64} faults since boot",
        mappings,
        table_pages,
        domains,
        faults
    );
    let owner = IOMMU.get().ask::<_, iommu::Reply>(buffer, &iommu::Request::Owner { device: TRUSTED }, &[], 0);
    let trusted_owned = matches!(owner, Ok(iommu::Reply::Owner { owner: OwnerReport::Kernel { .. }, .. }));
    check!(trusted_owned, "the trusted driver's group is still kernel-owned");
    copied(edu(EDU_DMA.get(), buffer, &edu::Request::Copy { len: 2048, seed: 3 }), "edu-dma again")
}
