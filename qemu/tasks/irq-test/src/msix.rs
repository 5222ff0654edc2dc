//! MSI-X through interrupt remapping: QEMU's e1000e raising the vector its holder was given.
//!
//! The e1000e (8086:10d3) has five MSI-X entries in BAR3, which the PCI
//! server keeps for itself. Without any DMA it raises an interrupt when a
//! cause bit is written to its ICS register: with MSI-X on, the receive
//! queue 0 cause goes to the table entry IVAR names (the low nibble: the
//! entry in bits 0-2, valid in bit 3), if IMS enables the cause.

use core::sync::atomic::Ordering;

use capabilities::ErrorCode;
use capabilities::abi::ipc::NONBLOCK;
use capabilities::pci::Bdf;
use iommu_api::InterruptSource;
use userlib::cap::{Cap, DeviceMemory, Interrupt, Notification, own};
use userlib::ipc::Buffer;
use userlib::mmio::Mapping;
use userlib::testkit::Outcome;
use userlib::{check, check_eq, check_ok};

use super::{
    ARRIVAL_US, BAR_VIRT, DONE, MEANT_REFUSALS, PCI, SILENCE_US, THIS_TASK, claim, interrupts, release_group,
    wait_unowned,
};

/// The e1000e.
pub const NIC: Bdf = Bdf::at(0, 7, 0);
/// Its BAR holding the MSI-X table and PBA.
const MSIX_BAR: u8 = 3;
/// Slots: the grant's window (four) and the two vectors asked for.
const NIC_WINDOW: u32 = 80;
const VECTORS: u32 = 84;
/// Registers in BAR0: interrupt cause read (write 1 to clear), cause set,
/// mask set, and the interrupt vector allocation.
const ICR: u64 = 0xc0;
const ICS: u64 = 0xc8;
const IMS: u64 = 0xd0;
const IVAR: u64 = 0xe4;
/// The receive queue 0 cause (ICR, ICS and IMS bit 20).
const RXQ0: u32 = 1 << 20;
/// An IVAR field's valid bit.
const IVAR_VALID: u32 = 1 << 3;

/// Routes receive queue 0 to table entry `entry`, raises it, and waits
/// (up to `timeout`) for the notification bits it brings.
fn raise(registers: &Mapping<DeviceMemory>, entry: u32, timeout: u64) -> Result<u64, ErrorCode> {
    let _ = Cap::<Notification>::at(DONE).wait(NONBLOCK, 0);
    registers.write32(ICR, u32::MAX).ok_or(ErrorCode::InvalidArgument)?;
    registers.write32(IVAR, IVAR_VALID | entry).ok_or(ErrorCode::InvalidArgument)?;
    registers.write32(ICS, RXQ0).ok_or(ErrorCode::InvalidArgument)?;
    Cap::<Notification>::at(DONE).wait(0, timeout)
}

pub fn a_holders_msix_vectors_interrupt_through_remapped_entries(buffer: &mut Buffer) -> Outcome {
    check_ok!(claim(buffer, NIC));
    let granted = check_ok!(pci_api::client::acquire(PCI.get(), buffer, NIC, NIC_WINDOW).map_err(|r| r.code));
    for bar in &granted.grant.bars {
        check!(bar.index != MSIX_BAR, "the MSI-X table's BAR is never in the holder's capabilities");
    }
    let registers = check_ok!(granted.bar(0).ok_or(ErrorCode::NotFound));
    check_ok!(pci_api::client::enable_bus_mastering(PCI.get(), buffer, NIC).map_err(|r| r.code));
    let vectors = check_ok!(pci_api::client::msix_vectors(PCI.get(), buffer, NIC, 0, 2, VECTORS).map_err(|r| r.code));
    check_eq!(vectors.len(), 2);
    let report = check_ok!(interrupts(buffer, Some(NIC)));
    check_eq!(report.entries.len(), 2, "two MSI-X entries, the MSI one given back");
    for entry in &report.entries {
        check_eq!((entry.holder, entry.source), (Some(THIS_TASK), InterruptSource::Exact(NIC)));
    }
    // The policy's interrupt-entries-per-device (2) is reached: a third is refused.
    let third = pci_api::client::msix_vectors(PCI.get(), buffer, NIC, 2, 1, VECTORS + 2).map_err(|r| r.code);
    check_eq!(third, Err(ErrorCode::QuotaExceeded), "beyond the policy's quota");
    MEANT_REFUSALS.fetch_add(1, Ordering::Relaxed);
    check_eq!(check_ok!(interrupts(buffer, Some(NIC))).entries.len(), 2, "the refused one left nothing");
    let first = Cap::<Interrupt>::at(VECTORS);
    let second = Cap::<Interrupt>::at(VECTORS + 1);
    check_ok!(first.bind(Cap::at(DONE), 1 << 1));
    check_ok!(second.bind(Cap::at(DONE), 1 << 2));
    let registers = check_ok!(Mapping::map(own::SPACE, Cap::<DeviceMemory>::at(registers), BAR_VIRT, true));
    check_ok!(registers.write32(IMS, RXQ0).ok_or(ErrorCode::InvalidArgument));
    check_eq!(check_ok!(raise(&registers, 1, ARRIVAL_US)), 1 << 2, "entry 1 wakes the second vector only");
    check_ok!(second.acknowledge());
    check_eq!(check_ok!(raise(&registers, 0, ARRIVAL_US)), 1 << 1, "entry 0 wakes the first");
    check_ok!(first.acknowledge());
    // Masked, the entry stays silent; unmasked, its pending message comes.
    check_ok!(pci_api::client::msix_mask(PCI.get(), buffer, NIC, 0, true).map_err(|r| r.code));
    check_eq!(raise(&registers, 0, SILENCE_US), Err(ErrorCode::TimedOut), "a masked entry raises nothing");
    check_ok!(pci_api::client::msix_mask(PCI.get(), buffer, NIC, 0, false).map_err(|r| r.code));
    check_eq!(check_ok!(Cap::<Notification>::at(DONE).wait(0, ARRIVAL_US)), 1 << 1, "the pending one on unmask");
    check_ok!(first.acknowledge());
    // An entry never asked for is refused to the holder's mask requests.
    let refused = pci_api::client::msix_mask(PCI.get(), buffer, NIC, 2, false).map_err(|r| r.code);
    check_eq!(refused, Err(ErrorCode::NotFound));
    check_ok!(registers.unmap());
    check!(pci_api::client::release(PCI.get(), buffer, NIC).is_ok());
    check_ok!(release_group(buffer));
    check!(wait_unowned(buffer, NIC));
    let report = check_ok!(interrupts(buffer, Some(NIC)));
    check_eq!(report.entries.len(), 0, "every MSI-X entry is freed at release");
    Ok(())
}
