//! How far below a root bus enumeration reaches, so the server maps only that much ECAM.
//!
//! Firmware numbers the buses below each root-bus bridge from its
//! secondary to its subordinate bus, so the highest subordinate bus of the
//! root bus's bridges bounds every bus enumeration will visit. ECAM on q35
//! spans 256 buses (256 MiB); mapping only the buses in use keeps the
//! server's page tables and memory quota small.

use capabilities::pci::Bdf;

use crate::config::ConfigSpace;
use crate::error::PciError;
use crate::header::Header;

/// The highest bus below `root` that firmware numbered (`root` itself if
/// no bridge on it leads anywhere). Reads only the root bus.
pub fn last_bus<C: ConfigSpace + ?Sized>(cfg: &mut C, root: u8) -> Result<u8, PciError> {
    let mut last = root;
    for device in 0..32 {
        for function in 0..8 {
            let Some(bdf) = Bdf::new(root, device, function) else { continue };
            let Some(header) = Header::read(cfg, bdf)? else {
                if function == 0 {
                    break;
                }
                continue;
            };
            if let Some(buses) = header.bridge
                && buses.secondary > root
            {
                last = last.max(buses.subordinate);
            }
            if function == 0 && !header.multifunction {
                break;
            }
        }
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeConfig, FakeFunction};

    #[test]
    fn the_highest_subordinate_bus_of_the_root_bridges() {
        let mut cfg = FakeConfig::default()
            .with("00:00.0", FakeFunction::endpoint(0x8086, 0x29c0))
            .with("00:01.0", FakeFunction::bridge(0x1b36, 0x000c, 0, 1, 3))
            .with("00:02.0", FakeFunction::bridge(0x1b36, 0x000c, 0, 4, 4).multifunction())
            .with("00:02.1", FakeFunction::bridge(0x1b36, 0x000c, 0, 5, 6))
            // Unconfigured: leads nowhere.
            .with("00:03.0", FakeFunction::bridge(0x1b36, 0x000c, 0, 0, 0xff));
        assert_eq!(last_bus(&mut cfg, 0), Ok(6));
        let mut empty = FakeConfig::default().with("00:00.0", FakeFunction::endpoint(0x8086, 0x29c0));
        assert_eq!(last_bus(&mut empty, 0), Ok(0));
    }
}
