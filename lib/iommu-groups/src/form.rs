//! Group formation: Linux 6.1's `pci_device_group`, function by function.
//!
//! Linux forms groups one device at a time, in probe order, and a device
//! joins the first existing group it finds, in this order of search:
//!
//! 1. along its DMA aliases (itself, then each aliasing bridge up to the
//!    root): the first of them that already has a group;
//! 2. from the last of those upward, every bridge whose path to the root is
//!    not fully ACS-isolated (source validation, request and completion
//!    redirect, upstream forwarding): the first that already has a group;
//! 3. functions on its bus that alias it, or that it aliases, by quirk;
//! 4. the other functions of its multifunction device, if neither it nor
//!    they are isolated by ACS (and, again, their quirk aliases);
//! 5. otherwise it starts a new group.
//!
//! The result depends on the order, which is why [`TopologyIndex`] computes
//! Linux's: bridges are always probed before what is below them, so by the
//! time steps 3 to 5 run the device's own position is the one searched from.

use core::ops::ControlFlow;

use capabilities::pci::{AcsFlags, BridgeKind, DevfnSet, MAX_FUNCTIONS, PciFunction};
use heapless::Vec;

use crate::acs::{acs_enabled, acs_path_enabled};
use crate::alias::{are_quirk_aliases, for_each_dma_alias, requester_id};
use crate::cause::Cause;
use crate::error::GroupError;
use crate::groups::{GroupId, Groups, MAX_GROUPS, Placement};
use crate::index::TopologyIndex;

/// Forms the IOMMU groups of a topology exactly as Linux 6.1 would.
pub fn form_groups(functions: &[PciFunction]) -> Result<Groups, GroupError> {
    let index = TopologyIndex::new(functions)?;
    let mut former = Former { index: &index, group_of: [None; MAX_FUNCTIONS], next_id: 0 };
    let mut placements = Vec::new();
    for i in index.probe_order() {
        let (group, cause) = former.device_group(i);
        if let Some(slot) = former.group_of.get_mut(i) {
            *slot = Some(group);
        }
        let placement = Placement { bdf: index.bdf(i), group, cause, requester: requester_id(&index, i) };
        // The index holds at most MAX_FUNCTIONS functions, so this always fits.
        let _ = placements.push(placement);
    }
    if usize::from(former.next_id) > MAX_GROUPS {
        return Err(GroupError::TooManyGroups { count: usize::from(former.next_id) });
    }
    Ok(Groups::new(placements, former.next_id))
}

/// Group formation state: the groups of the functions probed so far.
struct Former<'a> {
    index: &'a TopologyIndex<'a>,
    group_of: [Option<GroupId>; MAX_FUNCTIONS],
    next_id: u16,
}

impl Former<'_> {
    fn group(&self, i: usize) -> Option<GroupId> {
        self.group_of.get(i).copied().flatten()
    }

    fn function(&self, i: usize) -> Option<&PciFunction> {
        self.index.get(i)
    }

    /// The kind of bridge `i` (always a bridge: an ancestor of some function).
    fn bridge_kind(&self, i: usize) -> BridgeKind {
        self.function(i).and_then(PciFunction::bridge_kind).unwrap_or(BridgeKind::ConventionalPci)
    }

    /// Whether function `i` is isolated from its device's other functions.
    fn isolated(&self, i: usize) -> bool {
        self.function(i).is_some_and(|function| acs_enabled(function, AcsFlags::ISOLATION).is_ok())
    }

    /// The group function `i` belongs in and why (Linux's `pci_device_group`).
    fn device_group(&mut self, i: usize) -> (GroupId, Cause) {
        if cfg!(feature = "mutant-per-device-ownership") {
            return self.new_group();
        }
        let index = self.index;
        // Step 1: the DMA aliases, nearest first.
        let mut anchor = i;
        let found = for_each_dma_alias(index, i, |device, alias| {
            anchor = device;
            match self.group(device) {
                Some(group) => ControlFlow::Break((group, device, alias)),
                None => ControlFlow::Continue(()),
            }
        });
        if let ControlFlow::Break((group, bridge, requester)) = found {
            let kind = self.bridge_kind(bridge);
            return (group, Cause::DmaAlias { bridge: index.bdf(bridge), kind, requester });
        }
        // Step 2: upstream bridges not isolated by ACS.
        for bridge in index.ancestors(anchor) {
            let Err((blocker, shortfall)) = acs_path_enabled(index, bridge, AcsFlags::ISOLATION) else { break };
            anchor = bridge;
            if let Some(group) = self.group(bridge) {
                let cause = Cause::AcsPath {
                    bridge: index.bdf(bridge),
                    blocker: index.bdf(blocker),
                    blocker_kind: self.bridge_kind(blocker),
                    shortfall,
                };
                return (group, cause);
            }
        }
        // Steps 3 and 4 share one record of the devfns already searched.
        let mut searched = DevfnSet::new();
        if let Some((group, peer)) = self.alias_group(anchor, &mut searched) {
            return (group, Cause::QuirkAlias { peer: index.bdf(peer) });
        }
        if let Some((group, peer)) = self.function_alias_group(anchor, &mut searched) {
            return (group, Cause::Multifunction { peer: index.bdf(peer) });
        }
        self.new_group()
    }

    /// Step 5: a group of its own.
    fn new_group(&mut self) -> (GroupId, Cause) {
        let group = GroupId(self.next_id);
        self.next_id = self.next_id.saturating_add(1);
        (group, Cause::Founder)
    }

    /// Linux's `get_pci_alias_group`: the group of `i` or of a function on
    /// its bus that it aliases or that aliases it (transitively, through
    /// their multifunction peers too), with the function that had it.
    fn alias_group(&self, i: usize, searched: &mut DevfnSet) -> Option<(GroupId, usize)> {
        let devfn = self.index.bdf(i).devfn();
        if searched.contains(devfn) {
            return None;
        }
        searched.insert(devfn);
        if let Some(group) = self.group(i) {
            return Some((group, i));
        }
        for other in self.same_bus(i) {
            if are_quirk_aliases(self.index, i, other)
                && let Some(found) =
                    self.alias_group(other, searched).or_else(|| self.function_alias_group(other, searched))
            {
                return Some(found);
            }
        }
        None
    }

    /// Linux's `get_pci_function_alias_group`: if `i` is a function of a
    /// multifunction device and not isolated, the group of another
    /// non-isolated function of the device (or of one of its aliases).
    fn function_alias_group(&self, i: usize, searched: &mut DevfnSet) -> Option<(GroupId, usize)> {
        let multifunction = self.function(i).is_some_and(PciFunction::is_multifunction);
        if !multifunction || self.isolated(i) {
            return None;
        }
        let slot = self.index.bdf(i).device();
        for other in self.same_bus(i) {
            if self.index.bdf(other).device() == slot
                && !self.isolated(other)
                && let Some(found) = self.alias_group(other, searched)
            {
                return Some(found);
            }
        }
        None
    }

    /// The other functions on `i`'s bus, in probe order (Linux's device list order).
    fn same_bus(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let bus = self.index.bdf(i).bus();
        self.index.probe_order().filter(move |&other| other != i && self.index.bdf(other).bus() == bus)
    }
}
