//! Device scopes: which PCI functions, IOAPICs and HPETs a structure covers.

use crate::bytes::u8_at;

/// Bytes of a device scope before its path.
const FIXED_LENGTH: usize = 6;

/// What a device scope names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    /// One PCI endpoint function (type 1).
    PciEndpoint,
    /// A PCI-PCI bridge and every function below it (type 2).
    PciSubHierarchy,
    /// An I/O APIC; the enumeration id is its APIC id (type 3).
    IoApic,
    /// An MSI-capable HPET; the enumeration id is its number (type 4).
    Hpet,
    /// An ACPI namespace device named by an ANDD structure (type 5).
    AcpiNamespace,
}

impl ScopeKind {
    /// Decodes the type field.
    pub fn from_type(scope_type: u8) -> Option<Self> {
        match scope_type {
            1 => Some(Self::PciEndpoint),
            2 => Some(Self::PciSubHierarchy),
            3 => Some(Self::IoApic),
            4 => Some(Self::Hpet),
            5 => Some(Self::AcpiNamespace),
            _ => None,
        }
    }

    /// The type field's value.
    pub fn type_code(self) -> u8 {
        match self {
            Self::PciEndpoint => 1,
            Self::PciSubHierarchy => 2,
            Self::IoApic => 3,
            Self::Hpet => 4,
            Self::AcpiNamespace => 5,
        }
    }
}

/// One hop of a scope's path: a device and function on the current bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathElement {
    /// Device number, 0 to 31.
    pub device: u8,
    /// Function number, 0 to 7.
    pub function: u8,
}

/// A PCI function's bus, device and function numbers within its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    /// Bus number.
    pub bus: u8,
    /// Device number, 0 to 31.
    pub device: u8,
    /// Function number, 0 to 7.
    pub function: u8,
}

impl PciAddress {
    /// The 16-bit requester id (source id) VT-d tables are indexed by.
    pub fn source_id(self) -> u16 {
        u16::from(self.bus) << 8 | u16::from(self.device & 0x1f) << 3 | u16::from(self.function & 7)
    }

    /// The address a requester id stands for.
    pub fn from_source_id(source_id: u16) -> Self {
        let [devfn, bus] = source_id.to_le_bytes();
        Self { bus, device: devfn >> 3, function: devfn & 7 }
    }
}

/// One device scope entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceScope<'a> {
    /// What the scope names.
    pub kind: ScopeKind,
    /// The flags byte (bit 0: requests without PASID are blocked, VT-d 4.0).
    pub flags: u8,
    /// APIC id, HPET number or ACPI device number, for those kinds.
    pub enumeration_id: u8,
    /// Bus number the path starts on.
    pub start_bus: u8,
    path: &'a [u8],
}

impl<'a> DeviceScope<'a> {
    /// The path hops, from the start bus down.
    pub fn path(&self) -> impl Iterator<Item = PathElement> + 'a {
        self.path
            .chunks_exact(2)
            .map(|pair| PathElement { device: u8_at(pair, 0).unwrap_or(0), function: u8_at(pair, 1).unwrap_or(0) })
    }

    /// Number of hops in the path.
    pub fn path_len(&self) -> usize {
        self.path.len() / 2
    }

    /// The function the scope names when its path is one hop, the case for
    /// everything on a root bus (QEMU's tables are all of this form).
    pub fn direct_address(&self) -> Option<PciAddress> {
        let mut path = self.path();
        match (path.next(), path.next()) {
            (Some(hop), None) => Some(PciAddress { bus: self.start_bus, device: hop.device, function: hop.function }),
            _ => None,
        }
    }

    /// The function the scope names, following bridges: for every hop but
    /// the last, `secondary_bus(at)` returns the secondary bus number of the
    /// bridge at `at` (read from its config space by the caller), or `None`
    /// if there is no such bridge, which ends the walk with `None`.
    pub fn resolve(&self, mut secondary_bus: impl FnMut(PciAddress) -> Option<u8>) -> Option<PciAddress> {
        let mut bus = self.start_bus;
        let mut current = None;
        for hop in self.path() {
            if let Some(bridge) = current {
                bus = secondary_bus(bridge)?;
            }
            current = Some(PciAddress { bus, device: hop.device, function: hop.function });
        }
        current
    }
}

/// Why one scope entry is malformed, before the structure adds its context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScopeFault {
    Length(u8),
    Type(u8),
    Path { device: u8, function: u8 },
}

/// Decodes the scope at the start of `bytes`; returns it and its length.
pub(super) fn decode_scope(bytes: &[u8]) -> Result<(DeviceScope<'_>, usize), ScopeFault> {
    let scope_type = u8_at(bytes, 0).ok_or(ScopeFault::Length(0))?;
    let length_field = u8_at(bytes, 1).ok_or(ScopeFault::Length(0))?;
    let length = usize::from(length_field);
    // A scope needs at least one hop, and hops are two bytes each.
    if length < FIXED_LENGTH + 2 || !(length - FIXED_LENGTH).is_multiple_of(2) {
        return Err(ScopeFault::Length(length_field));
    }
    let entry = bytes.get(..length).ok_or(ScopeFault::Length(length_field))?;
    let kind = ScopeKind::from_type(scope_type).ok_or(ScopeFault::Type(scope_type))?;
    let path = entry.get(FIXED_LENGTH..).unwrap_or(&[]);
    for pair in path.chunks_exact(2) {
        if let [device, function] = *pair
            && (device > 31 || function > 7)
        {
            return Err(ScopeFault::Path { device, function });
        }
    }
    let scope = DeviceScope {
        kind,
        flags: u8_at(entry, 2).unwrap_or(0),
        enumeration_id: u8_at(entry, 4).unwrap_or(0),
        start_bus: u8_at(entry, 5).unwrap_or(0),
        path,
    };
    Ok((scope, length))
}

/// The device scopes of one structure, in table order.
#[derive(Debug, Clone)]
pub struct DeviceScopes<'a> {
    bytes: &'a [u8],
}

impl<'a> DeviceScopes<'a> {
    /// Scopes packed in `bytes`, which the table check already validated.
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// Checks every scope: lengths, types allowed by `allowed`, paths.
    pub(super) fn check(bytes: &[u8], allowed: impl Fn(ScopeKind) -> bool) -> Result<(), (usize, ScopeFault)> {
        let mut rest = bytes;
        let mut index = 0;
        while !rest.is_empty() {
            let (scope, length) = decode_scope(rest).map_err(|fault| (index, fault))?;
            if !allowed(scope.kind) {
                return Err((index, ScopeFault::Type(scope.kind.type_code())));
            }
            rest = rest.get(length..).unwrap_or(&[]);
            index += 1;
        }
        Ok(())
    }
}

impl<'a> Iterator for DeviceScopes<'a> {
    type Item = DeviceScope<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        match decode_scope(self.bytes) {
            Ok((scope, length)) => {
                self.bytes = self.bytes.get(length..).unwrap_or(&[]);
                Some(scope)
            }
            Err(_) => {
                // Unreachable after the table check; ends the walk rather
                // than yield a half-decoded scope.
                self.bytes = &[];
                None
            }
        }
    }
}
