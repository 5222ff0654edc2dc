//! PCI topology vocabulary: what the PCI server tells the IOMMU server.
//!
//! The PCI server enumerates configuration space and describes every function
//! it found as a [`PciFunction`]; the list of them is a [`Topology`]. The IOMMU
//! server forms IOMMU groups from that description alone, so each field here
//! is a fact group formation or the driver core needs: identity, bridge bus
//! numbers, the PCI Express device/port type, the ACS capability and control
//! registers, device quirks that change DMA requester ids or ACS behaviour,
//! and MSI/MSI-X presence.
//!
//! Everything is fixed-size (`heapless`), so a topology encodes with postcard
//! without allocation. Nothing here is trusted by its receiver: group
//! formation checks the topology's consistency before using it.

use core::fmt;

use heapless::Vec;
use serde::{Deserialize, Serialize};

/// Most functions one topology describes.
pub const MAX_FUNCTIONS: usize = 64;

/// A PCI function's address on its segment: bus, device (0-31) and function
/// (0-7), stored as the 16-bit requester id the IOMMU sees.
///
/// Every `u16` is a valid address, so a decoded value needs no check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Bdf(u16);

impl Bdf {
    /// The address `bus:device.function`; `None` if `device > 31` or `function > 7`.
    pub const fn new(bus: u8, device: u8, function: u8) -> Option<Self> {
        if device > 31 || function > 7 {
            return None;
        }
        Some(Self::from_devfn(bus, (device << 3) | function))
    }

    /// The address with `devfn` (device in bits 7:3, function in bits 2:0) on `bus`.
    pub const fn from_devfn(bus: u8, devfn: u8) -> Self {
        Self(((bus as u16) << 8) | devfn as u16)
    }

    /// The address a 16-bit requester id names.
    pub const fn from_requester_id(id: u16) -> Self {
        Self(id)
    }

    /// The 16-bit requester id (bus in bits 15:8, devfn in bits 7:0).
    pub const fn requester_id(self) -> u16 {
        self.0
    }

    /// Bus number.
    pub const fn bus(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// Device (slot) number, 0-31.
    pub const fn device(self) -> u8 {
        (self.0 as u8) >> 3
    }

    /// Function number, 0-7.
    pub const fn function(self) -> u8 {
        self.0 as u8 & 7
    }

    /// Device and function packed as one byte.
    pub const fn devfn(self) -> u8 {
        self.0 as u8
    }
}

/// Prints `BB:DD.F` in hexadecimal, as `lspci` and Linux's sysfs names do.
impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{:x}", self.bus(), self.device(), self.function())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Bdf {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "{=u8:02x}:{=u8:02x}.{=u8:x}", self.bus(), self.device(), self.function())
    }
}

/// A set of device/function numbers on one bus (a 256-bit map).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DevfnSet {
    words: [u32; 8],
}

impl DevfnSet {
    /// The empty set.
    pub const fn new() -> Self {
        Self { words: [0; 8] }
    }

    /// Adds `devfn`.
    pub fn insert(&mut self, devfn: u8) {
        if let Some(word) = self.words.get_mut(usize::from(devfn >> 5)) {
            *word |= 1 << (devfn & 31);
        }
    }

    /// Whether `devfn` is in the set.
    pub fn contains(&self, devfn: u8) -> bool {
        self.words.get(usize::from(devfn >> 5)).is_some_and(|word| word & (1 << (devfn & 31)) != 0)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&word| word == 0)
    }

    /// The members in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=u8::MAX).filter(|&devfn| self.contains(devfn))
    }
}

/// The class code register: what kind of function this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClassCode {
    /// Base class (0x06: bridge, 0x02: network, 0x01: storage...).
    pub base: u8,
    /// Sub-class within the base class.
    pub sub: u8,
    /// Register-level programming interface.
    pub interface: u8,
}

impl ClassCode {
    /// The code as the 24-bit value Linux's sysfs `class` file shows.
    pub const fn value(self) -> u32 {
        ((self.base as u32) << 16) | ((self.sub as u32) << 8) | self.interface as u32
    }
}

/// The layout of the configuration header (header type bits 6:0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HeaderKind {
    /// Type 0: an ordinary function with six BARs.
    Normal,
    /// Type 1: a PCI-to-PCI bridge (including PCI Express ports).
    PciBridge,
    /// Type 2: a CardBus bridge.
    CardBus,
    /// A layout the specification does not define (the raw value).
    Unknown(u8),
}

/// Bus numbers a bridge (type 1 or CardBus header) forwards between.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BridgeBuses {
    /// The bus the bridge sits on, as its register says.
    pub primary: u8,
    /// The bus directly below the bridge.
    pub secondary: u8,
    /// The highest bus number below the bridge.
    pub subordinate: u8,
}

/// The device/port type field of the PCI Express capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PcieDeviceType {
    /// 0: a PCI Express endpoint.
    Endpoint,
    /// 1: a legacy PCI Express endpoint.
    LegacyEndpoint,
    /// 4: a root port of the root complex.
    RootPort,
    /// 5: the upstream port of a switch.
    SwitchUpstream,
    /// 6: a downstream port of a switch.
    SwitchDownstream,
    /// 7: a PCI Express to PCI/PCI-X bridge.
    PcieToPciBridge,
    /// 8: a PCI/PCI-X to PCI Express bridge.
    PciToPcieBridge,
    /// 9: an endpoint integrated into the root complex.
    RootComplexEndpoint,
    /// 10: a root complex event collector.
    RootComplexEventCollector,
    /// A value the specification reserves.
    Reserved(u8),
}

impl PcieDeviceType {
    /// Decodes the 4-bit field.
    pub const fn from_field(field: u8) -> Self {
        match field & 0xf {
            0 => Self::Endpoint,
            1 => Self::LegacyEndpoint,
            4 => Self::RootPort,
            5 => Self::SwitchUpstream,
            6 => Self::SwitchDownstream,
            7 => Self::PcieToPciBridge,
            8 => Self::PciToPcieBridge,
            9 => Self::RootComplexEndpoint,
            10 => Self::RootComplexEventCollector,
            other => Self::Reserved(other),
        }
    }

    /// Whether this port is the upstream end of a link (root port, switch
    /// downstream port, or PCI-to-PCIe bridge), so the bus below it holds
    /// only device 0.
    pub const fn is_downstream_port(self) -> bool {
        matches!(self, Self::RootPort | Self::SwitchDownstream | Self::PciToPcieBridge)
    }

    /// The type Linux assumes when a switch port misreports its direction:
    /// a "downstream" port below a downstream port is really an upstream
    /// port, and an "upstream" port below an upstream port is really a
    /// downstream port. `parent` is the effective type of the bridge above
    /// (`None` on a root bus or below a conventional bridge).
    pub const fn corrected(self, parent: Option<PcieDeviceType>) -> Self {
        match (self, parent) {
            (Self::SwitchDownstream, Some(parent)) if parent.is_downstream_port() => Self::SwitchUpstream,
            (Self::SwitchUpstream, Some(Self::SwitchUpstream)) => Self::SwitchDownstream,
            (reported, _) => reported,
        }
    }
}

/// The PCI Express capability, as far as topology needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PcieInfo {
    /// Offset of the capability in configuration space.
    pub offset: u8,
    /// Capability version (bits 3:0 of its flags).
    pub version: u8,
    /// The device/port type topology rules use: the reported type,
    /// corrected for switch ports that misreport their direction.
    pub device_type: PcieDeviceType,
    /// The type the register reports.
    pub reported_type: PcieDeviceType,
    /// Whether the port has a slot (flags bit 8).
    pub slot_implemented: bool,
}

/// ACS capability or control bits (PCIe Access Control Services).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AcsFlags(pub u16);

impl AcsFlags {
    /// No bits.
    pub const NONE: Self = Self(0);
    /// Source validation: the port checks requester ids of upstream requests.
    pub const SOURCE_VALIDATION: Self = Self(0x01);
    /// Translation blocking of pre-translated requests.
    pub const TRANSLATION_BLOCKING: Self = Self(0x02);
    /// Peer-to-peer request redirect: peer requests go upstream.
    pub const REQUEST_REDIRECT: Self = Self(0x04);
    /// Peer-to-peer completion redirect.
    pub const COMPLETION_REDIRECT: Self = Self(0x08);
    /// Upstream forwarding of requests aimed back down through the port.
    pub const UPSTREAM_FORWARDING: Self = Self(0x10);
    /// Peer-to-peer egress control.
    pub const EGRESS_CONTROL: Self = Self(0x20);
    /// Direct translated peer-to-peer.
    pub const DIRECT_TRANSLATED: Self = Self(0x40);
    /// The bits IOMMU isolation requires (Linux's `REQ_ACS_FLAGS`).
    pub const ISOLATION: Self = Self(0x01 | 0x04 | 0x08 | 0x10);

    /// Names of the seven defined bits, lowest first.
    const NAMES: [(Self, &'static str); 7] = [
        (Self::SOURCE_VALIDATION, "source validation"),
        (Self::TRANSLATION_BLOCKING, "translation blocking"),
        (Self::REQUEST_REDIRECT, "request redirect"),
        (Self::COMPLETION_REDIRECT, "completion redirect"),
        (Self::UPSTREAM_FORWARDING, "upstream forwarding"),
        (Self::EGRESS_CONTROL, "egress control"),
        (Self::DIRECT_TRANSLATED, "direct translated P2P"),
    ];

    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Bits set in either.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Bits set in both.
    pub const fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// Bits set here but not in `other`.
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Lists the set bits by name: "request redirect and completion redirect".
impl fmt::Display for AcsFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = Self::NAMES.iter().filter(|(flag, _)| self.contains(*flag)).count();
        let names = Self::NAMES.iter().filter(|(flag, _)| self.contains(*flag));
        for (index, (_, name)) in names.enumerate() {
            let separator = match index {
                0 => "",
                last if last + 1 == count => " and ",
                _ => ", ",
            };
            write!(f, "{separator}{name}")?;
        }
        Ok(())
    }
}

/// The ACS extended capability (id 0x000d).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AcsInfo {
    /// Offset of the capability in extended configuration space.
    pub offset: u16,
    /// The capability register: which controls the hardware implements.
    pub capability: AcsFlags,
    /// The control register: which controls are enabled.
    pub control: AcsFlags,
}

/// The MSI capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MsiInfo {
    /// Offset of the capability.
    pub offset: u8,
    /// Whether the message address register is 64 bits wide.
    pub address_64bit: bool,
    /// Whether each vector can be masked on its own.
    pub per_vector_masking: bool,
    /// How many vectors the function can request: 2 to this power (0-5).
    pub vectors_log2: u8,
    /// Whether MSI is enabled.
    pub enabled: bool,
}

/// Where in a BAR an MSI-X structure lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BarLocation {
    /// BAR index (the BIR field, 0-7; 6 and 7 are reserved values).
    pub bar: u8,
    /// Byte offset within the BAR (8-byte aligned).
    pub offset: u32,
}

/// The MSI-X capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MsixInfo {
    /// Offset of the capability.
    pub offset: u8,
    /// Number of table entries (1-2048).
    pub table_size: u16,
    /// The vector table.
    pub table: BarLocation,
    /// The pending-bit array.
    pub pending: BarLocation,
    /// Whether MSI-X is enabled.
    pub enabled: bool,
    /// Whether all vectors are masked by the function mask bit.
    pub function_masked: bool,
}

/// Device quirks that change which requester ids a function's DMA carries
/// (Linux's DMA alias quirks, `drivers/pci/quirks.c`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DmaAliasQuirk {
    /// Device/function numbers on the function's own bus that its DMA may
    /// also carry (for example a Marvell SATA controller using function 1).
    pub devfns: DevfnSet,
    /// A conventional bridge that is in truth a PCIe-to-PCI bridge without a
    /// PCI Express capability: devices below it alias to (secondary bus, 00.0).
    pub pcie_bridge_alias: bool,
    /// The IOMMU sits at this bridge, not at the root complex: aliasing stops here.
    pub translation_root: bool,
}

/// Which capability list a fault was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CapabilityList {
    /// The list in the first 256 bytes, starting at the capabilities pointer.
    Legacy,
    /// The PCI Express extended list, starting at 0x100.
    Extended,
}

/// What is wrong with a capability list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CapabilityFaultKind {
    /// A next pointer leads back to a capability already visited.
    Loop,
    /// A capability's registers run past the end of configuration space.
    Truncated,
}

/// A broken capability list. The walk stopped there; capabilities after
/// the fault are missing from the description, which can only make groups
/// larger (a missing ACS or PCI Express capability never isolates more).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CapabilityFault {
    /// The list the fault is in.
    pub list: CapabilityList,
    /// The offset of the offending capability or pointer target.
    pub offset: u16,
    /// What is wrong.
    pub kind: CapabilityFaultKind,
}

/// One PCI function as the PCI server found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PciFunction {
    /// Its address.
    pub bdf: Bdf,
    /// Vendor id.
    pub vendor_id: u16,
    /// Device id.
    pub device_id: u16,
    /// Subsystem vendor id (type 0 headers; 0 otherwise).
    pub subsystem_vendor_id: u16,
    /// Subsystem id (type 0 headers; 0 otherwise).
    pub subsystem_id: u16,
    /// Revision id.
    pub revision: u8,
    /// Class code.
    pub class: ClassCode,
    /// Header layout.
    pub header: HeaderKind,
    /// The multifunction bit (header type bit 7) as the function reports it.
    pub multifunction: bool,
    /// Bus numbers, if the function is a bridge.
    pub bridge: Option<BridgeBuses>,
    /// The PCI Express capability; `None` for a conventional PCI function.
    pub pcie: Option<PcieInfo>,
    /// The ACS extended capability.
    pub acs: Option<AcsInfo>,
    /// ACS controls a device-specific quirk says the hardware behaves as if
    /// enabled, whatever its registers say (Linux's
    /// `pci_dev_specific_acs_enabled`); `Some` overrides the standard rules.
    pub acs_quirk: Option<AcsFlags>,
    /// DMA requester-id quirks.
    pub dma_alias: DmaAliasQuirk,
    /// The MSI capability.
    pub msi: Option<MsiInfo>,
    /// The MSI-X capability.
    pub msix: Option<MsixInfo>,
    /// The first fault found in a capability list, if any.
    pub capability_fault: Option<CapabilityFault>,
}

/// What a bridge is, which decides the requester ids of DMA from below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BridgeKind {
    /// A conventional PCI-to-PCI bridge (no PCI Express capability).
    ConventionalPci,
    /// A conventional CardBus bridge.
    CardBus,
    /// A PCI Express root port.
    RootPort,
    /// A PCI Express switch upstream port.
    SwitchUpstream,
    /// A PCI Express switch downstream port.
    SwitchDownstream,
    /// A PCI Express to PCI/PCI-X bridge.
    PcieToPci,
    /// A PCI/PCI-X to PCI Express bridge.
    PciToPcie,
    /// A bridge header whose PCI Express type is not a bridge or port type.
    OtherPcie(PcieDeviceType),
}

impl BridgeKind {
    /// A short name for explanations ("PCIe-to-PCI bridge").
    pub const fn name(self) -> &'static str {
        match self {
            Self::ConventionalPci => "PCI bridge",
            Self::CardBus => "CardBus bridge",
            Self::RootPort => "root port",
            Self::SwitchUpstream => "switch upstream port",
            Self::SwitchDownstream => "switch downstream port",
            Self::PcieToPci => "PCIe-to-PCI bridge",
            Self::PciToPcie => "PCI-to-PCIe bridge",
            Self::OtherPcie(_) => "PCIe bridge",
        }
    }
}

impl PciFunction {
    /// What kind of bridge this is; `None` if it has no bridge bus numbers.
    pub fn bridge_kind(&self) -> Option<BridgeKind> {
        self.bridge?;
        Some(match self.pcie.map(|pcie| pcie.device_type) {
            None if self.header == HeaderKind::CardBus => BridgeKind::CardBus,
            None => BridgeKind::ConventionalPci,
            Some(PcieDeviceType::RootPort) => BridgeKind::RootPort,
            Some(PcieDeviceType::SwitchUpstream) => BridgeKind::SwitchUpstream,
            Some(PcieDeviceType::SwitchDownstream) => BridgeKind::SwitchDownstream,
            Some(PcieDeviceType::PcieToPciBridge) => BridgeKind::PcieToPci,
            Some(PcieDeviceType::PciToPcieBridge) => BridgeKind::PciToPcie,
            Some(other) => BridgeKind::OtherPcie(other),
        })
    }

    /// Whether Linux treats the function as part of a multifunction device:
    /// its multifunction bit is set, or it is not function 0 (a function
    /// other than 0 exists only in a multifunction device).
    pub fn is_multifunction(&self) -> bool {
        self.multifunction || self.bdf.function() != 0
    }
}

/// Every function on one PCI segment, in the order the PCI server found
/// them: a bus's functions by device and function number, then the buses
/// below each of its bridges, depth first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Topology {
    /// PCI segment (ECAM group) number.
    pub segment: u16,
    /// The functions.
    pub functions: Vec<PciFunction, MAX_FUNCTIONS>,
}

impl Topology {
    /// The function at `bdf`, if the topology has it.
    pub fn function(&self, bdf: Bdf) -> Option<&PciFunction> {
        self.functions.iter().find(|function| function.bdf == bdf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdf_fields_and_display() {
        let bdf = Bdf::new(0x1f, 0x1c, 7).unwrap();
        assert_eq!((bdf.bus(), bdf.device(), bdf.function(), bdf.devfn()), (0x1f, 0x1c, 7, 0xe7));
        assert_eq!(bdf.requester_id(), 0x1fe7);
        assert_eq!(std::format!("{bdf}"), "1f:1c.7");
        assert_eq!(Bdf::new(0, 32, 0), None);
        assert_eq!(Bdf::new(0, 0, 8), None);
        assert!(Bdf::new(0, 5, 1) < Bdf::new(1, 0, 0));
    }

    #[test]
    fn devfn_set() {
        let mut set = DevfnSet::new();
        assert!(set.is_empty());
        set.insert(0);
        set.insert(255);
        set.insert(33);
        assert!(set.contains(33) && !set.contains(32));
        assert_eq!(set.iter().collect::<std::vec::Vec<_>>(), [0, 33, 255]);
    }

    #[test]
    fn acs_flags_print_by_name() {
        assert_eq!(std::format!("{}", AcsFlags::REQUEST_REDIRECT), "request redirect");
        assert_eq!(
            std::format!("{}", AcsFlags::ISOLATION),
            "source validation, request redirect, completion redirect and upstream forwarding"
        );
        assert_eq!(std::format!("{}", AcsFlags::NONE), "");
    }

    #[test]
    fn port_type_correction_follows_the_parent() {
        use PcieDeviceType::*;
        assert_eq!(SwitchDownstream.corrected(Some(SwitchDownstream)), SwitchUpstream);
        assert_eq!(SwitchDownstream.corrected(Some(RootPort)), SwitchUpstream);
        assert_eq!(SwitchDownstream.corrected(Some(SwitchUpstream)), SwitchDownstream);
        assert_eq!(SwitchUpstream.corrected(Some(SwitchUpstream)), SwitchDownstream);
        assert_eq!(SwitchUpstream.corrected(Some(RootPort)), SwitchUpstream);
        assert_eq!(SwitchDownstream.corrected(None), SwitchDownstream);
    }

    #[test]
    fn topology_round_trips_through_postcard() {
        let function = PciFunction {
            bdf: Bdf::new(1, 0, 0).unwrap(),
            vendor_id: 0x1b36,
            device_id: 0x000e,
            subsystem_vendor_id: 0,
            subsystem_id: 0,
            revision: 0,
            class: ClassCode { base: 6, sub: 4, interface: 0 },
            header: HeaderKind::PciBridge,
            multifunction: false,
            bridge: Some(BridgeBuses { primary: 1, secondary: 2, subordinate: 2 }),
            pcie: Some(PcieInfo {
                offset: 0x48,
                version: 2,
                device_type: PcieDeviceType::PcieToPciBridge,
                reported_type: PcieDeviceType::PcieToPciBridge,
                slot_implemented: false,
            }),
            acs: None,
            acs_quirk: None,
            dma_alias: DmaAliasQuirk::default(),
            msi: None,
            msix: None,
            capability_fault: None,
        };
        let mut topology = Topology::default();
        topology.functions.push(function).unwrap();
        let mut buffer = [0u8; 512];
        let bytes = postcard::to_slice(&topology, &mut buffer).unwrap();
        assert_eq!(postcard::from_bytes::<Topology>(bytes).unwrap(), topology);
        assert_eq!(topology.functions[0].bridge_kind(), Some(BridgeKind::PcieToPci));
    }
}
