//! A checked view of a topology: each function's upstream bridge and Linux's probe order.

use capabilities::pci::{Bdf, MAX_FUNCTIONS, PciFunction};
use heapless::Vec;

use crate::error::GroupError;

/// A topology whose buses form a forest, with each function's upstream
/// bridge resolved and the order Linux probes functions in.
///
/// # Invariants
///
/// Addresses are unique, no two bridges share a secondary bus, and following
/// [`Self::parent`] from any function reaches a root bus in fewer than
/// `len()` steps.
pub struct TopologyIndex<'a> {
    functions: &'a [PciFunction],
    /// Entry `i`: the bridge whose secondary bus function `i` is on.
    parent: [Option<usize>; MAX_FUNCTIONS],
    /// Function indices in Linux's probe order.
    order: [usize; MAX_FUNCTIONS],
}

impl<'a> TopologyIndex<'a> {
    /// Checks `functions` (at most [`MAX_FUNCTIONS`], as a
    /// [`capabilities::pci::Topology`] holds) and indexes it.
    pub fn new(functions: &'a [PciFunction]) -> Result<Self, GroupError> {
        if functions.len() > MAX_FUNCTIONS {
            return Err(GroupError::TooManyFunctions { count: functions.len() });
        }
        let mut index = Self { functions, parent: [None; MAX_FUNCTIONS], order: [0; MAX_FUNCTIONS] };
        for (i, function) in functions.iter().enumerate() {
            if functions.iter().take(i).any(|earlier| earlier.bdf == function.bdf) {
                return Err(GroupError::DuplicateFunction { bdf: function.bdf });
            }
            if let Some(slot) = index.parent.get_mut(i) {
                *slot = bridge_of_bus(functions, function.bdf.bus())?;
            }
        }
        for (i, function) in functions.iter().enumerate() {
            // Walking up more bridges than there are functions means a loop.
            if index.ancestors(i).nth(functions.len()).is_some() {
                return Err(GroupError::BridgeLoop { bdf: function.bdf });
            }
        }
        index.order = probe_order(functions, &index.parent);
        Ok(index)
    }

    /// Number of functions.
    pub fn len(&self) -> usize {
        self.functions.len()
    }

    /// Whether there are no functions.
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }

    /// Function `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&'a PciFunction> {
        self.functions.get(i)
    }

    /// Address of function `i` (a zero address for an index out of range,
    /// which callers never pass: indices come from this index).
    pub fn bdf(&self, i: usize) -> Bdf {
        self.get(i).map_or(Bdf::from_requester_id(0), |function| function.bdf)
    }

    /// The bridge above function `i`'s bus; `None` on a root bus.
    pub fn parent(&self, i: usize) -> Option<usize> {
        self.parent.get(i).copied().flatten()
    }

    /// Whether function `i` sits on a root bus.
    pub fn on_root_bus(&self, i: usize) -> bool {
        self.parent(i).is_none()
    }

    /// The bridges above function `i`, nearest first.
    pub fn ancestors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        core::iter::successors(self.parent(i), move |&bridge| self.parent(bridge))
    }

    /// Function indices in the order Linux probes them: each root bus in
    /// the order the topology first lists it (the firmware's host-bridge
    /// order), its functions by device and function number, then the bus
    /// below each of its bridges in turn, depth first (the order of Linux's
    /// scan, which adds devices as it finds them).
    pub fn probe_order(&self) -> impl Iterator<Item = usize> + '_ {
        self.order.iter().take(self.len()).copied()
    }

    /// Index of the function at `bdf`.
    pub fn find(&self, bdf: Bdf) -> Option<usize> {
        self.functions.iter().position(|function| function.bdf == bdf)
    }
}

/// The bridge whose secondary bus is `bus`, if exactly one claims it.
fn bridge_of_bus(functions: &[PciFunction], bus: u8) -> Result<Option<usize>, GroupError> {
    let mut claimants = functions
        .iter()
        .enumerate()
        .filter(|(_, function)| function.bridge.is_some_and(|buses| buses.secondary == bus));
    match (claimants.next(), claimants.next()) {
        (Some((_, first)), Some((_, second))) => {
            Err(GroupError::SharedSecondaryBus { bus, first: first.bdf, second: second.bdf })
        }
        (first, None) => Ok(first.map(|(index, _)| index)),
        (None, Some(_)) => Ok(None),
    }
}

/// Linux's probe order (see [`TopologyIndex::probe_order`]), for a topology
/// already checked to be a forest.
fn probe_order(functions: &[PciFunction], parent: &[Option<usize>; MAX_FUNCTIONS]) -> [usize; MAX_FUNCTIONS] {
    // Indices sorted by address: each bus's functions form one run in devfn order.
    let mut sorted = [0; MAX_FUNCTIONS];
    let sorted = &mut sorted[..functions.len().min(MAX_FUNCTIONS)];
    for (position, slot) in sorted.iter_mut().enumerate() {
        *slot = position;
    }
    sorted.sort_unstable_by_key(|&i| functions.get(i).map(|function| function.bdf));
    let sorted = &*sorted;
    let on_bus = |bus: u8| {
        sorted
            .iter()
            .filter_map(move |&i| Some((i, functions.get(i)?)))
            .filter(move |(_, function)| function.bdf.bus() == bus)
    };

    // Buses still to visit, the next on top. Popping a bus emits its
    // functions and pushes the buses below its bridges, first bridge on top,
    // so everything below one bridge comes before the next bridge's bus.
    // Each entry stands for a distinct function (an unvisited root bus for
    // its first function, a pushed bus for its bridge), so the stack fits.
    // Root buses go in the order the topology first lists them: the
    // firmware's host-bridge order, which Linux's ACPI scan follows.
    let mut roots: Vec<u8, MAX_FUNCTIONS> = Vec::new();
    for (i, function) in functions.iter().enumerate() {
        let bus = function.bdf.bus();
        if parent.get(i).copied().flatten().is_none() && !roots.contains(&bus) {
            let _ = roots.push(bus);
        }
    }
    let mut pending: Vec<u8, MAX_FUNCTIONS> = Vec::new();
    for &bus in roots.iter().rev() {
        let _ = pending.push(bus);
    }
    let mut order = [0; MAX_FUNCTIONS];
    let mut slots = order.iter_mut();
    while let Some(bus) = pending.pop() {
        // The bus's functions first: zip stops on them without taking a spare slot.
        for ((i, _), slot) in on_bus(bus).zip(&mut slots) {
            *slot = i;
        }
        let below: Vec<u8, MAX_FUNCTIONS> =
            on_bus(bus).filter_map(|(_, function)| function.bridge).map(|buses| buses.secondary).collect();
        for &secondary in below.iter().rev() {
            let _ = pending.push(secondary);
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use std::string::{String, ToString};
    use std::vec::Vec;

    use capabilities::pci::{BridgeBuses, ClassCode, HeaderKind};

    use super::*;

    fn function(bus: u8, device: u8, secondary: Option<u8>) -> PciFunction {
        let header = if secondary.is_some() { HeaderKind::PciBridge } else { HeaderKind::Normal };
        PciFunction {
            vendor_id: 1,
            device_id: 1,
            class: ClassCode { base: 6, sub: 4, interface: 0 },
            bridge: secondary.map(|secondary| BridgeBuses { primary: bus, secondary, subordinate: secondary }),
            ..capabilities::testing::function(Bdf::new(bus, device, 0).unwrap(), header, None)
        }
    }

    #[test]
    fn probe_order_is_each_bus_then_each_bridge_depth_first() {
        let functions = [
            function(3, 0, None),
            function(0, 3, None),
            function(0x80, 0, None),
            function(2, 0, None),
            function(1, 0, Some(2)),
            function(0, 2, Some(3)),
            function(0, 1, Some(1)),
        ];
        let index = TopologyIndex::new(&functions).unwrap();
        let order: Vec<String> = index.probe_order().map(|i| index.bdf(i).to_string()).collect();
        assert_eq!(order, ["00:01.0", "00:02.0", "00:03.0", "01:00.0", "02:00.0", "03:00.0", "80:00.0"]);
        // A root bus the topology lists first (its host bridge came first
        // in the firmware's tables) is probed first, whatever its number.
        let mut expander_first = functions;
        expander_first.swap(0, 2);
        let index = TopologyIndex::new(&expander_first).unwrap();
        let order: Vec<String> = index.probe_order().map(|i| index.bdf(i).to_string()).collect();
        assert_eq!(order, ["80:00.0", "00:01.0", "00:02.0", "00:03.0", "01:00.0", "02:00.0", "03:00.0"]);
        let endpoint = index.find(Bdf::new(2, 0, 0).unwrap()).unwrap();
        let above: Vec<String> = index.ancestors(endpoint).map(|i| index.bdf(i).to_string()).collect();
        assert_eq!(above, ["01:00.0", "00:01.0"]);
        assert!(index.on_root_bus(index.find(Bdf::new(0x80, 0, 0).unwrap()).unwrap()));
    }
}
