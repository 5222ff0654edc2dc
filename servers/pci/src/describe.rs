//! Builds one function's topology description from its configuration space.

use capabilities::pci::{
    CapabilityFault, CapabilityFaultKind, CapabilityList, DmaAliasQuirk, HeaderKind, PciFunction, PcieDeviceType,
};

use crate::caps::{Capability, ExtendedCapabilities, LegacyCapabilities, check_fits, id};
use crate::config::{CONFIG_SPACE_SIZE, ConfigSpace, Function, LEGACY_SPACE_SIZE};
use crate::error::PciError;
use crate::header::Header;
use crate::quirks::{self, QuirkIds};
use crate::{acs, msi, pcie};

/// PCI-X status register bits: the function runs in mode 2 (266 or 533
/// MHz), the only conventional mode with extended configuration space.
const PCIX_MODE2: u32 = 0x4000_0000 | 0x8000_0000;

/// What the bus a function sits on tells about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BusContext {
    /// The bus is a root bus (no bridge above it).
    pub root: bool,
    /// Configuration accesses on this bus reach extended space (0x100+).
    pub extended_config: bool,
    /// The effective PCI Express type of the bridge above; `None` on a root
    /// bus or below a conventional bridge.
    pub parent_type: Option<PcieDeviceType>,
}

/// A described function and what its secondary bus (if it is a bridge) inherits.
pub(crate) struct Described {
    /// The description.
    pub function: PciFunction,
    /// For a bridge: whether extended configuration space reaches its secondary bus.
    pub child_extended_config: bool,
}

/// The capabilities found on the legacy list.
#[derive(Default)]
struct LegacyFound {
    pcie: Option<Capability>,
    msi: Option<Capability>,
    msix: Option<Capability>,
    pcix: Option<Capability>,
}

/// Keeps the first fault; a capability walk or decode error that is not a
/// failed access becomes a fault, anything else is returned.
fn note_fault(fault: &mut Option<CapabilityFault>, list: CapabilityList, error: PciError) -> Result<(), PciError> {
    let found = match error {
        PciError::CapabilityLoop { offset, .. } => CapabilityFault { list, offset, kind: CapabilityFaultKind::Loop },
        PciError::CapabilityTruncated { offset, .. } => {
            CapabilityFault { list, offset, kind: CapabilityFaultKind::Truncated }
        }
        other => return Err(other),
    };
    fault.get_or_insert(found);
    Ok(())
}

/// Walks the legacy list for the capabilities topology needs (first of each).
fn walk_legacy<C: ConfigSpace + ?Sized>(
    f: &mut Function<'_, C>,
    header: &Header,
    fault: &mut Option<CapabilityFault>,
) -> Result<LegacyFound, PciError> {
    let mut found = LegacyFound::default();
    let bdf = f.bdf();
    for capability in LegacyCapabilities::new(f.cfg(), bdf, header.capabilities_pointer()) {
        let capability = match capability {
            Ok(capability) => capability,
            Err(error) => {
                note_fault(fault, CapabilityList::Legacy, error)?;
                break;
            }
        };
        let slot = match capability.id {
            id::PCIE => &mut found.pcie,
            id::MSI => &mut found.msi,
            id::MSIX => &mut found.msix,
            id::PCIX => &mut found.pcix,
            _ => continue,
        };
        slot.get_or_insert(capability);
    }
    Ok(found)
}

/// Whether a PCI-X capability reports mode 2.
fn pcix_mode2<C: ConfigSpace + ?Sized>(
    f: &mut Function<'_, C>,
    pcix: Option<Capability>,
    fault: &mut Option<CapabilityFault>,
) -> Result<bool, PciError> {
    let Some(pcix) = pcix else { return Ok(false) };
    if let Err(error) = check_fits(f.bdf(), pcix, 8, LEGACY_SPACE_SIZE) {
        note_fault(fault, CapabilityList::Legacy, error)?;
        return Ok(false);
    }
    Ok(f.read32(pcix.offset + 4)? & PCIX_MODE2 != 0)
}

/// Whether the function's extended space answers: the first extended dword
/// is not all ones, and the space is not the first 256 bytes mirrored
/// (Linux's tests, which drop extended space on devices that fail them).
fn extended_space_answers<C: ConfigSpace + ?Sized>(f: &mut Function<'_, C>) -> Result<bool, PciError> {
    let first = f.read32(LEGACY_SPACE_SIZE)?;
    if first == u32::MAX {
        return Ok(false);
    }
    let header = f.read32(0)?;
    let mut offset = LEGACY_SPACE_SIZE;
    while offset < CONFIG_SPACE_SIZE {
        if f.read32(offset)? != header {
            return Ok(true);
        }
        offset += LEGACY_SPACE_SIZE;
    }
    Ok(false)
}

/// Decodes a capability, turning a truncated one into a recorded fault.
fn decode_or_fault<C: ConfigSpace + ?Sized, T>(
    f: &mut Function<'_, C>,
    capability: Option<Capability>,
    list: CapabilityList,
    fault: &mut Option<CapabilityFault>,
    decode: impl FnOnce(&mut Function<'_, C>, Capability) -> Result<T, PciError>,
) -> Result<Option<T>, PciError> {
    let Some(capability) = capability else { return Ok(None) };
    match decode(f, capability) {
        Ok(value) => Ok(Some(value)),
        Err(error) => note_fault(fault, list, error).map(|()| None),
    }
}

/// Finds the first ACS capability on the extended list.
fn find_acs<C: ConfigSpace + ?Sized>(
    f: &mut Function<'_, C>,
    fault: &mut Option<CapabilityFault>,
) -> Result<Option<Capability>, PciError> {
    let bdf = f.bdf();
    for capability in ExtendedCapabilities::new(f.cfg(), bdf) {
        match capability {
            Ok(capability) if capability.id == id::ACS => return Ok(Some(capability)),
            Ok(_) => {}
            Err(error) => {
                note_fault(fault, CapabilityList::Extended, error)?;
                break;
            }
        }
    }
    Ok(None)
}

/// Describes the function `f` whose header is `header`, on a bus described
/// by `bus`. With `enable_acs`, turns on ACS isolation first, as Linux does
/// before forming groups.
pub(crate) fn describe<C: ConfigSpace + ?Sized>(
    f: &mut Function<'_, C>,
    header: Header,
    bus: BusContext,
    enable_acs: bool,
) -> Result<Described, PciError> {
    let mut fault = None;
    let legacy = walk_legacy(f, &header, &mut fault)?;
    let pcie = decode_or_fault(f, legacy.pcie, CapabilityList::Legacy, &mut fault, |f, capability| {
        pcie::decode(f, capability, bus.parent_type)
    })?;
    let msi = decode_or_fault(f, legacy.msi, CapabilityList::Legacy, &mut fault, msi::decode_msi)?;
    let msix = decode_or_fault(f, legacy.msix, CapabilityList::Legacy, &mut fault, msi::decode_msix)?;
    let pcix_mode2 = pcix_mode2(f, legacy.pcix, &mut fault)?;

    let may_have_extended = pcie.is_some() || header.is_host_bridge() || pcix_mode2;
    let extended = bus.extended_config && may_have_extended && extended_space_answers(f)?;
    let acs_capability = if extended { find_acs(f, &mut fault)? } else { None };
    let mut acs = decode_or_fault(f, acs_capability, CapabilityList::Extended, &mut fault, acs::decode)?;
    if enable_acs && let Some(found) = acs {
        acs = Some(acs::enable_isolation(f, found)?);
    }

    let device_type = pcie.map(|pcie| pcie.device_type);
    let ids = QuirkIds {
        vendor_id: header.vendor_id,
        device_id: header.device_id,
        subsystem_vendor_id: header.subsystem_vendor_id,
        subsystem_id: header.subsystem_id,
    };
    // Linux applies this alias only to a bridge with a conventional face
    // below a PCI Express port that is not itself a PCIe-to-PCI bridge.
    let pcie_bridge_alias = quirks::claims_pcie_bridge_alias(ids)
        && !bus.root
        && header.kind == HeaderKind::PciBridge
        && pcie.is_none()
        && matches!(bus.parent_type, Some(parent) if parent != PcieDeviceType::PcieToPciBridge);
    let dma_alias = DmaAliasQuirk {
        devfns: quirks::dma_alias_devfns(ids, f.bdf()),
        pcie_bridge_alias,
        translation_root: quirks::is_translation_root(ids),
    };
    let child_extended_config = bus.extended_config
        && (matches!(
            device_type,
            Some(PcieDeviceType::RootPort | PcieDeviceType::SwitchUpstream | PcieDeviceType::SwitchDownstream)
        ) || pcix_mode2);

    let function = PciFunction {
        bdf: f.bdf(),
        vendor_id: header.vendor_id,
        device_id: header.device_id,
        subsystem_vendor_id: header.subsystem_vendor_id,
        subsystem_id: header.subsystem_id,
        revision: header.revision,
        class: header.class,
        header: header.kind,
        multifunction: header.multifunction,
        bridge: header.bridge,
        pcie,
        acs,
        acs_quirk: quirks::acs_quirk(ids, device_type),
        dma_alias,
        msi,
        msix,
        capability_fault: fault,
    };
    Ok(Described { function, child_extended_config })
}
