//! The PCI server's configuration-space walks on devices the input builds.
//!
//! Every function's registers come from the input (a template patched
//! byte by byte), so capability lists may loop, point out of range or
//! end anywhere; enumeration may meet bridges whose bus numbers lie.
//! Every walk must end by itself, within the bound the crate promises.

use capabilities::pci::{Bdf, MAX_FUNCTIONS};
use pci_server::caps::{ExtendedCapabilities, LegacyCapabilities};
use pci_server::config::{CONFIG_SPACE_SIZE, LEGACY_SPACE_SIZE};
use pci_server::header::Header;
use pci_server::testing::{FakeConfig, FakeFunction};
use pci_server::{Options, bar, enumerate};

use crate::input::Input;

/// One function's registers: an endpoint or a bridge, then the input's patches.
fn function(input: &mut Input<'_>, bus: u8) -> Vec<u8> {
    let extended = input.bool();
    let mut bytes = vec![0u8; usize::from(if extended { CONFIG_SPACE_SIZE } else { LEGACY_SPACE_SIZE })];
    bytes[..4].copy_from_slice(&[0x34, 0x12, 0xe8, 0x11]);
    let flags = input.u8();
    if flags & 1 != 0 {
        // A type 1 bridge with bus numbers near its own.
        bytes[0x0e] = 1;
        bytes[0x0a] = 0x04;
        bytes[0x0b] = 0x06;
        bytes[0x18] = bus;
        bytes[0x19] = bus.wrapping_add(1 + input.below(3) as u8);
        bytes[0x1a] = bytes[0x19].wrapping_add(input.below(3) as u8);
    }
    if flags & 2 != 0 {
        bytes[0x0e] |= 0x80;
    }
    if flags & 4 != 0 {
        // A legacy capability chain whose ids and pointers the input picks.
        bytes[0x06] |= 0x10;
        bytes[0x34] = 0x40 + (input.u8() & 0x3c);
        for _ in 0..input.below(5) {
            let at = usize::from(0x40 + (input.u8() % 0xbc));
            bytes[at] = [0x10, 0x05, 0x11, 0x07, 0x01][input.below(5)];
            bytes[at + 1] = input.u8();
            if bytes[at] == 0x10 {
                bytes[at + 2] = input.u8() << 4 | 2;
            }
        }
    }
    if extended && flags & 8 != 0 {
        // An extended chain: ACS and others, with next pointers from the input.
        let mut at = 0x100usize;
        for _ in 0..1 + input.below(4) {
            let next = u32::from(input.u16() & 0xffc);
            let id = [0x000d, 0x0001, 0x000b][input.below(3)];
            let header = next << 20 | 1 << 16 | id;
            bytes[at..at + 4].copy_from_slice(&header.to_le_bytes());
            bytes[at + 4..at + 8].copy_from_slice(&input.u32().to_le_bytes());
            match usize::try_from(next) {
                Ok(next) if next >= 0x100 && next + 8 <= bytes.len() => at = next,
                _ => break,
            }
        }
    }
    for _ in 0..input.below(8) {
        let at = usize::from(input.u16()) % bytes.len();
        let len = input.below(8);
        let patch = input.take(len);
        for (offset, byte) in patch.iter().enumerate() {
            if let Some(slot) = bytes.get_mut(at + offset) {
                *slot = *byte;
            }
        }
    }
    bytes
}

/// `pci-caps`: enumerates a bus tree the input builds, then walks every
/// function's capability lists and sizes its BARs.
pub fn pci(data: &[u8]) {
    let mut input = Input::new(data);
    let options = Options { segment: 0, extended_config: input.bool(), enable_acs: input.bool() };
    // The fake panics on any access the crate promised never to make.
    let mut cfg = FakeConfig::default();
    for _ in 0..1 + input.below(8) {
        let bus = input.below(4) as u8;
        let device = if input.bool() { input.below(4) as u8 } else { input.below(32) as u8 };
        let function_number = if input.bool() { 0 } else { input.below(8) as u8 };
        let Some(bdf) = Bdf::new(bus, device, function_number) else { continue };
        let bytes = function(&mut input, bus);
        cfg.functions.insert(bdf, FakeFunction { bytes, bar_masks: [None; 6] });
    }
    if let Ok(topology) = enumerate(&mut cfg, &[0], options) {
        assert!(topology.functions.len() <= MAX_FUNCTIONS);
    }
    let present: Vec<Bdf> = cfg.functions.keys().copied().collect();
    for bdf in present {
        let Ok(Some(header)) = Header::read(&mut cfg, bdf) else { continue };
        let legacy = LegacyCapabilities::new(&mut cfg, bdf, header.capabilities_pointer()).take(1000).count();
        assert!(legacy <= 49, "a legacy list walk visited {legacy} entries");
        if options.extended_config {
            let extended = ExtendedCapabilities::new(&mut cfg, bdf).take(2000).count();
            assert!(extended <= 961, "an extended list walk visited {extended} entries");
        }
        let _ = bar::size_all(&mut cfg, bdf, header.kind);
    }
}
