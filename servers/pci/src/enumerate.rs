//! Enumeration: every function below the root buses, in Linux's order.
//!
//! Firmware (SeaBIOS on QEMU) has numbered the buses by the time the PCI
//! server runs; enumeration follows its numbers and never renumbers. The
//! order matches Linux's scan, which group formation depends on: a bus's
//! functions by device and function number, then the bus below each of its
//! bridges in turn, depth first. The walk keeps its own bounded stack, so a
//! deep or looping bridge chain ends in an error, not a stack overflow.

use capabilities::pci::{Bdf, MAX_FUNCTIONS, PcieDeviceType, Topology};
use heapless::Vec;

use crate::config::{ConfigSpace, Function};
use crate::describe::{BusContext, describe};
use crate::error::PciError;
use crate::header::Header;

/// Most bridges nested above one function that enumeration follows.
pub const MAX_DEPTH: usize = 32;

/// How to enumerate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Options {
    /// PCI segment the accessor serves.
    pub segment: u16,
    /// Whether the accessor reaches extended configuration space (ECAM does;
    /// the legacy 0xcf8 port mechanism does not).
    pub extended_config: bool,
    /// Turn on ACS isolation on every port that implements it, as Linux does
    /// when an IOMMU is in use. Group formation assumes this was done.
    pub enable_acs: bool,
}

/// A bus whose bridges still have to be followed.
struct Pending {
    /// The bus's functions are `functions[next..end]` of the topology.
    next: usize,
    end: usize,
}

/// What enumeration remembers per function besides its description.
struct Walk {
    topology: Topology,
    /// Entry `i`: extended configuration space reaches function `i`'s secondary bus.
    child_extended: [bool; MAX_FUNCTIONS],
    /// Buses already scanned.
    scanned: [u64; 4],
}

impl Walk {
    /// Marks `bus` scanned; false if it was already.
    fn mark_scanned(&mut self, bus: u8) -> bool {
        let (word, bit) = (usize::from(bus / 64), bus % 64);
        match self.scanned.get_mut(word) {
            Some(bits) if *bits & (1 << bit) == 0 => {
                *bits |= 1 << bit;
                true
            }
            _ => false,
        }
    }

    /// Describes and records one function.
    fn add<C: ConfigSpace + ?Sized>(
        &mut self,
        f: &mut Function<'_, C>,
        header: Header,
        bus: BusContext,
        options: Options,
    ) -> Result<bool, PciError> {
        let described = describe(f, header, bus, options.enable_acs)?;
        let index = self.topology.functions.len();
        let multifunction = described.function.multifunction;
        self.topology.functions.push(described.function).map_err(|_| PciError::TooManyFunctions { bdf: f.bdf() })?;
        if let Some(slot) = self.child_extended.get_mut(index) {
            *slot = described.child_extended_config;
        }
        Ok(multifunction)
    }

    /// Scans every slot of `bus`; returns the range of functions it added.
    fn scan_bus<C: ConfigSpace + ?Sized>(
        &mut self,
        cfg: &mut C,
        bus: u8,
        context: BusContext,
        options: Options,
    ) -> Result<Pending, PciError> {
        let start = self.topology.functions.len();
        // Below a root or downstream port the link holds only device 0
        // (Linux scans nothing else there either).
        let only_device0 = context.parent_type.is_some_and(PcieDeviceType::is_downstream_port);
        let devices = if only_device0 { 1 } else { 32 };
        for device in 0..devices {
            for function in 0..8 {
                let Some(bdf) = Bdf::new(bus, device, function) else { continue };
                let f = &mut Function::new(cfg, bdf);
                let Some(header) = Header::read_function(f)? else {
                    // Without function 0 there is no device in the slot.
                    if function == 0 {
                        break;
                    }
                    continue;
                };
                let multifunction = self.add(f, header, context, options)?;
                if function == 0 && !multifunction {
                    break;
                }
            }
        }
        Ok(Pending { next: start, end: self.topology.functions.len() })
    }
}

/// Enumerates everything below `root_buses` (q35 has one, bus 0).
pub fn enumerate<C: ConfigSpace + ?Sized>(
    cfg: &mut C,
    root_buses: &[u8],
    options: Options,
) -> Result<Topology, PciError> {
    let mut walk = Walk {
        topology: Topology { segment: options.segment, functions: Vec::new() },
        child_extended: [false; MAX_FUNCTIONS],
        scanned: [0; 4],
    };
    for &root in root_buses {
        if !walk.mark_scanned(root) {
            continue;
        }
        let context = BusContext { root: true, extended_config: options.extended_config, parent_type: None };
        let mut stack: Vec<Pending, MAX_DEPTH> = Vec::new();
        let first = walk.scan_bus(cfg, root, context, options)?;
        // Cannot fail: the stack is empty.
        stack.push(first).map_err(|_| PciError::TooDeep { bridge: Bdf::from_devfn(root, 0) })?;
        while let Some(pending) = stack.last_mut() {
            let Some(index) = (pending.next..pending.end)
                .find(|&index| walk.topology.functions.get(index).is_some_and(|f| f.bridge.is_some()))
            else {
                stack.pop();
                continue;
            };
            pending.next = index + 1;
            let Some(bridge) = walk.topology.functions.get(index).copied() else { break };
            let Some(buses) = bridge.bridge else { continue };
            if buses.secondary <= bridge.bdf.bus() || buses.subordinate < buses.secondary {
                return Err(PciError::UnconfiguredBridge { bridge: bridge.bdf, secondary: buses.secondary });
            }
            if !walk.mark_scanned(buses.secondary) {
                return Err(PciError::BusAlreadyScanned { bridge: bridge.bdf, bus: buses.secondary });
            }
            let context = BusContext {
                root: false,
                extended_config: walk.child_extended.get(index).copied().unwrap_or(false),
                parent_type: bridge.pcie.map(|pcie| pcie.device_type),
            };
            let below = walk.scan_bus(cfg, buses.secondary, context, options)?;
            stack.push(below).map_err(|_| PciError::TooDeep { bridge: bridge.bdf })?;
        }
    }
    Ok(walk.topology)
}
