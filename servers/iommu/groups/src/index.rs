//! A checked view of a topology: each function's upstream bridge and Linux's probe order.

use capabilities::pci::{Bdf, MAX_FUNCTIONS, PciFunction};

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
    /// Checks `functions` and indexes it. Only the first [`MAX_FUNCTIONS`]
    /// entries count (a [`capabilities::pci::Topology`] never holds more).
    pub fn new(functions: &'a [PciFunction]) -> Result<Self, GroupError> {
        let functions = functions.get(..MAX_FUNCTIONS).unwrap_or(functions);
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

    /// Function indices in the order Linux probes them: each root bus's
    /// functions by device and function number, then the bus below each of
    /// its bridges in turn, depth first (the order of Linux's scan, which
    /// adds devices as it finds them).
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
    let count = functions.len().min(MAX_FUNCTIONS);
    for (slot, i) in sorted.iter_mut().zip(0..count) {
        *slot = i;
    }
    let bdf = |i: usize| functions.get(i).map(|function| function.bdf);
    sorted[..count].sort_unstable_by_key(|&i| bdf(i));

    let mut order = [0; MAX_FUNCTIONS];
    let mut emitted = 0;
    let mut emit_bus = |bus: u8, order: &mut [usize; MAX_FUNCTIONS]| {
        for &i in sorted[..count].iter().filter(|&&i| bdf(i).is_some_and(|bdf| bdf.bus() == bus)) {
            if let Some(slot) = order.get_mut(emitted) {
                *slot = i;
                emitted += 1;
            }
        }
    };
    // Each stack entry: a bus and the sorted position to look for its next bridge from.
    let mut stack: [(u8, usize); MAX_FUNCTIONS] = [(0, 0); MAX_FUNCTIONS];
    let roots = sorted[..count].iter().filter(|&&i| parent.get(i).copied().flatten().is_none()).filter_map(|&i| bdf(i));
    let mut last_root = None;
    for root in roots.map(Bdf::bus) {
        if last_root == Some(root) {
            continue;
        }
        last_root = Some(root);
        emit_bus(root, &mut order);
        stack[0] = (root, 0);
        let mut depth: usize = 1;
        while let Some(top) = depth.checked_sub(1).and_then(|top| stack.get_mut(top)) {
            let (bus, from) = *top;
            let next_bridge = sorted[..count].iter().enumerate().skip(from).find_map(|(position, &i)| {
                let function = functions.get(i)?;
                let buses = function.bridge.filter(|_| function.bdf.bus() == bus)?;
                Some((position, buses.secondary))
            });
            let Some((position, secondary)) = next_bridge else {
                depth -= 1;
                continue;
            };
            top.1 = position + 1;
            emit_bus(secondary, &mut order);
            // The forest has at most one bus per function, so the stack cannot overflow.
            if let Some(slot) = stack.get_mut(depth) {
                *slot = (secondary, 0);
                depth += 1;
            }
        }
    }
    order
}
