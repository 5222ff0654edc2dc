//! Typed capabilities: a slot index tagged with the kind of object it names,
//! so an endpoint cannot be passed where a frame is expected.
//!
//! Kind mismatches the type system cannot see (a slot the policy filled
//! with something else) are caught by the build tool through the kind
//! recorded in each [`Slot`], and by the kernel on every call.

use core::marker::PhantomData;

use capabilities::ErrorCode;
use capabilities::abi::{ObjectKind, Syscall, slots};
use capabilities::capslots::CapSlotEntry;

use crate::syscall::raw;

/// A kind of kernel object, as a type.
pub trait Kind {
    /// Its ABI number.
    const KIND: ObjectKind;
}

macro_rules! kinds {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        $(
            $(#[doc = $doc])*
            #[derive(Clone, Copy, Debug, PartialEq, Eq)]
            pub enum $name {}
            impl Kind for $name {
                const KIND: ObjectKind = ObjectKind::$name;
            }
        )*
    };
}

kinds! {
    /// A task (death watch, state).
    Task,
    /// An address space (mapping).
    AddressSpace,
    /// An IPC endpoint.
    Endpoint,
    /// A notification word.
    Notification,
    /// Allocated RAM.
    Frame,
    /// Device registers.
    DeviceMemory,
    /// I/O ports.
    IoPorts,
    /// An interrupt source.
    Interrupt,
    /// A one-shot reply right.
    Reply,
    /// Privileged operations.
    Control,
}

/// A capability of kind `K` in slot `slot` of this task's space.
#[derive(Debug, PartialEq, Eq)]
pub struct Cap<K: Kind> {
    slot: u32,
    kind: PhantomData<K>,
}

impl<K: Kind> Clone for Cap<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: Kind> Copy for Cap<K> {}

impl<K: Kind> Cap<K> {
    /// The capability in `slot`, claimed to be of kind `K` (the kernel
    /// checks the claim on every use).
    pub const fn at(slot: u32) -> Self {
        Self { slot, kind: PhantomData }
    }

    /// Its slot index.
    pub const fn slot(self) -> u32 {
        self.slot
    }

    /// Copies it to the empty `dest` with only `rights`.
    pub fn copy_to(self, dest: u32, rights: u32) -> Result<Cap<K>, ErrorCode> {
        raw(Syscall::CapCopy, [self.slot.into(), dest.into(), rights.into(), 0, 0, 0])?;
        Ok(Cap::at(dest))
    }

    /// Mints a copy in `dest` with `rights` and `badge`.
    pub fn mint_to(self, dest: u32, rights: u32, badge: u64) -> Result<Cap<K>, ErrorCode> {
        raw(Syscall::CapMint, [self.slot.into(), dest.into(), rights.into(), badge, 0, 0])?;
        Ok(Cap::at(dest))
    }

    /// Moves it to the empty `dest`.
    pub fn move_to(self, dest: u32) -> Result<Cap<K>, ErrorCode> {
        raw(Syscall::CapMove, [self.slot.into(), dest.into(), 0, 0, 0, 0])?;
        Ok(Cap::at(dest))
    }

    /// Deletes it (copies derived from it stay).
    pub fn delete(self) -> Result<(), ErrorCode> {
        raw(Syscall::CapDelete, [self.slot.into(), 0, 0, 0, 0, 0]).map(|_| ())
    }

    /// Deletes every capability derived from it, in every task.
    pub fn revoke(self) -> Result<(), ErrorCode> {
        raw(Syscall::CapRevoke, [self.slot.into(), 0, 0, 0, 0, 0]).map(|_| ())
    }

    /// Kind, rights, badge (or base) and extent, as the kernel sees it.
    pub fn info(self) -> Result<Info, ErrorCode> {
        let [kind_rights, second, third] = raw(Syscall::CapInfo, [self.slot.into(), 0, 0, 0, 0, 0])?;
        Ok(Info {
            kind: ObjectKind::from_number(kind_rights & 0xff),
            rights: (kind_rights >> 8) as u32,
            badge_or_base: second,
            extent: third,
        })
    }
}

/// What [`Cap::info`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// The object's kind.
    pub kind: Option<ObjectKind>,
    /// `abi::rights` bits.
    pub rights: u32,
    /// Badge, or base address/port for device memory and ports.
    pub badge_or_base: u64,
    /// Pages or ports for memory and port capabilities; pages for frames;
    /// the task index for task and address-space capabilities.
    pub extent: u64,
}

/// The task's own capabilities at their fixed slots.
pub mod own {
    use super::{AddressSpace, Cap, Reply, Task, slots};

    /// This task.
    pub const TASK: Cap<Task> = Cap::at(slots::SELF_TASK);
    /// This task's address space.
    pub const SPACE: Cap<AddressSpace> = Cap::at(slots::SELF_SPACE);
    /// Where a received call's reply capability lands.
    pub const REPLY: Cap<Reply> = Cap::at(slots::REPLY);
}

/// A capability the binary expects from the policy, by name; declared with
/// [`crate::cap_slot!`] and resolved by the build tool.
#[repr(transparent)]
pub struct Slot<K: Kind> {
    entry: CapSlotEntry,
    kind: PhantomData<K>,
}

impl<K: Kind> Slot<K> {
    /// An entry for capability `name`.
    pub const fn new(name: &str) -> Self {
        Self { entry: CapSlotEntry::new(name, K::KIND), kind: PhantomData }
    }

    /// An entry for capability `name`, which the binary does without when
    /// the policy does not grant it.
    pub const fn optional(name: &str) -> Self {
        Self { entry: CapSlotEntry::optional(name, K::KIND), kind: PhantomData }
    }

    /// The capability (slot 0, always invalid, if the policy gives none).
    pub fn get(&self) -> Cap<K> {
        Cap::at(self.entry.slot())
    }
}

/// Declares a capability the task expects from the policy:
/// `cap_slot!(ECHO: Endpoint = "echo");` then `ECHO.get()`; with
/// `, optional` after the name, one the task does without (its slot is
/// then 0), which the build tool does not note missing.
#[macro_export]
macro_rules! cap_slot {
    ($vis:vis $name:ident : $kind:ident = $cap:literal) => {
        #[unsafe(link_section = ".cap_slots")]
        #[used]
        $vis static $name: $crate::cap::Slot<$crate::cap::$kind> = $crate::cap::Slot::new($cap);
    };
    ($vis:vis $name:ident : $kind:ident = $cap:literal, optional) => {
        #[unsafe(link_section = ".cap_slots")]
        #[used]
        $vis static $name: $crate::cap::Slot<$crate::cap::$kind> = $crate::cap::Slot::optional($cap);
    };
}

/// Dynamic slots a task hands out to capabilities it creates or receives.
pub struct SlotPool {
    free: u128,
}

impl SlotPool {
    /// Slots 64 to 127 (the policy installs from 8 upward, well below).
    pub const fn new() -> Self {
        Self { free: !0u128 << 64 }
    }

    /// Takes a free slot.
    pub fn take(&mut self) -> Option<u32> {
        let slot = self.free.trailing_zeros();
        (slot < 128).then(|| {
            self.free &= !(1 << slot);
            slot
        })
    }

    /// Takes `count` (1 to 64) consecutive free slots, for a receive window;
    /// returns the first.
    pub fn take_run(&mut self, count: u32) -> Option<u32> {
        let mask = 1u128.checked_shl(count)?.wrapping_sub(1);
        let first = (64..=128u32.checked_sub(count)?).find(|&first| (self.free >> first) & mask == mask)?;
        self.free &= !(mask << first);
        Some(first)
    }

    /// Gives a slot back (its capability must be gone or moved).
    pub fn give(&mut self, slot: u32) {
        if (64..128).contains(&slot) {
            self.free |= 1 << slot;
        }
    }
}

impl Default for SlotPool {
    fn default() -> Self {
        Self::new()
    }
}
