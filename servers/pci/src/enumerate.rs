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

#[cfg(test)]
mod tests {
    use capabilities::pci::{
        AcsFlags, BridgeKind, CapabilityFault, CapabilityFaultKind, CapabilityList, HeaderKind, PciFunction,
    };
    use std::vec::Vec;

    use super::*;
    use crate::testing::{FakeConfig, FakeFunction, bdf};

    const OPTIONS: Options = Options { segment: 0, extended_config: true, enable_acs: true };

    /// A PCIe root port (type 4) with an ACS capability like QEMU's.
    fn root_port(secondary: u8, subordinate: u8) -> FakeFunction {
        FakeFunction::bridge(0x1b36, 0x000c, 0, secondary, subordinate).pcie(0x40, 4, 0).acs(0x100, 0x5f, 0, 0)
    }

    fn addresses(topology: &Topology) -> Vec<String> {
        topology.functions.iter().map(|f| f.bdf.to_string()).collect()
    }

    fn function<'a>(topology: &'a Topology, at: &str) -> &'a PciFunction {
        topology.function(bdf(at)).unwrap()
    }

    #[test]
    fn walks_depth_first_in_linux_order() {
        let mut cfg = FakeConfig::default()
            .with("00:00.0", FakeFunction::endpoint(0x8086, 0x29c0).conventional())
            .with("00:01.0", root_port(1, 2))
            .with("00:02.0", root_port(3, 3))
            .with("00:03.0", FakeFunction::endpoint(0x1234, 0x11e8).conventional())
            .with("01:00.0", FakeFunction::bridge(0x1b36, 0x000e, 1, 2, 2).pcie(0x40, 7, 0))
            .with("02:01.0", FakeFunction::endpoint(0x1234, 0x11e8).conventional())
            .with("03:00.0", FakeFunction::endpoint(0x8086, 0x10d3).pcie(0x40, 0, 0));
        let topology = enumerate(&mut cfg, &[0], OPTIONS).unwrap();
        assert_eq!(addresses(&topology), ["00:00.0", "00:01.0", "00:02.0", "00:03.0", "01:00.0", "02:01.0", "03:00.0"]);
        assert_eq!(function(&topology, "01:00.0").bridge_kind(), Some(BridgeKind::PcieToPci));
        assert_eq!(function(&topology, "00:01.0").bridge_kind(), Some(BridgeKind::RootPort));
    }

    #[test]
    fn scans_more_functions_only_behind_the_multifunction_bit() {
        let mut cfg = FakeConfig::default()
            .with("00:05.0", FakeFunction::endpoint(1, 1).multifunction())
            .with("00:05.3", FakeFunction::endpoint(1, 1))
            .with("00:06.0", FakeFunction::endpoint(1, 1))
            .with("00:06.1", FakeFunction::endpoint(1, 1))
            .with("00:07.2", FakeFunction::endpoint(1, 1));
        let topology = enumerate(&mut cfg, &[0], OPTIONS).unwrap();
        assert_eq!(addresses(&topology), ["00:05.0", "00:05.3", "00:06.0"]);
    }

    #[test]
    fn only_device_zero_is_scanned_below_a_port() {
        let mut cfg = FakeConfig::default()
            .with("00:01.0", root_port(1, 1))
            .with("01:00.0", FakeFunction::endpoint(1, 1).pcie(0x40, 0, 0))
            .with("01:01.0", FakeFunction::endpoint(1, 1).pcie(0x40, 0, 0));
        let topology = enumerate(&mut cfg, &[0], OPTIONS).unwrap();
        assert_eq!(addresses(&topology), ["00:01.0", "01:00.0"]);
    }

    #[test]
    fn enables_acs_isolation_as_linux_does() {
        let mut cfg = FakeConfig::default().with("00:01.0", root_port(1, 1));
        let topology = enumerate(&mut cfg, &[0], OPTIONS).unwrap();
        let acs = function(&topology, "00:01.0").acs.unwrap();
        assert_eq!((acs.offset, acs.capability, acs.control), (0x100, AcsFlags(0x5f), AcsFlags::ISOLATION));
        assert_eq!(cfg.functions[&bdf("00:01.0")].bytes[0x106], 0x1d);
        // Without the option the register is left alone.
        let mut cfg = FakeConfig::default().with("00:01.0", root_port(1, 1));
        let topology = enumerate(&mut cfg, &[0], Options { enable_acs: false, ..OPTIONS }).unwrap();
        assert_eq!(function(&topology, "00:01.0").acs.unwrap().control, AcsFlags::NONE);
    }

    #[test]
    fn extended_space_does_not_reach_below_a_pcie_to_pci_bridge() {
        let endpoint = || FakeFunction::endpoint(1, 1).pcie(0x40, 0, 0).acs(0x100, 0x5f, 0x1d, 0);
        let mut cfg = FakeConfig::default()
            .with("00:01.0", FakeFunction::bridge(0x1b36, 0x000e, 0, 1, 1).pcie(0x40, 7, 0))
            .with("00:02.0", root_port(2, 2))
            .with("01:00.0", endpoint())
            .with("02:00.0", endpoint());
        let topology = enumerate(&mut cfg, &[0], OPTIONS).unwrap();
        assert_eq!(function(&topology, "01:00.0").acs, None);
        assert!(function(&topology, "02:00.0").acs.is_some());
        // Nor without extended configuration access at all.
        let topology = enumerate(&mut cfg, &[0], Options { extended_config: false, ..OPTIONS }).unwrap();
        assert!(topology.functions.iter().all(|f| f.acs.is_none()));
    }

    #[test]
    fn mirrored_or_absent_extended_space_is_ignored() {
        let mut mirrored = FakeFunction::endpoint(1, 1).pcie(0x40, 0, 0);
        for copy in 1..16 {
            let (head, tail) = mirrored.bytes.split_at_mut(256 * copy);
            tail[..256].copy_from_slice(&head[..256]);
        }
        let mut cfg = FakeConfig::default()
            .with("00:01.0", mirrored)
            .with("00:02.0", FakeFunction::endpoint(1, 1).pcie(0x40, 0, 0).conventional());
        let topology = enumerate(&mut cfg, &[0], OPTIONS).unwrap();
        assert!(topology.functions.iter().all(|f| f.acs.is_none() && f.capability_fault.is_none()));
    }

    #[test]
    fn corrects_switch_ports_that_misreport_their_direction() {
        let mut cfg = FakeConfig::default()
            .with("00:01.0", root_port(1, 2))
            // Says "downstream" below a root port: really the upstream port.
            .with("01:00.0", FakeFunction::bridge(0x104c, 0x8232, 1, 2, 2).pcie(0x40, 6, 0));
        let topology = enumerate(&mut cfg, &[0], OPTIONS).unwrap();
        let pcie = function(&topology, "01:00.0").pcie.unwrap();
        assert_eq!(pcie.reported_type, capabilities::pci::PcieDeviceType::SwitchDownstream);
        assert_eq!(pcie.device_type, capabilities::pci::PcieDeviceType::SwitchUpstream);
    }

    #[test]
    fn a_looping_capability_list_is_recorded_not_fatal() {
        let broken = FakeFunction::endpoint(1, 1).pcie(0x40, 0, 0x50).legacy_cap(0x50, 0x05, 0x40);
        let mut cfg = FakeConfig::default().with("00:01.0", broken).with("00:02.0", FakeFunction::endpoint(1, 1));
        let topology = enumerate(&mut cfg, &[0], OPTIONS).unwrap();
        let function = function(&topology, "00:01.0");
        assert!(function.pcie.is_some() && function.msi.is_some());
        let fault = CapabilityFault { list: CapabilityList::Legacy, offset: 0x40, kind: CapabilityFaultKind::Loop };
        assert_eq!(function.capability_fault, Some(fault));
        assert_eq!(topology.functions.len(), 2);
    }

    #[test]
    fn truncated_capabilities_are_recorded() {
        // A 64-bit MSI with masking needs 24 bytes; at 0xf8 it would run past 0x100.
        let mut msi = FakeFunction::endpoint(1, 1).pcie(0x40, 0, 0xf8).legacy_cap(0xf8, 0x05, 0);
        msi.set16(0xfa, 0x0180);
        let acs =
            FakeFunction::endpoint(1, 1).pcie(0x40, 0, 0).extended_cap(0x100, 1, 0xffc).extended_cap(0xffc, 0x000d, 0);
        let mut cfg = FakeConfig::default().with("00:01.0", msi).with("00:02.0", acs);
        let topology = enumerate(&mut cfg, &[0], OPTIONS).unwrap();
        let truncated = |list, offset| Some(CapabilityFault { list, offset, kind: CapabilityFaultKind::Truncated });
        assert_eq!(function(&topology, "00:01.0").msi, None);
        assert_eq!(function(&topology, "00:01.0").capability_fault, truncated(CapabilityList::Legacy, 0xf8));
        assert_eq!(function(&topology, "00:02.0").acs, None);
        assert_eq!(function(&topology, "00:02.0").capability_fault, truncated(CapabilityList::Extended, 0xffc));
    }

    #[test]
    fn the_pcie_bridge_alias_quirk_needs_its_topology() {
        let asmedia = || FakeFunction::bridge(0x1b21, 0x1080, 1, 2, 2).conventional();
        let mut cfg = FakeConfig::default().with("00:01.0", root_port(1, 2)).with("01:00.0", asmedia());
        let topology = enumerate(&mut cfg, &[0], OPTIONS).unwrap();
        assert!(function(&topology, "01:00.0").dma_alias.pcie_bridge_alias);
        let on_root = FakeFunction::bridge(0x1b21, 0x1080, 0, 1, 1).conventional();
        let mut cfg = FakeConfig::default().with("00:01.0", on_root);
        let topology = enumerate(&mut cfg, &[0], OPTIONS).unwrap();
        assert!(!function(&topology, "00:01.0").dma_alias.pcie_bridge_alias);
    }

    #[test]
    fn describes_identity_and_interrupt_capabilities() {
        let mut e1000e = FakeFunction::endpoint(0x8086, 0x10d3).pcie(0x40, 9, 0x50).legacy_cap(0x50, 0x05, 0x70);
        e1000e.set16(0x52, 0x0001);
        let mut e1000e = e1000e.legacy_cap(0x70, 0x11, 0);
        e1000e.set16(0x72, 0x8004);
        e1000e.set32(0x74, 0x0000_0003);
        e1000e.set32(0x78, 0x0000_2003);
        e1000e.set32(0x2c, 0x0000_8086);
        e1000e.bytes[0x08] = 0x02;
        e1000e.bytes[0x0b] = 0x02;
        let mut cfg = FakeConfig::default().with("00:03.0", e1000e);
        let topology = enumerate(&mut cfg, &[0], OPTIONS).unwrap();
        let f = function(&topology, "00:03.0");
        assert_eq!((f.vendor_id, f.device_id, f.subsystem_vendor_id, f.revision), (0x8086, 0x10d3, 0x8086, 2));
        assert_eq!((f.class.value(), f.header), (0x020000, HeaderKind::Normal));
        let msi = f.msi.unwrap();
        assert!(msi.enabled && !msi.address_64bit && msi.vectors_log2 == 0);
        let msix = f.msix.unwrap();
        assert_eq!((msix.table_size, msix.table.bar, msix.pending.bar, msix.pending.offset), (5, 3, 3, 0x2000));
        assert!(msix.enabled && !msix.function_masked);
        assert_eq!(f.acs_quirk, Some(AcsFlags::ISOLATION), "Intel RCiEP");
    }

    #[test]
    fn bridges_firmware_left_unconfigured_are_errors() {
        let mut cfg = FakeConfig::default().with("00:01.0", root_port(0, 0));
        assert_eq!(
            enumerate(&mut cfg, &[0], OPTIONS),
            Err(PciError::UnconfiguredBridge { bridge: bdf("00:01.0"), secondary: 0 })
        );
        let mut cfg = FakeConfig::default().with("00:01.0", root_port(2, 1));
        assert!(matches!(enumerate(&mut cfg, &[0], OPTIONS), Err(PciError::UnconfiguredBridge { .. })));
    }

    #[test]
    fn two_bridges_to_one_bus_are_an_error() {
        let mut cfg = FakeConfig::default().with("00:01.0", root_port(1, 1)).with("00:02.0", root_port(1, 1));
        assert_eq!(
            enumerate(&mut cfg, &[0], OPTIONS),
            Err(PciError::BusAlreadyScanned { bridge: bdf("00:02.0"), bus: 1 })
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let mut cfg = FakeConfig::default();
        for bus in 0..=MAX_DEPTH as u8 {
            let bridge = FakeFunction::bridge(0x1b36, 0x0001, bus, bus + 1, bus + 1).conventional();
            cfg = cfg.with(&std::format!("{bus:02x}:00.0"), bridge);
        }
        assert!(matches!(enumerate(&mut cfg, &[0], OPTIONS), Err(PciError::TooDeep { .. })));
    }

    #[test]
    fn the_topology_is_bounded() {
        // Bus 0: bridges to buses 1 to 4, then endpoints; each bus below is
        // full (32 devices of 8 functions), so bus 4 overflows at its 1,024th
        // function counting the four bridges.
        let mut cfg = FakeConfig::default();
        for bus in 1..=4u8 {
            cfg = cfg.with(&std::format!("00:{bus:02x}.0"), FakeFunction::bridge(1, 1, 0, bus, bus));
            for device in 0..32 {
                cfg = cfg.with(&std::format!("{bus:02x}:{device:02x}.0"), FakeFunction::endpoint(1, 1).multifunction());
                for function in 1..8 {
                    cfg = cfg.with(&std::format!("{bus:02x}:{device:02x}.{function}"), FakeFunction::endpoint(1, 1));
                }
            }
        }
        let error = enumerate(&mut cfg, &[0], OPTIONS).unwrap_err();
        assert_eq!(error, PciError::TooManyFunctions { bdf: bdf("04:1f.4") });
        assert!(error.to_string().contains("MAX_FUNCTIONS = 1024"), "{error}");
    }

    #[test]
    fn half_valid_ids_mean_no_function() {
        let mut zero = FakeFunction::endpoint(0, 0);
        zero.set32(0, 0);
        let mut cfg = FakeConfig::default().with("00:01.0", zero).with("00:02.0", FakeFunction::endpoint(0xffff, 0));
        assert!(enumerate(&mut cfg, &[0], OPTIONS).unwrap().functions.is_empty());
    }
}
