//! DMA requester ids: Linux's `pci_for_each_dma_alias`.
//!
//! A bridge may take ownership of the transactions it forwards, so DMA from
//! below it reaches the IOMMU with another requester id than the function's
//! own. Walking from the function to its root bus, each step may add an id:
//!
//! - the function itself, and any devfns its device quirks alias to;
//! - a PCIe-to-PCI bridge: (its secondary bus, 00.0), as the PCIe-to-PCI
//!   bridge specification has it;
//! - a conventional PCI bridge: its own id (or, for a quirked bridge that is
//!   a PCIe-to-PCI bridge in disguise, (secondary bus, 00.0));
//! - a PCI-to-PCIe bridge: its own id;
//! - root ports and switch ports forward ids unchanged and add nothing.
//!
//! The last id of the walk is the one the IOMMU sees.

use core::ops::ControlFlow;

use capabilities::pci::{Bdf, PcieDeviceType};

use crate::index::TopologyIndex;

/// Calls `visit(device, alias)` for every requester id DMA from function
/// `start` may carry, nearest first, where `device` is the function or the
/// bridge responsible for that id. Stops early when `visit` breaks.
pub fn for_each_dma_alias<T>(
    index: &TopologyIndex<'_>,
    start: usize,
    mut visit: impl FnMut(usize, Bdf) -> ControlFlow<T>,
) -> ControlFlow<T> {
    let Some(function) = index.get(start) else { return ControlFlow::Continue(()) };
    visit(start, function.bdf)?;
    for devfn in function.dma_alias.devfns.iter() {
        visit(start, Bdf::from_devfn(function.bdf.bus(), devfn))?;
    }
    for bridge_index in index.ancestors(start) {
        let Some(bridge) = index.get(bridge_index) else { continue };
        if bridge.dma_alias.translation_root {
            break;
        }
        // The parent relation comes from the bridge's secondary bus, so it has one.
        let below = Bdf::from_devfn(bridge.bridge.map_or(0, |buses| buses.secondary), 0);
        let alias = match bridge.pcie.map(|pcie| pcie.device_type) {
            Some(PcieDeviceType::PcieToPciBridge) => below,
            Some(PcieDeviceType::PciToPcieBridge) => bridge.bdf,
            Some(_) => continue,
            None if bridge.dma_alias.pcie_bridge_alias => below,
            None => bridge.bdf,
        };
        visit(bridge_index, alias)?;
    }
    ControlFlow::Continue(())
}

/// The requester id the topology gives DMA from function `start` when it
/// reaches the IOMMU: the id the last aliasing bridge above it imposes, or
/// its own id if none does. (Device quirks may add ids the function uses
/// besides; [`for_each_dma_alias`] lists them all.)
pub fn requester_id(index: &TopologyIndex<'_>, start: usize) -> Bdf {
    let mut last = index.bdf(start);
    let _: ControlFlow<()> = for_each_dma_alias(index, start, |device, alias| {
        if device != start {
            last = alias;
        }
        ControlFlow::Continue(())
    });
    last
}

/// Whether two functions on one bus alias each other by device quirk.
pub fn are_quirk_aliases(index: &TopologyIndex<'_>, a: usize, b: usize) -> bool {
    match (index.get(a), index.get(b)) {
        (Some(fa), Some(fb)) => {
            fa.dma_alias.devfns.contains(fb.bdf.devfn()) || fb.dma_alias.devfns.contains(fa.bdf.devfn())
        }
        _ => false,
    }
}
