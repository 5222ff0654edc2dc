//! The benchmark task: times IPC round trips to the null server, DMA map
//! and unmap through the IOMMU server, and the latency of a blocked DMA's
//! fault record, and reports `BENCH` lines the host collects
//! (`cargo xtask bench`).
//!
//! The policy binds the machine's edu device to this task as a DMA-capable
//! driver, so the PCI server's probe hands it a DMA handle on the device's
//! group. Cycle counts come from `rdtsc`; the TSC rate measured during the
//! IPC run converts them to time on the host.
#![no_std]
#![no_main]
// Unsafe code is allowed here: it reads the TSC and a DMA buffer it mapped itself.
#![allow(unsafe_code)]

mod dma;
mod fault;
mod ipc;
mod timing;

use userlib::cap::{Cap, DeviceMemory, Endpoint};
use userlib::ipc::Buffer;

userlib::cap_slot!(NULL_SERVER: Endpoint = "null-server");
userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::entry!(main);

/// First of the four slots the device's capabilities arrive in.
const WINDOW: u32 = 16;
/// Slot of the IPC sample frame.
const SAMPLE_SLOT: u32 = 24;
/// First slot of the frames mapped for DMA.
const FRAMES: u32 = 32;
const _: () = assert!(dma::Frames::end(FRAMES) <= capabilities::abi::CSPACE_SLOTS);

fn main() -> u64 {
    let Some(mut buffer) = Buffer::take() else {
        defmt::error!("BENCH setup failed");
        return 1;
    };
    defmt::info!("bench ready");
    let Some(cycles_per_us) = ipc::run(NULL_SERVER.get(), &mut buffer, SAMPLE_SLOT) else { return 1 };
    let granted = match pci_api::client::probe(PCI.get(), &mut buffer, 0, WINDOW) {
        Ok(granted) => granted,
        Err(refused) => {
            defmt::error!("BENCH dma: probe refused ({}): {=str}", refused.code, refused.reason.as_str());
            return 2;
        }
    };
    let (Some(bar0), Some(&handle), true) = (granted.bar(0), granted.caps.last(), granted.grant.dma) else {
        defmt::error!("BENCH dma: {} came without BAR0 or a DMA handle", granted.grant.device);
        return 2;
    };
    let handle = Cap::<Endpoint>::at(handle);
    if let Err(refused) = pci_api::client::enable_bus_mastering(PCI.get(), &mut buffer, granted.grant.device) {
        defmt::error!("BENCH dma: bus mastering refused ({}): {=str}", refused.code, refused.reason.as_str());
        return 2;
    }
    let frames = match dma::Frames::allocate(FRAMES) {
        Ok(frames) => frames,
        Err(code) => {
            defmt::error!("BENCH dma: no frames to map: {}", code);
            return 2;
        }
    };
    if let Err(code) = dma::run(handle, &mut buffer, &frames) {
        defmt::error!("BENCH dma: map or unmap failed: {}", code);
        return 3;
    }
    if let Err(code) = fault::run(Cap::<DeviceMemory>::at(bar0), handle, &mut buffer, FRAMES, cycles_per_us) {
        defmt::error!("BENCH fault: {}", code);
        return 4;
    }
    0
}
