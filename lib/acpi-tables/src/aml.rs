//! Host bridges the DSDT declares: a bounded walk of its AML for PCI root devices and their bus numbers.
//!
//! Linux finds every PCI root bus from the ACPI devices whose `_HID` or
//! `_CID` is PNP0A03 (PCI) or PNP0A08 (PCI Express), reading each one's
//! `_SEG` and `_BBN`; QEMU declares its `pxb-pcie` expander buses that way
//! beside `PCI0`. This walk reads the declarations a DSDT is made of
//! (scopes, devices, names, regions, fields) and skips every method and
//! conditional whole: it evaluates nothing. A host bridge whose `_BBN` or
//! `_SEG` only a method computes is refused by name, as is any opcode the
//! walk does not know where it stands, so a table it cannot read is an
//! error, never a guess.

use heapless::Vec;

/// Most host bridges a DSDT may declare (a two-socket server with a host
/// bridge per PCIe stack has a few dozen).
pub const MAX_HOST_BRIDGES: usize = 64;
/// Deepest nesting of scopes and devices the walk follows.
const MAX_DEPTH: usize = 16;

/// A four-character AML name such as `*b"PC20"`.
pub type NameSeg = [u8; 4];

/// A PCI host bridge: a root bus and its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostBridge {
    /// The device's name in the namespace (its last segment).
    pub name: NameSeg,
    /// `_SEG` (0 when absent).
    pub segment: u16,
    /// `_BBN`, the root bus number (0 when absent).
    pub bus: u8,
}

/// Why the DSDT's host bridges could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmlError {
    /// A term runs past the end of its table or package at `offset`.
    Truncated {
        /// Byte offset in the AML.
        offset: usize,
    },
    /// An opcode the walk does not read, where a declaration should stand.
    Opcode {
        /// Byte offset in the AML.
        offset: usize,
        /// The opcode (the second byte after an extended-opcode prefix).
        opcode: u8,
    },
    /// Scopes and devices nest deeper than the walk follows.
    TooDeep {
        /// Byte offset in the AML.
        offset: usize,
    },
    /// More host bridges than [`MAX_HOST_BRIDGES`].
    TooManyHostBridges,
    /// A host bridge's `_BBN` or `_SEG` is computed by a method (or is
    /// no number).
    Evaluated {
        /// The host bridge.
        device: NameSeg,
        /// `_BBN` or `_SEG`.
        object: NameSeg,
    },
    /// A host bridge's `_BBN` is above 255 or its `_SEG` above 65535.
    Range {
        /// The host bridge.
        device: NameSeg,
        /// `_BBN` or `_SEG`.
        object: NameSeg,
        /// The value.
        value: u64,
    },
}

/// EISA id of a PCI host bridge (PNP0A03), as AML's `EisaId` encodes it.
const PCI_HOST: u64 = 0x030a_d041;
/// EISA id of a PCI Express host bridge (PNP0A08).
const PCIE_HOST: u64 = 0x080a_d041;

/// Every host bridge in the AML `aml` (a DSDT's bytes after its header),
/// in namespace order, which is the order Linux scans them in.
pub fn host_bridges(aml: &[u8]) -> Result<Vec<HostBridge, MAX_HOST_BRIDGES>, AmlError> {
    let mut walk = Walk { aml, bridges: Vec::new() };
    walk.terms(0, aml.len(), 0, None)?;
    Ok(walk.bridges)
}

/// What a device's body says of it.
#[derive(Default)]
struct Facts {
    host: bool,
    bus: Option<Value>,
    segment: Option<Value>,
}

/// A named object's value, as far as the walk reads it.
#[derive(Clone, Copy)]
enum Value {
    Integer(u64),
    /// Computed by a method.
    Method,
    /// A string, buffer or package: no number.
    Other,
}

enum Data {
    Value(Value),
    /// A string or package that names a host-bridge id.
    HostId,
}

struct Walk<'a> {
    aml: &'a [u8],
    bridges: Vec<HostBridge, MAX_HOST_BRIDGES>,
}

impl Walk<'_> {
    fn byte(&self, at: usize) -> Result<u8, AmlError> {
        self.aml.get(at).copied().ok_or(AmlError::Truncated { offset: at })
    }

    /// The terms in `[at, end)`; `facts` is the enclosing device's.
    fn terms(
        &mut self,
        mut at: usize,
        end: usize,
        depth: usize,
        mut facts: Option<&mut Facts>,
    ) -> Result<(), AmlError> {
        if depth > MAX_DEPTH {
            return Err(AmlError::TooDeep { offset: at });
        }
        while at < end {
            at = self.term(at, end, depth, facts.as_deref_mut())?;
        }
        if at > end {
            return Err(AmlError::Truncated { offset: end });
        }
        Ok(())
    }

    /// One term at `at`; where the next starts.
    fn term(&mut self, at: usize, end: usize, depth: usize, facts: Option<&mut Facts>) -> Result<usize, AmlError> {
        match self.byte(at)? {
            0x10 => {
                let (body, close) = self.package(at + 1, end)?;
                let (body, _) = self.name(body, close)?;
                self.terms(body, close, depth + 1, None)?;
                Ok(close)
            }
            0x08 => {
                let (value, name) = self.name(at + 1, end)?;
                let (next, data) = self.data(value, end)?;
                if let Some(facts) = facts {
                    facts.note(name, data);
                }
                Ok(next)
            }
            0x14 => {
                let (body, close) = self.package(at + 1, end)?;
                let (_, name) = self.name(body, close)?;
                if let Some(facts) = facts {
                    facts.note(name, Data::Value(Value::Method));
                }
                Ok(close)
            }
            // If, Else, While: skipped whole, like methods.
            0xa0..=0xa2 => Ok(self.package(at + 1, end)?.1),
            0x15 => Ok(self.name(at + 1, end)?.0 + 2),
            0x06 => {
                let (second, _) = self.name(at + 1, end)?;
                Ok(self.name(second, end)?.0)
            }
            0x5b => self.extended(at, end, depth),
            opcode => Err(AmlError::Opcode { offset: at, opcode }),
        }
    }

    /// A term after the extended-opcode prefix at `at`.
    fn extended(&mut self, at: usize, end: usize, depth: usize) -> Result<usize, AmlError> {
        match self.byte(at + 1)? {
            0x82 => {
                let (body, close) = self.package(at + 2, end)?;
                let (body, name) = self.name(body, close)?;
                let mut facts = Facts::default();
                self.terms(body, close, depth + 1, Some(&mut facts))?;
                if facts.host {
                    let bridge = facts.bridge(name)?;
                    self.bridges.push(bridge).map_err(|_| AmlError::TooManyHostBridges)?;
                }
                Ok(close)
            }
            // Field, Processor, PowerResource, ThermalZone, IndexField, BankField.
            0x81 | 0x83..=0x87 => Ok(self.package(at + 2, end)?.1),
            0x80 => {
                let (space, _) = self.name(at + 2, end)?;
                let (length, _) = self.argument(space + 1, end)?;
                Ok(self.argument(length, end)?.0)
            }
            0x01 => Ok(self.name(at + 2, end)?.0 + 1),
            0x02 => Ok(self.name(at + 2, end)?.0),
            opcode => Err(AmlError::Opcode { offset: at + 1, opcode }),
        }
    }

    /// The package length at `at`: where its contents start and end.
    fn package(&self, at: usize, end: usize) -> Result<(usize, usize), AmlError> {
        let lead = self.byte(at)?;
        let extra = usize::from(lead >> 6);
        let mut length = usize::from(if extra == 0 { lead & 0x3f } else { lead & 0x0f });
        for index in 0..extra {
            length |= usize::from(self.byte(at + 1 + index)?) << (4 + 8 * index);
        }
        let close = at.checked_add(length).filter(|&close| close <= end && close > at + extra);
        close.map(|close| (at + 1 + extra, close)).ok_or(AmlError::Truncated { offset: at })
    }

    /// The name string at `at`: where it ends and its last segment.
    fn name(&self, mut at: usize, end: usize) -> Result<(usize, NameSeg), AmlError> {
        while matches!(self.byte(at)?, b'\\' | b'^') {
            at += 1;
        }
        let (first, count) = match self.byte(at)? {
            0x00 => return Ok((at + 1, [0; 4])),
            0x2e => (at + 1, 2),
            0x2f => (at + 2, usize::from(self.byte(at + 1)?)),
            b'A'..=b'Z' | b'_' => (at, 1),
            opcode => return Err(AmlError::Opcode { offset: at, opcode }),
        };
        let after = first + 4 * count;
        if after > end || count == 0 {
            return Err(AmlError::Truncated { offset: at });
        }
        let last = self.aml.get(after - 4..after).ok_or(AmlError::Truncated { offset: at })?;
        Ok((after, [last[0], last[1], last[2], last[3]]))
    }

    /// An operation region's address or length: a number or a name.
    fn argument(&self, at: usize, end: usize) -> Result<(usize, ()), AmlError> {
        match self.byte(at)? {
            b'\\' | b'^' | b'A'..=b'Z' | b'_' | 0x2e | 0x2f => Ok((self.name(at, end)?.0, ())),
            _ => match self.data(at, end)? {
                (next, Data::Value(Value::Integer(_))) => Ok((next, ())),
                _ => Err(AmlError::Opcode { offset: at, opcode: self.byte(at)? }),
            },
        }
    }

    /// The data object at `at`: where it ends and what it says.
    fn data(&self, at: usize, end: usize) -> Result<(usize, Data), AmlError> {
        let integer = |width: usize| -> Result<(usize, Data), AmlError> {
            let bytes = self.aml.get(at + 1..at + 1 + width).filter(|_| at + 1 + width <= end);
            let bytes = bytes.ok_or(AmlError::Truncated { offset: at })?;
            let value = bytes.iter().rev().fold(0u64, |value, &byte| value << 8 | u64::from(byte));
            Ok((at + 1 + width, Data::Value(Value::Integer(value))))
        };
        match self.byte(at)? {
            0x00 => Ok((at + 1, Data::Value(Value::Integer(0)))),
            0x01 => Ok((at + 1, Data::Value(Value::Integer(1)))),
            0xff => Ok((at + 1, Data::Value(Value::Integer(u64::MAX)))),
            0x0a => integer(1),
            0x0b => integer(2),
            0x0c => integer(4),
            0x0e => integer(8),
            0x0d => {
                let text = self.aml.get(at + 1..end).ok_or(AmlError::Truncated { offset: at })?;
                let length = text.iter().position(|&byte| byte == 0).ok_or(AmlError::Truncated { offset: at })?;
                let host = matches!(&text[..length], b"PNP0A03" | b"PNP0A08");
                Ok((at + 2 + length, if host { Data::HostId } else { Data::Value(Value::Other) }))
            }
            0x11 | 0x13 => Ok((self.package(at + 1, end)?.1, Data::Value(Value::Other))),
            0x12 => self.list(at, end),
            opcode => Err(AmlError::Opcode { offset: at, opcode }),
        }
    }

    /// A package at `at` (a `_CID` may list several ids).
    fn list(&self, at: usize, end: usize) -> Result<(usize, Data), AmlError> {
        let (body, close) = self.package(at + 1, end)?;
        let mut element = body + 1;
        let mut host = false;
        while element < close {
            element = match self.byte(element)? {
                b'\\' | b'^' | b'A'..=b'Z' | b'_' | 0x2e | 0x2f => self.name(element, close)?.0,
                _ => {
                    let (next, data) = self.data(element, close)?;
                    host |= matches!(data, Data::HostId | Data::Value(Value::Integer(PCI_HOST | PCIE_HOST)));
                    next
                }
            };
        }
        Ok((close, if host { Data::HostId } else { Data::Value(Value::Other) }))
    }
}

impl Facts {
    fn note(&mut self, name: NameSeg, data: Data) {
        match (&name, data) {
            (b"_HID" | b"_CID", Data::HostId | Data::Value(Value::Integer(PCI_HOST | PCIE_HOST))) => self.host = true,
            (b"_BBN", Data::Value(value)) => self.bus = Some(value),
            (b"_SEG", Data::Value(value)) => self.segment = Some(value),
            _ => {}
        }
    }

    fn bridge(&self, device: NameSeg) -> Result<HostBridge, AmlError> {
        let number = |value: Option<Value>, object: NameSeg, max: u64| match value {
            None => Ok(0),
            Some(Value::Integer(value)) if value <= max => Ok(value),
            Some(Value::Integer(value)) => Err(AmlError::Range { device, object, value }),
            Some(Value::Method | Value::Other) => Err(AmlError::Evaluated { device, object }),
        };
        let bus = number(self.bus, *b"_BBN", 0xff)?;
        let segment = number(self.segment, *b"_SEG", 0xffff)?;
        Ok(HostBridge { name: device, segment: segment as u16, bus: bus as u8 })
    }
}

#[cfg(test)]
#[path = "aml_tests.rs"]
mod tests;
