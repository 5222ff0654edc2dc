//! Capability spaces: every task's slots, and the derivation tree that
//! makes revocation reach every copy.
//!
//! All tasks' slots live in one table so the tree can link across tasks
//! (a capability received in a message is a child of the sender's). This
//! module only keeps the slots and the tree; what a capability's removal
//! means for its object (reference counts, unmapping, waking) is the
//! kernel's business.
//!
//! # Invariants
//!
//! * A slot with a parent is in exactly that parent's child list, and a
//!   slot's `first_child` list holds exactly the slots whose parent it is.
//! * Removing a slot hands its children to its parent, so revoking any
//!   ancestor still reaches them.
//! * Pin nodes ([`SlotId::pin`]) belong to no task's space, so no system
//!   call names one: each is a leaf below the frame capability its pin was
//!   made with, and only a revocation or its pin's release removes it.

use capabilities::ErrorCode;
use capabilities::abi::{CSPACE_SLOTS, ObjectKind, slots};
use capabilities::manifest::MAX_TASKS;

use crate::objects::Handle;
use crate::task::TaskId;

/// Slots per task.
pub const SLOTS: usize = CSPACE_SLOTS as usize;

/// DMA pins the machine can hold: each is a node of the derivation tree
/// beside the tasks' slots, so that revoking what a pin was made from
/// reaches it (the IOMMU server pins one frame per mapping, up to 512,
/// and its own table memory).
pub const PIN_NODES: usize = 1024;

/// Slots of all tasks' spaces.
const TASK_SLOTS: usize = MAX_TASKS * SLOTS;

const TOTAL: usize = TASK_SLOTS + PIN_NODES;

/// A slot of some task's capability space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SlotId(u16);

impl SlotId {
    /// Slot `index` of `task`, or `InvalidCapability` if out of range or
    /// the null slot.
    pub fn new(task: TaskId, index: u64) -> Result<Self, ErrorCode> {
        if index == u64::from(slots::NULL) || index >= SLOTS as u64 || task.index() >= MAX_TASKS {
            return Err(ErrorCode::InvalidCapability);
        }
        Ok(Self((task.index() * SLOTS + index as usize) as u16))
    }

    /// The task whose space holds it.
    pub fn task(self) -> TaskId {
        TaskId::new((usize::from(self.0) / SLOTS) as u8)
    }

    /// Its index in that space.
    pub fn index(self) -> u32 {
        (usize::from(self.0) % SLOTS) as u32
    }

    /// The tree node of pin `index` (below [`PIN_NODES`]): in no task's
    /// space, so [`SlotId::task`] means nothing for it.
    pub fn pin(index: usize) -> Option<Self> {
        (index < PIN_NODES).then(|| Self((TASK_SLOTS + index) as u16))
    }

    /// Which pin's node it is, if it is one.
    pub fn pin_index(self) -> Option<usize> {
        usize::from(self.0).checked_sub(TASK_SLOTS)
    }
}

/// What a capability names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Object {
    /// A task.
    Task(TaskId),
    /// A task's address space.
    AddressSpace(TaskId),
    /// An endpoint.
    Endpoint(Handle),
    /// A notification.
    Notification(Handle),
    /// Allocated RAM.
    Frame(Handle),
    /// Device registers: the capability itself holds the range. (Fields
    /// rather than a `capabilities::range::RegisterRange`, as in the boot
    /// manifest's `BootObject`: the enum's discriminant then fits the
    /// variant's padding, and an object stays two words.)
    DeviceMemory {
        /// Page-aligned physical address.
        base: u64,
        /// Length in pages.
        pages: u32,
    },
    /// I/O ports: the capability itself holds the range.
    IoPorts {
        /// First port.
        base: u16,
        /// Number of ports.
        count: u16,
    },
    /// An interrupt source.
    Interrupt(Handle),
    /// The right to answer call number `call` of `caller`, once.
    Reply {
        /// The blocked caller.
        caller: TaskId,
        /// Which of its calls.
        call: u64,
    },
    /// Privileged operations, by right.
    Control,
}

impl Object {
    /// Its kind, as the ABI numbers it.
    pub fn kind(&self) -> ObjectKind {
        match self {
            Object::Task(_) => ObjectKind::Task,
            Object::AddressSpace(_) => ObjectKind::AddressSpace,
            Object::Endpoint(_) => ObjectKind::Endpoint,
            Object::Notification(_) => ObjectKind::Notification,
            Object::Frame(_) => ObjectKind::Frame,
            Object::DeviceMemory { .. } => ObjectKind::DeviceMemory,
            Object::IoPorts { .. } => ObjectKind::IoPorts,
            Object::Interrupt(_) => ObjectKind::Interrupt,
            Object::Reply { .. } => ObjectKind::Reply,
            Object::Control => ObjectKind::Control,
        }
    }
}

/// A capability: an object, the rights it grants, and a badge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Capability {
    /// The object.
    pub object: Object,
    /// `abi::rights` bits.
    pub rights: u32,
    /// Identifies the holder to a receiver (0: unbadged).
    pub badge: u64,
}

impl Capability {
    /// Whether it has every right in `needed`.
    pub fn has(&self, needed: u32) -> bool {
        self.rights & needed == needed
    }
}

/// Where a memory capability is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The address space.
    pub space: TaskId,
    /// First virtual address.
    pub virt: u64,
    /// Pages mapped.
    pub pages: u32,
}

#[derive(Clone, Copy)]
struct Entry {
    cap: Option<Capability>,
    mapping: Option<Mapping>,
    parent: Option<SlotId>,
    first_child: Option<SlotId>,
    next: Option<SlotId>,
    prev: Option<SlotId>,
}

const EMPTY: Entry = Entry { cap: None, mapping: None, parent: None, first_child: None, next: None, prev: None };

/// Every task's capability space.
pub struct CapTable {
    entries: [Entry; TOTAL],
}

impl Default for CapTable {
    fn default() -> Self {
        Self::new()
    }
}

impl CapTable {
    /// All slots empty.
    pub const fn new() -> Self {
        Self { entries: [EMPTY; TOTAL] }
    }

    fn entry(&self, slot: SlotId) -> &Entry {
        &self.entries[usize::from(slot.0)]
    }

    fn entry_mut(&mut self, slot: SlotId) -> &mut Entry {
        &mut self.entries[usize::from(slot.0)]
    }

    /// The capability in `slot`.
    #[inline]
    pub fn get(&self, slot: SlotId) -> Option<&Capability> {
        self.entry(slot).cap.as_ref()
    }

    /// The capability at `index` of `task`'s space, or `InvalidCapability`.
    #[inline]
    pub fn lookup(&self, task: TaskId, index: u64) -> Result<(SlotId, Capability), ErrorCode> {
        let slot = SlotId::new(task, index)?;
        self.get(slot).map(|cap| (slot, *cap)).ok_or(ErrorCode::InvalidCapability)
    }

    /// An empty slot at `index` of `task`'s space for a system call to put
    /// a capability in, or an error. The reply slot is never one: it holds
    /// only the reply capability a receive puts there, so emptying it for
    /// the next one ends nothing made with another capability.
    pub fn empty_slot(&self, task: TaskId, index: u64) -> Result<SlotId, ErrorCode> {
        if index == u64::from(slots::REPLY) {
            return Err(ErrorCode::InvalidCapability);
        }
        let slot = SlotId::new(task, index)?;
        if self.get(slot).is_some() { Err(ErrorCode::SlotOccupied) } else { Ok(slot) }
    }

    /// Puts `cap` into the empty `slot`, as a child of `parent` if given.
    #[unsafe(link_section = ".text.hot.cspace")]
    pub fn insert(&mut self, slot: SlotId, cap: Capability, parent: Option<SlotId>) -> Result<(), ErrorCode> {
        if self.get(slot).is_some() {
            return Err(ErrorCode::SlotOccupied);
        }
        *self.entry_mut(slot) = Entry { cap: Some(cap), ..EMPTY };
        if let Some(parent) = parent {
            self.link_child(parent, slot);
        }
        Ok(())
    }

    fn link_child(&mut self, parent: SlotId, child: SlotId) {
        let head = self.entry(parent).first_child;
        if let Some(head) = head {
            self.entry_mut(head).prev = Some(child);
        }
        let entry = self.entry_mut(child);
        entry.parent = Some(parent);
        entry.next = head;
        entry.prev = None;
        self.entry_mut(parent).first_child = Some(child);
    }

    fn unlink(&mut self, slot: SlotId) {
        let Entry { parent, next, prev, .. } = *self.entry(slot);
        if let Some(next) = next {
            self.entry_mut(next).prev = prev;
        }
        match prev {
            Some(prev) => self.entry_mut(prev).next = next,
            None => {
                if let Some(parent) = parent {
                    self.entry_mut(parent).first_child = next;
                }
            }
        }
        let entry = self.entry_mut(slot);
        entry.parent = None;
        entry.next = None;
        entry.prev = None;
    }

    /// Empties `slot`, giving its children to its parent, and returns what
    /// it held.
    #[unsafe(link_section = ".text.hot.cspace")]
    pub fn remove(&mut self, slot: SlotId) -> Option<(Capability, Option<Mapping>)> {
        let cap = self.entry(slot).cap?;
        let mapping = self.entry(slot).mapping;
        let parent = self.entry(slot).parent;
        self.unlink(slot);
        while let Some(child) = self.entry(slot).first_child {
            self.unlink_first_child(slot, child);
            match parent {
                Some(parent) => self.link_child(parent, child),
                None => self.entry_mut(child).parent = None,
            }
        }
        *self.entry_mut(slot) = EMPTY;
        Some((cap, mapping))
    }

    fn unlink_first_child(&mut self, parent: SlotId, child: SlotId) {
        let next = self.entry(child).next;
        self.entry_mut(parent).first_child = next;
        if let Some(next) = next {
            self.entry_mut(next).prev = None;
        }
        let entry = self.entry_mut(child);
        entry.next = None;
        entry.prev = None;
    }

    /// One capability derived from `slot`, if any (revocation removes them
    /// one at a time until none is left).
    pub fn first_child(&self, slot: SlotId) -> Option<SlotId> {
        self.entry(slot).first_child
    }

    /// Moves the capability in `from` to the empty `to`, keeping its place
    /// in the derivation tree and its mapping.
    pub fn move_slot(&mut self, from: SlotId, to: SlotId) -> Result<(), ErrorCode> {
        if self.get(from).is_none() {
            return Err(ErrorCode::InvalidCapability);
        }
        if self.get(to).is_some() {
            return Err(ErrorCode::SlotOccupied);
        }
        if from == to {
            return Ok(());
        }
        let entry = *self.entry(from);
        *self.entry_mut(to) = entry;
        *self.entry_mut(from) = EMPTY;
        if let Some(next) = entry.next {
            self.entry_mut(next).prev = Some(to);
        }
        match entry.prev {
            Some(prev) => self.entry_mut(prev).next = Some(to),
            None => {
                if let Some(parent) = entry.parent {
                    self.entry_mut(parent).first_child = Some(to);
                }
            }
        }
        let mut child = entry.first_child;
        while let Some(current) = child {
            self.entry_mut(current).parent = Some(to);
            child = self.entry(current).next;
        }
        Ok(())
    }

    /// Where the capability in `slot` is mapped.
    pub fn mapping(&self, slot: SlotId) -> Option<Mapping> {
        self.entry(slot).mapping
    }

    /// Records (or clears) where the capability in `slot` is mapped.
    pub fn set_mapping(&mut self, slot: SlotId, mapping: Option<Mapping>) {
        self.entry_mut(slot).mapping = mapping;
    }

    /// Forgets every mapping recorded into `space`, in every task's slots
    /// (the space is going away with its tables). One pass over the
    /// table: bounded by its size, whatever the tasks did.
    pub fn forget_mappings_into(&mut self, space: TaskId) {
        for entry in &mut self.entries {
            if entry.mapping.is_some_and(|mapping| mapping.space == space) {
                entry.mapping = None;
            }
        }
    }

    /// Every occupied slot of `task`.
    pub fn occupied(&self, task: TaskId) -> impl Iterator<Item = SlotId> + '_ {
        let start = task.index() * SLOTS;
        (start..start + SLOTS).map(|index| SlotId(index as u16)).filter(|slot| self.get(*slot).is_some())
    }

    /// How many capabilities the tasks' slots hold, the pins' nodes aside.
    pub fn task_capabilities(&self) -> usize {
        self.entries[..TASK_SLOTS].iter().filter(|entry| entry.cap.is_some()).count()
    }

    /// Every occupied slot, anywhere.
    pub fn all_occupied(&self) -> impl Iterator<Item = (SlotId, &Capability)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| entry.cap.as_ref().map(|cap| (SlotId(index as u16), cap)))
    }

    /// The first empty slot of `task` in `[base, base + len)`, the reply
    /// slot aside (see [`CapTable::empty_slot`]). The range comes from the
    /// task (its receive window) and may be four billion slots long: only
    /// the part inside its space is walked, so this costs at most
    /// [`SLOTS`] steps.
    pub fn find_empty(&self, task: TaskId, base: u64, len: u64) -> Option<SlotId> {
        let end = base.saturating_add(len).min(SLOTS as u64);
        (base.min(end)..end)
            .filter(|&index| index != u64::from(slots::REPLY))
            .filter_map(|index| SlotId::new(task, index).ok())
            .find(|slot| self.get(*slot).is_none())
    }

    /// The parent of `slot` (for tests and checks).
    pub fn parent(&self, slot: SlotId) -> Option<SlotId> {
        self.entry(slot).parent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_two_words() {
        assert_eq!(core::mem::size_of::<Object>(), 16);
    }
    use capabilities::abi::rights;
    use xorshift::XorShift;

    fn cap(badge: u64) -> Capability {
        Capability { object: Object::Control, rights: rights::ALL, badge }
    }

    fn slot(task: u8, index: u64) -> SlotId {
        SlotId::new(TaskId::new(task), index).expect("valid slot")
    }

    fn table() -> Box<CapTable> {
        Box::new(CapTable::new())
    }

    /// Revokes as the kernel does: remove one child at a time.
    fn revoke(table: &mut CapTable, root: SlotId) -> Vec<SlotId> {
        let mut removed = vec![];
        while let Some(child) = table.first_child(root) {
            table.remove(child);
            removed.push(child);
        }
        removed
    }

    #[test]
    fn slot_indices_out_of_range_and_null_are_invalid() {
        let task = TaskId::new(0);
        assert_eq!(SlotId::new(task, 0), Err(ErrorCode::InvalidCapability));
        assert_eq!(SlotId::new(task, SLOTS as u64), Err(ErrorCode::InvalidCapability));
        assert_eq!(SlotId::new(task, u64::MAX), Err(ErrorCode::InvalidCapability));
        assert_eq!(SlotId::new(TaskId::new(MAX_TASKS as u8), 1), Err(ErrorCode::InvalidCapability));
        let table = table();
        assert_eq!(table.lookup(task, 5), Err(ErrorCode::InvalidCapability), "empty slot");
        let id = slot(3, 9);
        assert_eq!((id.task(), id.index()), (TaskId::new(3), 9));
    }

    #[test]
    fn revoking_removes_a_whole_tree_across_tasks_but_not_the_root() {
        let mut table = table();
        let root = slot(0, 8);
        table.insert(root, cap(0), None).expect("empty");
        let a = slot(1, 8);
        let b = slot(2, 8);
        let a1 = slot(3, 8);
        let a2 = slot(3, 9);
        let other = slot(4, 8);
        table.insert(a, cap(1), Some(root)).expect("empty");
        table.insert(b, cap(2), Some(root)).expect("empty");
        table.insert(a1, cap(1), Some(a)).expect("empty");
        table.insert(a2, cap(1), Some(a)).expect("empty");
        table.insert(other, cap(9), None).expect("empty");
        let mut removed = revoke(&mut table, root);
        removed.sort_by_key(|s| s.0);
        let mut expected = vec![a, b, a1, a2];
        expected.sort_by_key(|s| s.0);
        assert_eq!(removed, expected);
        assert!(table.get(root).is_some());
        assert!(table.get(other).is_some(), "an unrelated capability survives");
        assert_eq!(table.all_occupied().count(), 2);
    }

    #[test]
    fn deleting_a_middle_capability_keeps_its_children_revocable() {
        let mut table = table();
        let (root, mid, leaf) = (slot(0, 8), slot(1, 8), slot(2, 8));
        table.insert(root, cap(0), None).expect("empty");
        table.insert(mid, cap(1), Some(root)).expect("empty");
        table.insert(leaf, cap(1), Some(mid)).expect("empty");
        table.remove(mid);
        assert_eq!(table.parent(leaf), Some(root));
        assert_eq!(revoke(&mut table, root), [leaf]);
        table.insert(mid, cap(1), None).expect("empty");
        table.insert(leaf, cap(1), Some(mid)).expect("empty");
        table.remove(mid);
        assert_eq!(table.parent(leaf), None, "the child of a removed root becomes a root");
    }

    #[test]
    fn moving_keeps_the_tree_and_the_mapping() {
        let mut table = table();
        let (root, child, grandchild, to) = (slot(0, 8), slot(1, 8), slot(1, 9), slot(1, 20));
        table.insert(root, cap(0), None).expect("empty");
        table.insert(child, cap(1), Some(root)).expect("empty");
        table.insert(grandchild, cap(1), Some(child)).expect("empty");
        let mapping = Mapping { space: TaskId::new(1), virt: 0x2000_0000, pages: 1 };
        table.set_mapping(child, Some(mapping));
        assert_eq!(table.move_slot(child, root), Err(ErrorCode::SlotOccupied));
        table.move_slot(child, to).expect("moves");
        assert!(table.get(child).is_none());
        assert_eq!(table.mapping(to), Some(mapping));
        assert_eq!(table.parent(to), Some(root));
        assert_eq!(table.parent(grandchild), Some(to));
        assert_eq!(revoke(&mut table, root).len(), 2);
        assert_eq!(table.move_slot(child, to), Err(ErrorCode::InvalidCapability));
    }

    #[test]
    fn random_operations_keep_the_tree_consistent() {
        let mut table = table();
        let mut random = XorShift::new(0x2545_f491_4f6c_dd1d);
        let slots: Vec<SlotId> = (0..4).flat_map(|t| (1..12).map(move |i| slot(t, i))).collect();
        for _ in 0..5000 {
            let a = slots[random.below(slots.len() as u64) as usize];
            let b = slots[random.below(slots.len() as u64) as usize];
            match random.below(4) {
                0 => {
                    let _ = table.insert(a, cap(0), None);
                }
                1 if table.get(a).is_some() => {
                    let _ = table.insert(b, cap(1), Some(a));
                }
                2 => {
                    table.remove(a);
                }
                _ => {
                    let _ = table.move_slot(a, b);
                }
            }
            for &s in &slots {
                let entry = table.entry(s);
                if entry.cap.is_none() {
                    assert!(entry.parent.is_none() && entry.first_child.is_none(), "empty slot is linked");
                    continue;
                }
                if let Some(parent) = entry.parent {
                    let mut child = table.entry(parent).first_child;
                    let mut found = false;
                    while let Some(c) = child {
                        found |= c == s;
                        child = table.entry(c).next;
                    }
                    assert!(found, "slot is missing from its parent's list");
                }
                let mut child = entry.first_child;
                while let Some(c) = child {
                    assert_eq!(table.entry(c).parent, Some(s));
                    child = table.entry(c).next;
                }
            }
        }
    }
}
