//! A synthetic configuration space for tests and fuzzing: functions built byte by byte.
//!
//! Built for this crate's unit tests and, with the `testing` feature, for
//! the fuzz targets. An access the crate promised never to make (out of
//! range or misaligned) panics, so tests and fuzzing catch it.

use std::collections::BTreeMap;
use std::vec::Vec;

use capabilities::pci::Bdf;

use crate::config::{AccessError, ConfigSpace, access_is_valid};

/// One emulated function.
#[derive(Clone)]
pub struct FakeFunction {
    /// Its registers (256 or 4096 bytes).
    pub bytes: Vec<u8>,
    /// Per BAR: the bits software can write (the rest read as programmed
    /// type bits or zero), or `None` to treat the register as plain memory.
    pub bar_masks: [Option<u32>; 6],
}

impl FakeFunction {
    /// A type 0 function with extended space (4096 bytes).
    pub fn endpoint(vendor: u16, device: u16) -> Self {
        let mut function = Self { bytes: std::vec![0; 4096], bar_masks: [None; 6] };
        function.set16(0x00, vendor);
        function.set16(0x02, device);
        function
    }

    /// A type 1 bridge to `secondary..=subordinate` on `primary`.
    pub fn bridge(vendor: u16, device: u16, primary: u8, secondary: u8, subordinate: u8) -> Self {
        let mut function = Self::endpoint(vendor, device);
        function.bytes[0x0e] = 1;
        function.bytes[0x0b] = 0x06;
        function.bytes[0x0a] = 0x04;
        function.bytes[0x18] = primary;
        function.bytes[0x19] = secondary;
        function.bytes[0x1a] = subordinate;
        function
    }

    /// Only the first 256 bytes, as a conventional function has.
    pub fn conventional(mut self) -> Self {
        self.bytes.truncate(256);
        self
    }

    /// Sets the multifunction bit.
    pub fn multifunction(mut self) -> Self {
        self.bytes[0x0e] |= 0x80;
        self
    }

    /// Writes a 16-bit value.
    pub fn set16(&mut self, offset: usize, value: u16) {
        self.bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
    }

    /// Writes a 32-bit value.
    pub fn set32(&mut self, offset: usize, value: u32) {
        self.bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// Adds a legacy capability `id` at `offset` whose next pointer is `next`,
    /// linking it from the capabilities pointer if it is the first.
    pub fn legacy_cap(mut self, offset: u8, id: u8, next: u8) -> Self {
        if self.bytes[0x06] & 0x10 == 0 {
            self.bytes[0x06] |= 0x10;
            self.bytes[0x34] = offset;
        }
        self.bytes[usize::from(offset)] = id;
        self.bytes[usize::from(offset) + 1] = next;
        self
    }

    /// A PCI Express capability of `device_type` at `offset`.
    pub fn pcie(self, offset: u8, device_type: u8, next: u8) -> Self {
        let mut function = self.legacy_cap(offset, 0x10, next);
        function.set16(usize::from(offset) + 2, u16::from(device_type) << 4 | 2);
        function
    }

    /// Adds an extended capability header at `offset`.
    pub fn extended_cap(mut self, offset: u16, id: u16, next: u16) -> Self {
        self.set32(usize::from(offset), u32::from(next) << 20 | 1 << 16 | u32::from(id));
        self
    }

    /// An ACS capability at `offset` with these registers.
    pub fn acs(self, offset: u16, capability: u16, control: u16, next: u16) -> Self {
        let mut function = self.extended_cap(offset, 0x000d, next);
        function.set16(usize::from(offset) + 4, capability);
        function.set16(usize::from(offset) + 6, control);
        function
    }

    /// A BAR whose writable address bits are `mask`, programmed to `value`.
    pub fn bar(mut self, index: usize, value: u32, mask: u32) -> Self {
        self.set32(0x10 + 4 * index, value);
        self.bar_masks[index] = Some(mask);
        self
    }
}

/// Functions by address; everything else reads as all ones.
#[derive(Default)]
pub struct FakeConfig {
    /// The functions.
    pub functions: BTreeMap<Bdf, FakeFunction>,
    /// Set when a BAR was written while the function decoded memory or I/O.
    pub bar_written_while_decoding: bool,
    /// An access at this function and offset fails (to test error reports).
    pub fail_at: Option<(Bdf, u16)>,
}

impl FakeConfig {
    /// Adds `function` at `at` ("BB:DD.F").
    pub fn with(mut self, at: &str, function: FakeFunction) -> Self {
        self.functions.insert(bdf(at), function);
        self
    }

    fn check(&self, target: Bdf, offset: u16, width: u16) -> Result<(), AccessError> {
        assert!(access_is_valid(offset, width), "the crate promised aligned in-range accesses: {offset:#x}/{width}");
        if self.fail_at == Some((target, offset)) {
            return Err(AccessError::BadOffset);
        }
        Ok(())
    }

    fn read(&mut self, target: Bdf, offset: u16, width: u16) -> Result<u32, AccessError> {
        self.check(target, offset, width)?;
        let start = usize::from(offset);
        let Some(bytes) = self.functions.get(&target).and_then(|f| f.bytes.get(start..start + usize::from(width)))
        else {
            return Ok(u32::MAX >> (32 - 8 * u32::from(width)));
        };
        Ok(bytes.iter().rev().fold(0, |value, &byte| value << 8 | u32::from(byte)))
    }

    fn write(&mut self, target: Bdf, offset: u16, width: u16, value: u32) -> Result<(), AccessError> {
        self.check(target, offset, width)?;
        let Some(function) = self.functions.get_mut(&target) else { return Ok(()) };
        let start = usize::from(offset);
        let bar = (0x10..0x28).contains(&start).then(|| (start - 0x10) / 4);
        if let Some(mask) = bar.and_then(|index| function.bar_masks[index]) {
            let command = u16::from_le_bytes([function.bytes[4], function.bytes[5]]);
            if value == u32::MAX && command & 3 != 0 {
                self.bar_written_while_decoding = true;
            }
            let old = u32::from_le_bytes(function.bytes[start..start + 4].try_into().unwrap());
            let kept = (old & !mask) | (value & mask);
            function.bytes[start..start + 4].copy_from_slice(&kept.to_le_bytes());
            return Ok(());
        }
        if let Some(bytes) = function.bytes.get_mut(start..start + usize::from(width)) {
            bytes.copy_from_slice(&value.to_le_bytes()[..usize::from(width)]);
        }
        Ok(())
    }
}

impl ConfigSpace for FakeConfig {
    fn read8(&mut self, bdf: Bdf, offset: u16) -> Result<u8, AccessError> {
        self.read(bdf, offset, 1).map(|v| v as u8)
    }
    fn read16(&mut self, bdf: Bdf, offset: u16) -> Result<u16, AccessError> {
        self.read(bdf, offset, 2).map(|v| v as u16)
    }
    fn read32(&mut self, bdf: Bdf, offset: u16) -> Result<u32, AccessError> {
        self.read(bdf, offset, 4)
    }
    fn write8(&mut self, bdf: Bdf, offset: u16, value: u8) -> Result<(), AccessError> {
        self.write(bdf, offset, 1, value.into())
    }
    fn write16(&mut self, bdf: Bdf, offset: u16, value: u16) -> Result<(), AccessError> {
        self.write(bdf, offset, 2, value.into())
    }
    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) -> Result<(), AccessError> {
        self.write(bdf, offset, 4, value)
    }
}

/// Parses `BB:DD.F`.
pub fn bdf(text: &str) -> Bdf {
    let (bus, rest) = text.split_once(':').unwrap();
    let (device, function) = rest.split_once('.').unwrap();
    let hex = |s: &str| u8::from_str_radix(s, 16).unwrap();
    Bdf::new(hex(bus), hex(device), hex(function)).unwrap()
}
