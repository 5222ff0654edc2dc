//! What the PVH boot protocol tells the kernel: RAM, the boot image, ACPI.
//!
//! QEMU enters the kernel with the physical address of an `hvm_start_info`
//! structure. This module decodes it through a reader of physical memory so
//! a damaged structure is an error, never a wild read.

use heapless::Vec;

/// `hvm_start_info.magic`.
pub const START_INFO_MAGIC: u32 = 0x336e_c578;

/// Most memory-map entries the kernel takes. A longer map is refused
/// whole: every RAM range must be known, or device memory could be made
/// over RAM the kernel does not know of (and the frame allocator frees).
pub const MAX_REGIONS: usize = 64;

/// Reads bytes of physical memory; `false` where the range cannot be read.
pub trait PhysRead {
    /// Fills `buffer` from physical address `address`.
    fn read(&self, address: u64, buffer: &mut [u8]) -> bool;
}

/// Kind of a memory-map region (the E820 type numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RegionKind {
    /// Usable RAM (type 1).
    Ram,
    /// ACPI tables, reclaimable after they are read (type 3).
    AcpiReclaimable,
    /// Anything else: reserved, ACPI NVS, unusable.
    Reserved,
}

/// One entry of the physical memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Region {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// What the region holds.
    pub kind: RegionKind,
}

/// The boot image QEMU loaded from `-initrd`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Module {
    /// Physical address of its first byte.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
}

/// Everything the kernel takes from `hvm_start_info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// The memory map, in the order given.
    pub regions: Vec<Region, MAX_REGIONS>,
    /// The boot image (module 0), if QEMU was given one.
    pub module: Option<Module>,
    /// Physical address of the ACPI RSDP, 0 if none.
    pub rsdp: u64,
}

/// Why `hvm_start_info` could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BootInfoError {
    /// A structure lies where memory cannot be read.
    Unreadable,
    /// The magic number is wrong: not entered through PVH.
    BadMagic,
    /// Version 0 of the structure has no memory map.
    NoMemoryMap,
    /// The memory map has more entries than [`MAX_REGIONS`].
    TooManyRegions(u32),
}

impl BootInfo {
    /// Decodes the `hvm_start_info` at `address`; a memory map of more
    /// than [`MAX_REGIONS`] entries is refused.
    pub fn read(memory: &impl PhysRead, address: u64) -> Result<Self, BootInfoError> {
        let mut header = [0u8; 56];
        if !memory.read(address, &mut header) {
            return Err(BootInfoError::Unreadable);
        }
        let word = |at: usize| u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
        let quad = |at: usize| u64::from(word(at)) | (u64::from(word(at + 4)) << 32);
        if word(0) != START_INFO_MAGIC {
            return Err(BootInfoError::BadMagic);
        }
        if word(4) < 1 {
            return Err(BootInfoError::NoMemoryMap);
        }
        let (modules, module_list, rsdp) = (word(12), quad(16), quad(32));
        let (map, entries) = (quad(40), word(48));
        if entries as usize > MAX_REGIONS {
            return Err(BootInfoError::TooManyRegions(entries));
        }

        let mut regions = Vec::new();
        for entry in 0..u64::from(entries) {
            let mut raw = [0u8; 24];
            if !memory.read(map + entry * 24, &mut raw) {
                return Err(BootInfoError::Unreadable);
            }
            let field = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().unwrap_or([0; 8]));
            let kind = match u32::from_le_bytes([raw[16], raw[17], raw[18], raw[19]]) {
                1 => RegionKind::Ram,
                3 => RegionKind::AcpiReclaimable,
                _ => RegionKind::Reserved,
            };
            // At most MAX_REGIONS entries, checked above.
            let _ = regions.push(Region { start: field(0), size: field(8), kind });
        }

        let module = if modules == 0 {
            None
        } else {
            let mut raw = [0u8; 16];
            if !memory.read(module_list, &mut raw) {
                return Err(BootInfoError::Unreadable);
            }
            let start = u64::from_le_bytes(raw[0..8].try_into().unwrap_or([0; 8]));
            let size = u64::from_le_bytes(raw[8..16].try_into().unwrap_or([0; 8]));
            Some(Module { start, size })
        };
        Ok(Self { regions, module, rsdp })
    }

    /// Bytes of usable RAM in the map.
    pub fn ram_bytes(&self) -> u64 {
        self.regions.iter().filter(|r| r.kind == RegionKind::Ram).map(|r| r.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bytes(std::vec::Vec<u8>);

    impl PhysRead for Bytes {
        fn read(&self, address: u64, buffer: &mut [u8]) -> bool {
            let start = address as usize;
            match self.0.get(start..start + buffer.len()) {
                Some(bytes) => {
                    buffer.copy_from_slice(bytes);
                    true
                }
                None => false,
            }
        }
    }

    fn put(memory: &mut [u8], at: usize, bytes: &[u8]) {
        memory[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// A start-info at 0x100 with the map at 0x200 and one module at 0x300.
    fn start_info(entries: u32, modules: u32) -> std::vec::Vec<u8> {
        let mut memory = vec![0u8; 0x2000];
        put(&mut memory, 0x100, &START_INFO_MAGIC.to_le_bytes());
        put(&mut memory, 0x104, &1u32.to_le_bytes());
        put(&mut memory, 0x10c, &modules.to_le_bytes());
        put(&mut memory, 0x110, &0x300u64.to_le_bytes());
        put(&mut memory, 0x120, &0xf_0000u64.to_le_bytes());
        put(&mut memory, 0x128, &0x200u64.to_le_bytes());
        put(&mut memory, 0x130, &entries.to_le_bytes());
        for entry in 0..entries as usize {
            let at = 0x200 + entry * 24;
            put(&mut memory, at, &((entry as u64) << 20).to_le_bytes());
            put(&mut memory, at + 8, &0x8_0000u64.to_le_bytes());
            put(&mut memory, at + 16, &(if entry % 2 == 0 { 1u32 } else { 2 }).to_le_bytes());
        }
        put(&mut memory, 0x300, &0x1234_5000u64.to_le_bytes());
        put(&mut memory, 0x308, &0x6000u64.to_le_bytes());
        memory
    }

    #[test]
    fn decodes_memory_map_module_and_rsdp() {
        let info = BootInfo::read(&Bytes(start_info(3, 1)), 0x100).expect("valid");
        assert_eq!(info.regions.len(), 3);
        assert_eq!(info.regions[1], Region { start: 1 << 20, size: 0x8_0000, kind: RegionKind::Reserved });
        assert_eq!(info.ram_bytes(), 2 * 0x8_0000);
        assert_eq!(info.module, Some(Module { start: 0x1234_5000, size: 0x6000 }));
        assert_eq!(info.rsdp, 0xf_0000);
    }

    #[test]
    fn refuses_bad_magic_old_versions_and_unreadable_maps() {
        let mut memory = start_info(3, 0);
        assert_eq!(BootInfo::read(&Bytes(memory.clone()), 0x100).map(|info| info.module), Ok(None));
        put(&mut memory, 0x128, &0x10_0000u64.to_le_bytes());
        assert_eq!(BootInfo::read(&Bytes(memory.clone()), 0x100), Err(BootInfoError::Unreadable));
        put(&mut memory, 0x104, &0u32.to_le_bytes());
        assert_eq!(BootInfo::read(&Bytes(memory.clone()), 0x100), Err(BootInfoError::NoMemoryMap));
        put(&mut memory, 0x100, &0u32.to_le_bytes());
        assert_eq!(BootInfo::read(&Bytes(memory), 0x100), Err(BootInfoError::BadMagic));
        assert_eq!(BootInfo::read(&Bytes(vec![0; 8]), 0x100), Err(BootInfoError::Unreadable));
    }

    #[test]
    fn a_map_longer_than_the_kernel_keeps_is_refused_not_cut() {
        let longest = BootInfo::read(&Bytes(start_info(MAX_REGIONS as u32, 0)), 0x100).expect("valid");
        assert_eq!(longest.regions.len(), MAX_REGIONS);
        assert_eq!(BootInfo::read(&Bytes(start_info(70, 0)), 0x100), Err(BootInfoError::TooManyRegions(70)));
    }
}
