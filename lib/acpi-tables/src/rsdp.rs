//! The Root System Description Pointer: where the table tree starts.

use core::fmt;

use crate::bytes::{array_at, byte_sum, u8_at, u32_at, u64_at};
use crate::memory::TableMemory;
use crate::root::RootKind;

/// The RSDP's signature.
pub const SIGNATURE: [u8; 8] = *b"RSD PTR ";
/// Bytes covered by the ACPI 1.0 checksum.
const V1_LENGTH: usize = 20;
/// Bytes of the ACPI 2.0 structure.
const V2_LENGTH: usize = 36;
/// Largest extended length accepted; the structure is 36 bytes today, and
/// a bound keeps the read inside a fixed stack buffer.
const MAX_LENGTH: usize = 64;

/// Why an RSDP was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsdpError {
    /// Memory at the pointer's address could not be read.
    Unreadable {
        /// Physical address of the pointer.
        address: u64,
    },
    /// The first eight bytes are not `"RSD PTR "`.
    Signature,
    /// The first 20 bytes do not sum to zero.
    Checksum {
        /// What they summed to.
        sum: u8,
    },
    /// A revision-2 pointer's length field is out of range.
    ExtendedLength {
        /// The length field.
        length: u32,
    },
    /// A revision-2 pointer's whole structure does not sum to zero.
    ExtendedChecksum {
        /// What it summed to.
        sum: u8,
    },
    /// The root table address is zero.
    NoRootTable,
    /// No valid pointer lies in the scanned range.
    NotFound,
}

impl fmt::Display for RsdpError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable { address } => write!(formatter, "RSDP at {address:#x} is not readable"),
            Self::Signature => formatter.write_str("RSDP signature is not \"RSD PTR \""),
            Self::Checksum { sum } => write!(formatter, "RSDP checksum: first 20 bytes sum to {sum:#04x}"),
            Self::ExtendedLength { length } => write!(formatter, "RSDP length {length} is out of range"),
            Self::ExtendedChecksum { sum } => write!(formatter, "RSDP extended checksum: bytes sum to {sum:#04x}"),
            Self::NoRootTable => formatter.write_str("RSDP names no root table"),
            Self::NotFound => formatter.write_str("no RSDP in the scanned range"),
        }
    }
}

/// A checked Root System Description Pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rsdp {
    /// The OEM that built the tables.
    pub oem_id: [u8; 6],
    /// 0 for ACPI 1.0 (RSDT only), 2 or more for ACPI 2.0+ (XSDT too).
    pub revision: u8,
    /// Physical address of the RSDT (32-bit entries).
    pub rsdt_address: u32,
    /// Physical address of the XSDT (64-bit entries), revision 2 and up.
    pub xsdt_address: Option<u64>,
}

impl Rsdp {
    /// Checks the pointer at the start of `bytes`: signature, checksum and,
    /// from revision 2 on, the extended length and checksum.
    pub fn parse(bytes: &[u8]) -> Result<Self, RsdpError> {
        let v1 = check_v1(bytes)?;
        let revision = u8_at(v1, 15).unwrap_or(0);
        let oem_id = array_at(v1, 9).unwrap_or([0; 6]);
        let rsdt_address = u32_at(v1, 16).unwrap_or(0);
        let xsdt_address = if revision >= 2 {
            let length = u32_at(bytes, 20).ok_or(RsdpError::ExtendedLength { length: 0 })?;
            let whole = usize::try_from(length)
                .ok()
                .filter(|length| (V2_LENGTH..=MAX_LENGTH).contains(length))
                .and_then(|length| bytes.get(..length))
                .ok_or(RsdpError::ExtendedLength { length })?;
            let sum = byte_sum(whole);
            if sum != 0 {
                return Err(RsdpError::ExtendedChecksum { sum });
            }
            u64_at(whole, 24).filter(|address| *address != 0)
        } else {
            None
        };
        if rsdt_address == 0 && xsdt_address.is_none() {
            return Err(RsdpError::NoRootTable);
        }
        Ok(Self { oem_id, revision, rsdt_address, xsdt_address })
    }

    /// Reads and checks the pointer at `physical` (for example the address
    /// PVH boot hands over in `hvm_start_info`).
    pub fn read(memory: &impl TableMemory, physical: u64) -> Result<Self, RsdpError> {
        let mut buffer = [0u8; MAX_LENGTH];
        let v1 = buffer.get_mut(..V1_LENGTH).ok_or(RsdpError::Unreadable { address: physical })?;
        if !memory.read(physical, v1) {
            return Err(RsdpError::Unreadable { address: physical });
        }
        if u8_at(check_v1(v1)?, 15).unwrap_or(0) < 2 {
            return Self::parse(v1);
        }
        let length = {
            let field = buffer.get_mut(20..24).ok_or(RsdpError::Unreadable { address: physical })?;
            let start = physical.checked_add(20).ok_or(RsdpError::Unreadable { address: physical })?;
            if !memory.read(start, field) {
                return Err(RsdpError::Unreadable { address: physical });
            }
            u32_at(&buffer, 20).unwrap_or(0)
        };
        let whole = usize::try_from(length)
            .ok()
            .filter(|length| (V2_LENGTH..=MAX_LENGTH).contains(length))
            .and_then(|length| buffer.get_mut(..length))
            .ok_or(RsdpError::ExtendedLength { length })?;
        if !memory.read(physical, whole) {
            return Err(RsdpError::Unreadable { address: physical });
        }
        Self::parse(whole)
    }

    /// Looks for a valid pointer on 16-byte boundaries in `[start, end)`, the
    /// way firmware places it in the BIOS area (0xe0000..0x100000) or the
    /// EBDA; returns its address and contents.
    pub fn scan(memory: &impl TableMemory, start: u64, end: u64) -> Result<(u64, Self), RsdpError> {
        let mut address = start.checked_next_multiple_of(16).ok_or(RsdpError::NotFound)?;
        while address < end {
            let mut signature = [0u8; 8];
            if memory.read(address, &mut signature)
                && signature == SIGNATURE
                && let Ok(rsdp) = Self::read(memory, address)
            {
                return Ok((address, rsdp));
            }
            address = address.checked_add(16).ok_or(RsdpError::NotFound)?;
        }
        Err(RsdpError::NotFound)
    }

    /// The root table to walk: the XSDT when there is one, else the RSDT.
    pub fn root_table(&self) -> (RootKind, u64) {
        match self.xsdt_address {
            Some(address) => (RootKind::Xsdt, address),
            None => (RootKind::Rsdt, u64::from(self.rsdt_address)),
        }
    }
}

/// Checks the signature and the ACPI 1.0 checksum; returns the 20 bytes
/// that checksum covers.
fn check_v1(bytes: &[u8]) -> Result<&[u8], RsdpError> {
    if array_at::<8>(bytes, 0) != Some(SIGNATURE) {
        return Err(RsdpError::Signature);
    }
    let v1 = bytes.get(..V1_LENGTH).ok_or(RsdpError::Signature)?;
    let sum = byte_sum(v1);
    if sum != 0 {
        return Err(RsdpError::Checksum { sum });
    }
    Ok(v1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SliceMemory;
    use crate::testing::rsdp;

    fn v1(rsdt: u32) -> Vec<u8> {
        rsdp(0, rsdt, 0)
    }

    fn v2(rsdt: u32, xsdt: u64) -> Vec<u8> {
        rsdp(2, rsdt, xsdt)
    }

    #[test]
    fn qemu_7_2_q35_pointer_is_revision_0_with_an_rsdt() {
        // Bytes of the RSDP SeaBIOS built for `-M q35 -device intel-iommu`
        // under QEMU 7.2, dumped from guest memory at 0xf59e0.
        let bytes = [
            0x52, 0x53, 0x44, 0x20, 0x50, 0x54, 0x52, 0x20, 0x87, 0x42, 0x4f, 0x43, 0x48, 0x53, 0x20, 0x00, 0xa4, 0x22,
            0xfe, 0x07,
        ];
        let rsdp = Rsdp::parse(&bytes).unwrap();
        assert_eq!(rsdp.revision, 0);
        assert_eq!(rsdp.oem_id, *b"BOCHS ");
        assert_eq!(rsdp.root_table(), (RootKind::Rsdt, 0x07fe_22a4));
    }

    #[test]
    fn version_2_prefers_the_xsdt() {
        let rsdp = Rsdp::parse(&v2(0x1000, 0x2_0000_0000)).unwrap();
        assert_eq!(rsdp.root_table(), (RootKind::Xsdt, 0x2_0000_0000));
        let rsdp = Rsdp::parse(&v2(0x1000, 0)).unwrap();
        assert_eq!(rsdp.root_table(), (RootKind::Rsdt, 0x1000));
    }

    #[test]
    fn corrupted_pointers_are_refused_by_field() {
        let mut bad = v1(0x1000);
        bad[0] = b'X';
        assert_eq!(Rsdp::parse(&bad), Err(RsdpError::Signature));
        let mut bad = v1(0x1000);
        bad[16] ^= 1;
        assert!(matches!(Rsdp::parse(&bad), Err(RsdpError::Checksum { .. })));
        assert_eq!(Rsdp::parse(&v1(0)), Err(RsdpError::NoRootTable));
        assert_eq!(Rsdp::parse(&v1(0x1000)[..19]), Err(RsdpError::Signature));

        let mut bad = v2(0x1000, 0x2000);
        bad[30] ^= 1;
        assert!(matches!(Rsdp::parse(&bad), Err(RsdpError::ExtendedChecksum { .. })));
        for length in [0u32, 20, 35, 65, u32::MAX] {
            let mut bad = v2(0x1000, 0x2000);
            bad[20..24].copy_from_slice(&length.to_le_bytes());
            assert_eq!(Rsdp::parse(&bad), Err(RsdpError::ExtendedLength { length }));
        }
        let good = v2(0x1000, 0x2000);
        assert!(matches!(Rsdp::parse(&good[..30]), Err(RsdpError::ExtendedLength { length: 36 })));
    }

    #[test]
    fn reads_and_scans_through_memory() {
        let mut memory_bytes = vec![0u8; 0x200];
        memory_bytes[0x40..0x40 + 20].copy_from_slice(&v1(0x1000));
        let bad = {
            let mut bad = v1(0x1000);
            bad[19] ^= 0x80;
            bad
        };
        memory_bytes[0x20..0x20 + 20].copy_from_slice(&bad);
        memory_bytes[0x100..0x100 + 36].copy_from_slice(&v2(0x3000, 0x4000));
        let memory = SliceMemory { base: 0xe0000, bytes: &memory_bytes };

        assert_eq!(Rsdp::read(&memory, 0xe0040).unwrap().rsdt_address, 0x1000);
        assert_eq!(Rsdp::read(&memory, 0xe0100).unwrap().xsdt_address, Some(0x4000));
        assert_eq!(Rsdp::read(&memory, 0xd0000), Err(RsdpError::Unreadable { address: 0xd0000 }));
        let (address, found) = Rsdp::scan(&memory, 0xe0001, 0xe0200).unwrap();
        assert_eq!((address, found.rsdt_address), (0xe0040, 0x1000));
        let (address, _) = Rsdp::scan(&memory, 0xe0050, 0xe0200).unwrap();
        assert_eq!(address, 0xe0100);
        assert_eq!(Rsdp::scan(&memory, 0xe0110, 0xe0200), Err(RsdpError::NotFound));
        assert_eq!(Rsdp::scan(&memory, u64::MAX - 4, u64::MAX), Err(RsdpError::NotFound));
    }
}
