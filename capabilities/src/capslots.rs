//! The link-time table of capabilities a task binary expects.
//!
//! A task names each capability it uses with `userlib::cap_slot!`, which
//! places a [`CapSlotEntry`] in the ELF section [`SECTION`]. When the build
//! tool packs a boot image it reads that section, finds the capability of
//! the same name the policy gives the task, checks its kind, and writes the
//! slot it installs it in into the entry. So tasks never look capabilities
//! up by string at run time, and a binary and a policy that disagree are
//! caught before anything boots.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::abi::ObjectKind;

/// Name of the ELF section holding the entries.
pub const SECTION: &str = ".cap_slots";

/// Longest capability name.
pub const NAME_MAX: usize = 24;

/// Size of one entry in the section.
pub const ENTRY_SIZE: usize = core::mem::size_of::<CapSlotEntry>();

/// Offset of the slot field inside an entry.
pub const SLOT_OFFSET: usize = 28;

/// One capability a binary expects, resolved by the build tool.
#[repr(C)]
pub struct CapSlotEntry {
    name: [u8; NAME_MAX],
    name_len: u8,
    kind: u8,
    /// 1 if the binary does without it (see [`CapSlotEntry::optional`]).
    optional: u8,
    _reserved: u8,
    slot: AtomicU32,
}

const _: () = assert!(ENTRY_SIZE == 32 && core::mem::offset_of!(CapSlotEntry, slot) == SLOT_OFFSET);

impl CapSlotEntry {
    /// An unresolved entry for capability `name` of `kind` (slot 0, the
    /// null slot, until the build tool writes the real one).
    pub const fn new(name: &str, kind: ObjectKind) -> Self {
        Self::with(name, kind, false)
    }

    /// An entry for a capability the binary does without when the policy
    /// does not grant it (a second remapping unit, say): the build tool
    /// does not note it missing.
    pub const fn optional(name: &str, kind: ObjectKind) -> Self {
        Self::with(name, kind, true)
    }

    const fn with(name: &str, kind: ObjectKind, optional: bool) -> Self {
        let bytes = name.as_bytes();
        assert!(!bytes.is_empty() && bytes.len() <= NAME_MAX, "capability names are 1 to 24 bytes");
        let mut buffer = [0u8; NAME_MAX];
        let mut index = 0;
        while index < bytes.len() {
            buffer[index] = bytes[index];
            index += 1;
        }
        Self {
            name: buffer,
            name_len: bytes.len() as u8,
            kind: kind as u8,
            optional: optional as u8,
            _reserved: 0,
            slot: AtomicU32::new(0),
        }
    }

    /// The slot the build tool resolved (0 if the policy gives no such
    /// capability; every use of slot 0 fails with `InvalidCapability`).
    pub fn slot(&self) -> u32 {
        self.slot.load(Ordering::Relaxed)
    }
}

/// An entry as the build tool reads it from the section bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedEntry<'a> {
    /// Capability name.
    pub name: &'a str,
    /// Expected kind number (`ObjectKind`).
    pub kind: u8,
    /// The binary does without it.
    pub optional: bool,
}

/// Decodes entry bytes (exactly [`ENTRY_SIZE`] long).
pub fn parse(bytes: &[u8]) -> Option<ParsedEntry<'_>> {
    if bytes.len() != ENTRY_SIZE {
        return None;
    }
    let len = usize::from(bytes[NAME_MAX]).min(NAME_MAX);
    let name = core::str::from_utf8(&bytes[..len]).ok()?;
    Some(ParsedEntry { name, kind: bytes[NAME_MAX + 1], optional: bytes[NAME_MAX + 2] != 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_their_bytes() {
        static ENTRY: CapSlotEntry = CapSlotEntry::new("echo", ObjectKind::Endpoint);
        let bytes: [u8; ENTRY_SIZE] = [
            b'e', b'c', b'h', b'o', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 3, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(
            parse(&bytes),
            Some(ParsedEntry { name: "echo", kind: ObjectKind::Endpoint as u8, optional: false })
        );
        assert_eq!(ENTRY.slot(), 0);
        assert_eq!(parse(&bytes[1..]), None);
        let mut optional = bytes;
        optional[NAME_MAX + 2] = 1;
        assert_eq!(parse(&optional).map(|entry| entry.optional), Some(true));
        assert_eq!(core::mem::offset_of!(CapSlotEntry, optional), NAME_MAX + 2);
        static OPTIONAL: CapSlotEntry = CapSlotEntry::optional("unit-1", ObjectKind::DeviceMemory);
        assert_eq!((OPTIONAL.optional, OPTIONAL.slot()), (1, 0));
    }
}
