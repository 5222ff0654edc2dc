//! Which root buses to enumerate: the host bridges firmware declares, inside the granted ECAM window.
//!
//! The DSDT names every host bridge with its segment and root bus; the
//! server is granted one MCFG window, one segment's bus range. A bridge
//! of another segment (a second MCFG entry) or outside the range cannot
//! be reached, so its buses are left out, and what lies below them stays
//! blocked (no context entry ever names it). A DSDT that says nothing
//! usable leaves the window's first bus, the one every PC has.

use heapless::Vec;

use crate::ecam::Ecam;

/// Most root buses enumerated (as many as a DSDT may declare).
pub const MAX_ROOT_BUSES: usize = 64;

/// Where a host bridge's root bus is, as the DSDT gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootBus {
    /// `_SEG`.
    pub segment: u16,
    /// `_BBN`.
    pub bus: u8,
}

impl Ecam {
    /// Whether `root` lies in this window: its segment and bus range.
    pub fn holds(&self, root: RootBus) -> bool {
        let (first, last) = self.buses();
        root.segment == self.segment() && (first..=last).contains(&root.bus)
    }
}

/// The root buses of `bridges` (in their order, each once) that `ecam`
/// holds; its first bus if none.
pub fn root_buses(ecam: &Ecam, bridges: impl IntoIterator<Item = RootBus>) -> Vec<u8, MAX_ROOT_BUSES> {
    let mut buses = Vec::new();
    for root in bridges.into_iter().filter(|&root| ecam.holds(root)) {
        if !buses.contains(&root.bus) && buses.push(root.bus).is_err() {
            break;
        }
    }
    if buses.is_empty() {
        let _ = buses.push(ecam.buses().0);
    }
    buses
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(segment: u16, bus: u8) -> RootBus {
        RootBus { segment, bus }
    }

    #[test]
    fn the_windows_root_buses_in_firmware_order_each_once() {
        let q35 = Ecam::new(0xb000_0000, 0, 0, 0xff).unwrap();
        let found = root_buses(&q35, [at(0, 0), at(0, 0x40), at(0, 0x10), at(0, 0x40)]);
        assert_eq!(found.as_slice(), [0, 0x40, 0x10]);
    }

    #[test]
    fn another_segments_bridges_and_buses_outside_the_window_are_left_out() {
        let window = Ecam::new(0xe000_0000, 0, 0x10, 0x1f).unwrap();
        let found = root_buses(&window, [at(0, 0), at(1, 0x10), at(0, 0x14), at(0, 0x20)]);
        assert_eq!(found.as_slice(), [0x14]);
        assert!(!window.holds(at(1, 0x14)) && window.holds(at(0, 0x1f)));
    }

    #[test]
    fn without_a_usable_bridge_the_first_bus_is_enumerated() {
        let window = Ecam::new(0xe000_0000, 2, 0x80, 0xff).unwrap();
        assert_eq!(root_buses(&window, []).as_slice(), [0x80]);
        assert_eq!(root_buses(&window, [at(0, 0x80)]).as_slice(), [0x80]);
    }
}
