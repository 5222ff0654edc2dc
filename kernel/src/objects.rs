//! Kernel objects other than tasks, kept in fixed arenas and named by
//! generation-checked handles.
//!
//! # Invariants
//!
//! * `refs` of an object counts the capabilities naming it; an object is
//!   freed when that count (and, for frames, the pin count) reaches zero.
//! * A handle whose generation differs from its arena slot's names an
//!   object that no longer exists, and every lookup through it fails.
//! * Generations never repeat: a slot whose 32-bit generation is spent is
//!   retired, never used again.

use heapless::Deque;

use capabilities::manifest::MAX_TASKS;

use crate::cspace::SlotId;
use crate::phys::Frame;
use crate::task::TaskId;

/// Names an object in an arena: slot index and the slot's generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Handle {
    index: u16,
    generation: u32,
}

impl Handle {
    /// The handle packed into one word (for results and pin handles):
    /// the index in bits 0-15, the generation in bits 16-47.
    pub const fn to_word(self) -> u64 {
        (self.generation as u64) << 16 | self.index as u64
    }

    /// Its index in its arena.
    pub const fn index(self) -> usize {
        self.index as usize
    }

    /// Unpacks [`Self::to_word`]; `None` if bits above 47 are set.
    pub const fn from_word(word: u64) -> Option<Self> {
        if word >> 48 != 0 {
            return None;
        }
        Some(Self { index: (word & 0xffff) as u16, generation: (word >> 16) as u32 })
    }
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

impl<T> Slot<T> {
    /// A slot whose generations are spent is never used again.
    fn retired(&self) -> bool {
        self.generation == u32::MAX
    }
}

/// A fixed-capacity store of objects of one kind.
pub struct Arena<T, const N: usize> {
    slots: [Slot<T>; N],
    used: usize,
}

impl<T, const N: usize> Default for Arena<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> Arena<T, N> {
    /// An empty arena.
    pub const fn new() -> Self {
        Self { slots: [const { Slot { generation: 0, value: None } }; N], used: 0 }
    }

    /// Stores `value`, or returns it back when the arena is full.
    pub fn insert(&mut self, value: T) -> Result<Handle, T> {
        let Some(index) = self.slots.iter().position(|slot| slot.value.is_none() && !slot.retired()) else {
            return Err(value);
        };
        let slot = &mut self.slots[index];
        slot.value = Some(value);
        self.used += 1;
        Ok(Handle { index: index as u16, generation: slot.generation })
    }

    /// The object `handle` names, if it still exists.
    pub fn get(&self, handle: Handle) -> Option<&T> {
        let slot = self.slots.get(usize::from(handle.index))?;
        if slot.generation == handle.generation { slot.value.as_ref() } else { None }
    }

    /// The object `handle` names, for changing.
    pub fn get_mut(&mut self, handle: Handle) -> Option<&mut T> {
        let slot = self.slots.get_mut(usize::from(handle.index))?;
        if slot.generation == handle.generation { slot.value.as_mut() } else { None }
    }

    /// Removes the object; later lookups through `handle` fail.
    pub fn remove(&mut self, handle: Handle) -> Option<T> {
        let slot = self.slots.get_mut(usize::from(handle.index))?;
        if slot.generation != handle.generation {
            return None;
        }
        let value = slot.value.take()?;
        // Saturating: at u32::MAX the slot is retired (see `Slot::retired`).
        slot.generation = slot.generation.saturating_add(1);
        self.used -= 1;
        Some(value)
    }

    /// Objects stored.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Whether the arena is empty.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// The handle of the object at arena index `index`, if one is there.
    pub fn handle_at(&self, index: usize) -> Option<Handle> {
        let slot = self.slots.get(index)?;
        slot.value.as_ref().map(|_| Handle { index: index as u16, generation: slot.generation })
    }

    /// Every object with its handle, for changing.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Handle, &mut T)> {
        self.slots.iter_mut().enumerate().filter_map(|(index, slot)| {
            let generation = slot.generation;
            slot.value.as_mut().map(|value| (Handle { index: index as u16, generation }, value))
        })
    }

    /// Every object with its handle.
    pub fn iter(&self) -> impl Iterator<Item = (Handle, &T)> {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            slot.value.as_ref().map(|value| (Handle { index: index as u16, generation: slot.generation }, value))
        })
    }
}

/// Which side of an endpoint is waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Nobody.
    Nobody,
    /// Senders (and callers), in arrival order.
    Senders,
    /// Receivers, in arrival order.
    Receivers,
}

/// A synchronous IPC rendezvous point.
pub struct Endpoint {
    /// Blocked tasks, all senders or all receivers.
    pub queue: Deque<TaskId, MAX_TASKS>,
    /// Which side the queue holds.
    pub waiting: Waiting,
    /// Capabilities naming it.
    pub refs: u32,
    /// Those of them with the RECEIVE right: when none is left, no
    /// message can be taken, so senders are told instead of waiting.
    pub receivers: u32,
    /// Task whose object quota it is charged to (none for boot objects).
    pub creator: Option<TaskId>,
}

impl Endpoint {
    /// A fresh endpoint.
    pub const fn new(creator: Option<TaskId>) -> Self {
        Self { queue: Deque::new(), waiting: Waiting::Nobody, refs: 0, receivers: 0, creator }
    }
}

/// A word of bits tasks signal and wait on.
pub struct Notification {
    /// Pending bits.
    pub word: u64,
    /// Tasks blocked in `Wait`.
    pub waiters: Deque<TaskId, MAX_TASKS>,
    /// The task whose receives also return its bits.
    pub bound: Option<TaskId>,
    /// Capabilities naming it.
    pub refs: u32,
    /// Task whose object quota it is charged to.
    pub creator: Option<TaskId>,
}

impl Notification {
    /// A fresh, clear notification.
    pub const fn new(creator: Option<TaskId>) -> Self {
        Self { word: 0, waiters: Deque::new(), bound: None, refs: 0, creator }
    }
}

/// Physically contiguous RAM allocated by a task.
pub struct FrameObject {
    /// First frame.
    pub base: Frame,
    /// Length in pages.
    pub pages: u32,
    /// Task whose memory quota pays for it (none: the kernel's own, such
    /// as the ACPI snapshot).
    pub owner: Option<TaskId>,
    /// Capabilities naming it.
    pub refs: u32,
    /// Device pins (`DmaPin`), live or revoked; the memory stays while
    /// any exist.
    pub pins: u32,
    /// The task whose pins those are: only it may release them.
    pub pinner: Option<TaskId>,
}

/// Where a pin stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinState {
    /// In the derivation tree, below the frame capability it was made with.
    Live,
    /// Revoked: out of the tree, waiting for its pinner to learn of it.
    Revoked,
    /// Revoked, and told to its pinner (`DmaRevoked`), which has yet to
    /// release it.
    Reported,
}

/// A frame pinned for device access (`DmaPin`).
///
/// A live pin is a node of the capability derivation tree
/// ([`crate::cspace::SlotId::pin`], the index of this record in the
/// kernel's pin arena), a child of the frame capability it was made with,
/// so revoking that capability, or any it came from, revokes the pin. A
/// revoked pin still holds the frame's memory (a device may reach it
/// until the pinner has unmapped it): only the pinner's `DmaUnpin` lets
/// it go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The frame.
    pub frame: Handle,
    /// The task that made it, the only one that may release it.
    pub pinner: TaskId,
    /// Live, revoked or reported.
    pub state: PinState,
}

/// Where the kernel tells a task that one of its pins was revoked
/// (`DmaWatch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinWatch {
    /// The notification.
    pub notification: Handle,
    /// Bits to set.
    pub bits: u64,
    /// The notification capability it was made with: deleting that
    /// capability ends the watch.
    pub cap: SlotId,
}

/// Where an interrupt comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum IrqSource {
    /// An IO APIC input.
    IoApic {
        /// Global system interrupt.
        gsi: u8,
        /// Level-triggered (masked until acknowledged).
        level: bool,
    },
    /// A message-signalled interrupt on its own vector.
    Msi,
}

/// Where an interrupt is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The notification.
    pub notification: Handle,
    /// Bits it sets there.
    pub bits: u64,
    /// The notification capability `IrqBind` named it with.
    pub notification_cap: SlotId,
    /// The interrupt capability `IrqBind` was called with.
    pub interrupt_cap: SlotId,
}

impl Route {
    /// Whether it was made with the capability in `slot`: deleting that
    /// capability, either of the two, ends the route.
    pub fn made_with(&self, slot: SlotId) -> bool {
        self.notification_cap == slot || self.interrupt_cap == slot
    }
}

/// An interrupt source delivered as notification bits.
pub struct Interrupt {
    /// Its source.
    pub source: IrqSource,
    /// CPU vector it arrives on.
    pub vector: u8,
    /// Where it is routed: a notification, the bits it sets there, and
    /// the notification and interrupt capabilities the route was made
    /// with (deleting either ends the route).
    pub target: Option<Route>,
    /// Fired and not yet acknowledged.
    pub unacknowledged: bool,
    /// Times it fired since the last acknowledgement: the notification
    /// bits coalesce, so this is how a holder learns of a flood.
    pub arrivals: u32,
    /// Capabilities naming it.
    pub refs: u32,
    /// The interrupt-remapping entry an IO APIC line goes through.
    pub remapped: Option<u16>,
    /// The task whose MSI allowance it is charged to (none for boot lines).
    pub creator: Option<TaskId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_handles_never_reach_a_new_object() {
        let mut arena: Arena<u32, 2> = Arena::new();
        let first = arena.insert(1).expect("room");
        assert_eq!(arena.remove(first), Some(1));
        let second = arena.insert(2).expect("room");
        assert_eq!(arena.get(first), None, "the old handle names a freed slot");
        assert_eq!(arena.get(second), Some(&2));
        assert_eq!(arena.remove(first), None);
        assert_eq!(arena.len(), 1);
    }

    #[test]
    fn a_full_arena_gives_the_value_back_and_words_round_trip() {
        let mut arena: Arena<u32, 1> = Arena::new();
        let handle = arena.insert(7).expect("room");
        assert_eq!(arena.insert(8), Err(8));
        assert_eq!(Handle::from_word(handle.to_word()), Some(handle));
        assert_eq!(Handle::from_word(1 << 48), None);
        assert_eq!(arena.iter().map(|(_, v)| *v).collect::<Vec<_>>(), [7]);
    }

    #[test]
    fn a_slot_reused_65536_times_still_refuses_its_first_handle() {
        let mut arena: Arena<u32, 1> = Arena::new();
        let first = arena.insert(0).expect("room");
        arena.remove(first);
        for round in 1..=u32::from(u16::MAX) {
            let handle = arena.insert(round).expect("room");
            arena.remove(handle);
        }
        let latest = arena.insert(7).expect("room");
        assert_ne!(latest, first);
        assert_eq!(arena.get(first), None, "a stale handle never reaches the new object");
    }

    #[test]
    fn a_slot_whose_generations_are_spent_is_retired() {
        let mut arena: Arena<u32, 2> = Arena::new();
        arena.slots[0].generation = u32::MAX - 1;
        let last = arena.insert(1).expect("room");
        assert_eq!(last.index, 0);
        arena.remove(last);
        let next = arena.insert(2).expect("room in the other slot");
        assert_eq!(next.index, 1, "slot 0 is retired");
        assert_eq!(arena.insert(3), Err(3), "and never handed out again");
        assert_eq!(arena.get(last), None);
    }
}
