//! Starting the driver core: BAR capabilities, bindings, and the topology report.

use capabilities::config::{PciConfig, driver_dma};
use capabilities::pci::{Bdf, MAX_FUNCTIONS, PciFunction, Topology};
use heapless::Vec;

use super::bars::{self, BarSkip, SizedBars};
use super::device::{Bound, Device};
use super::env::{Hardware, IommuLink, Kernel};
use super::interrupts::rest_bus_master;
use super::refusal::truncated;
use super::state::DriverCore;
use super::{iommu, mediation, msix_pages, quiesce};
use crate::bar;
use crate::config::ConfigSpace;

impl DriverCore {
    /// Takes over the functions of `topology`: sizes their BARs and creates
    /// a device-memory capability per grantable one, turns bus mastering
    /// off on every endpoint (nothing may DMA before it has a holder) and
    /// on for bridges (they forward the DMA of what is behind them),
    /// resolves the policy's bindings, logs a line per function, and
    /// reports the topology to the IOMMU server (if there is one).
    pub fn start<C: ConfigSpace, K: Kernel, I: IommuLink>(
        config: PciConfig,
        topology: &Topology,
        hw: &mut Hardware<'_, C, K, I>,
    ) -> Self {
        let mut sized: Vec<(Bdf, SizedBars), MAX_FUNCTIONS> = Vec::new();
        for function in &topology.functions {
            let bars = bar::size_all(hw.config, function.bdf, function.header).unwrap_or_else(|error| {
                warn!("{}: BARs not sized: {}", function.bdf, error);
                [None; bar::MAX_BARS]
            });
            // The topology holds at most MAX_FUNCTIONS, so this fits.
            let _ = sized.push((function.bdf, bars));
        }
        let mut devices = Vec::new();
        for (function, (_, bars)) in topology.functions.iter().zip(&sized) {
            let device = take_over(function, bars, &sized, &config, hw);
            info!("{=str}", device.describe(&config.tasks).as_str());
            let _ = devices.push(device);
        }
        for binding in &config.bindings {
            let matched = devices.iter().any(|device: &Device| {
                let f = &device.function;
                binding.device.matches(f.bdf, f.vendor_id, f.device_id)
            });
            if !matched {
                warn!(
                    "the binding of {=str} to {} matches no function",
                    config.tasks.name(binding.driver),
                    binding.device
                );
            }
        }
        let withheld = report(topology, hw);
        Self {
            names: config.tasks,
            drivers: config.drivers,
            devices,
            holders: 0,
            assignment_without_reset: config.assignment_without_reset,
            withheld,
        }
    }
}

/// The driver core's record of one function, its capabilities created.
fn take_over<C: ConfigSpace, K: Kernel, I: IommuLink>(
    function: &PciFunction,
    bars: &SizedBars,
    sized: &[(Bdf, SizedBars)],
    config: &PciConfig,
    hw: &mut Hardware<'_, C, K, I>,
) -> Device {
    let bdf = function.bdf;
    let (granted, skipped) = bars::plan(bdf, bars, sized, function.msix.as_ref());
    for (index, skip) in skipped {
        match skip {
            BarSkip::Io => {}
            other => warn!("{}: BAR{=u8} is not granted to holders: {}", bdf, index, other),
        }
    }
    let msix_table = function.msix.and_then(|msix| match msix_pages::table_place(bars, &msix) {
        Ok(place) => Some(place),
        Err(error) => {
            warn!("{}: its MSI-X table cannot be programmed ({}): holders get MSI only", bdf, error);
            None
        }
    });
    let controls = quiesce::controls(hw.config, function).unwrap_or_else(|error| {
        warn!("{}: reset and power capabilities unreadable: {}", bdf, error);
        quiesce::Controls::default()
    });
    if let Err(error) = rest_bus_master(hw.config, function) {
        warn!("{}: bus mastering not set as at rest (off for endpoints, on for bridges): {}", bdf, error);
    }
    let binding = config
        .bindings
        .iter()
        .find(|binding| binding.device.matches(bdf, function.vendor_id, function.device_id))
        .and_then(|binding| match driver_dma(&config.drivers, binding.driver) {
            Some(dma) => Some(Bound { driver: binding.driver, dma }),
            None => {
                warn!("{}: not bound: task {=str} is no driver", bdf, config.tasks.name(binding.driver));
                None
            }
        });
    Device {
        function: *function,
        bars: granted,
        msix_table,
        protected: mediation::protected_ranges(hw.config, function),
        controls,
        binding,
        holder: None,
        group: None,
        unquiesced: None,
    }
}

/// Reports the topology, or says why it is not; the reason the IOMMU
/// server refused it, if it did.
fn report<C: ConfigSpace, K: Kernel, I: IommuLink>(
    topology: &Topology,
    hw: &mut Hardware<'_, C, K, I>,
) -> Option<heapless::String<200>> {
    if hw.iommu.is_none() {
        warn!("no IOMMU server: the topology is not reported and DMA-capable drivers cannot be bound");
        return None;
    }
    match iommu::report_topology(hw.iommu.as_deref_mut(), hw.kernel, topology) {
        Ok(()) => {
            info!("topology reported to the IOMMU server: {=usize} functions", topology.functions.len());
            None
        }
        Err(failure) => {
            let text: heapless::String<200> = truncated(format_args!("{failure}"));
            error!("the IOMMU server did not take the topology ({=str}): no device is handed out", text.as_str());
            Some(text)
        }
    }
}
