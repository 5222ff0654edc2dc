//! The interrupt-remapping table's allocator: who holds each entry, within quotas.
//!
//! The table is one 4 KiB page of 256 entries. Each entry in use belongs
//! to one device and one holder (the task the device's interrupts go to,
//! or the kernel for IO APIC lines), which is what revocation selects on.
//! Entry 0 is never handed out, so a message whose handle bits are all
//! zero names nothing. Allocation is next-fit: a freed entry is the last
//! to be reused, so a handle a revoked holder remembers keeps naming a
//! not-present entry for as long as possible.

use capabilities::pci::Bdf;

use super::entry::RemapEntry;

/// Entries in the table (one page of 16-byte entries).
pub const TABLE_ENTRIES: usize = 256;
/// The IRTA size field for [`TABLE_ENTRIES`]: the table has 2^(S+1) entries.
pub const TABLE_SIZE_FIELD: u8 = 7;

/// Who an entry's interrupts are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A task holding the device (by task index).
    Task(u16),
    /// The kernel: an IO APIC line it routes to a task's interrupt object.
    Kernel,
}

/// What an entry in use belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryOwner {
    /// The device whose messages use it (the IO APIC's source id for
    /// IO APIC lines).
    pub device: Bdf,
    /// The device's IOMMU group, if it is a PCI function.
    pub group: Option<u16>,
    /// Whose interrupts they are.
    pub holder: Holder,
}

/// An entry in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocated {
    /// Its owner.
    pub owner: EntryOwner,
    /// What it holds.
    pub entry: RemapEntry,
}

/// Most entries one device or one holder may have at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Per device.
    pub per_device: u16,
    /// Per holding task. Neither applies to the kernel's IO APIC lines.
    pub per_holder: u16,
}

/// Why an entry was not allocated or freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// The device has its quota of entries.
    DeviceQuota {
        /// The quota.
        limit: u16,
    },
    /// The holder has its quota of entries.
    HolderQuota {
        /// The quota.
        limit: u16,
    },
    /// Every entry is in use.
    Full,
    /// No such entry of that device.
    NotFound,
}

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::DeviceQuota { limit } => write!(f, "the device has its quota of {limit} interrupt entries"),
            Self::HolderQuota { limit } => write!(f, "the holder has its quota of {limit} interrupt entries"),
            Self::Full => write!(f, "all {} interrupt entries are in use", TABLE_ENTRIES - 1),
            Self::NotFound => f.write_str("no such interrupt entry of that device"),
        }
    }
}

/// The allocator's view of the table.
pub struct InterruptTable {
    slots: [Option<Allocated>; TABLE_ENTRIES],
    next: usize,
    quotas: Quotas,
}

impl InterruptTable {
    /// An empty table.
    pub fn new(quotas: Quotas) -> Self {
        Self { slots: [const { None }; TABLE_ENTRIES], next: 1, quotas }
    }

    /// The quotas.
    pub fn quotas(&self) -> Quotas {
        self.quotas
    }

    /// Records `entry` for `owner` in a free slot; its handle.
    pub fn allocate(&mut self, owner: EntryOwner, entry: RemapEntry) -> Result<u16, TableError> {
        let handle = self.find_slot(owner)?;
        self.slots[usize::from(handle)] = Some(Allocated { owner, entry });
        self.next = usize::from(handle) % (TABLE_ENTRIES - 1) + 1;
        Ok(handle)
    }

    fn find_slot(&self, owner: EntryOwner) -> Result<u16, TableError> {
        // The kernel's IO APIC lines all share the IO APIC's source id and
        // are bounded by its inputs, not by the quotas.
        if let Holder::Task(task) = owner.holder {
            let of_device = self.entries().filter(|(_, a)| a.owner.device == owner.device).count();
            if of_device >= usize::from(self.quotas.per_device) {
                return Err(TableError::DeviceQuota { limit: self.quotas.per_device });
            }
            let of_holder = self.entries().filter(|(_, a)| a.owner.holder == Holder::Task(task)).count();
            if of_holder >= usize::from(self.quotas.per_holder) {
                return Err(TableError::HolderQuota { limit: self.quotas.per_holder });
            }
        }
        // Next-fit over 1..TABLE_ENTRIES, starting at `next`.
        (0..TABLE_ENTRIES - 1)
            .map(|step| (self.next - 1 + step) % (TABLE_ENTRIES - 1) + 1)
            .find(|&index| self.slots[index].is_none())
            .map(|index| index as u16)
            .ok_or(TableError::Full)
    }

    /// The entry `handle` names, if in use.
    pub fn get(&self, handle: u16) -> Option<&Allocated> {
        self.slots.get(usize::from(handle))?.as_ref()
    }

    /// Frees entry `handle`, if `device` owns it.
    pub fn free(&mut self, handle: u16, device: Bdf) -> Result<Allocated, TableError> {
        let slot = self.slots.get_mut(usize::from(handle)).ok_or(TableError::NotFound)?;
        match slot {
            Some(allocated) if allocated.owner.device == device => slot.take().ok_or(TableError::NotFound),
            _ => Err(TableError::NotFound),
        }
    }

    /// Frees the first entry whose owner `select` picks; its handle and
    /// what it held (call until `None` to free them all).
    pub fn take_first(&mut self, select: impl Fn(&EntryOwner) -> bool) -> Option<(u16, Allocated)> {
        let index = self.slots.iter().position(|slot| slot.as_ref().is_some_and(|a| select(&a.owner)))?;
        self.slots[index].take().map(|allocated| (index as u16, allocated))
    }

    /// Entries in use, with their handles.
    pub fn entries(&self) -> impl Iterator<Item = (u16, &Allocated)> {
        self.slots.iter().enumerate().filter_map(|(index, slot)| slot.as_ref().map(|a| (index as u16, a)))
    }

    /// How many entries are in use.
    pub fn in_use(&self) -> usize {
        self.slots.iter().filter(|slot| slot.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::entry::{Delivery, Trigger};
    use crate::interrupt::source::SourceCheck;

    fn device(n: u8) -> Bdf {
        Bdf::new(0, n, 0).unwrap()
    }

    fn owner(n: u8, task: u16) -> EntryOwner {
        EntryOwner { device: device(n), group: Some(u16::from(n)), holder: Holder::Task(task) }
    }

    fn entry(vector: u8) -> RemapEntry {
        RemapEntry {
            delivery: Delivery { vector, destination: 0, trigger: Trigger::Edge },
            source: SourceCheck::Exact(0x18),
        }
    }

    fn table() -> InterruptTable {
        InterruptTable::new(Quotas { per_device: 2, per_holder: 3 })
    }

    #[test]
    fn handles_start_at_one_and_freed_entries_are_reused_last() {
        let mut table = table();
        let first = table.allocate(owner(3, 1), entry(0x30)).unwrap();
        let second = table.allocate(owner(4, 1), entry(0x31)).unwrap();
        assert_eq!((first, second), (1, 2));
        assert_eq!(table.free(first, device(3)).map(|a| a.entry), Ok(entry(0x30)));
        let third = table.allocate(owner(3, 1), entry(0x32)).unwrap();
        assert_eq!(third, 3, "next-fit: the freed entry 1 is not reused at once");
        assert_eq!(table.get(first), None);
        assert_eq!(table.get(third).map(|a| a.entry.delivery.vector), Some(0x32));
        assert_eq!(table.in_use(), 2);
    }

    #[test]
    fn quotas_per_device_and_per_holder() {
        let mut table = table();
        table.allocate(owner(3, 1), entry(0x30)).unwrap();
        table.allocate(owner(3, 1), entry(0x31)).unwrap();
        assert_eq!(table.allocate(owner(3, 2), entry(0x32)), Err(TableError::DeviceQuota { limit: 2 }));
        table.allocate(owner(4, 1), entry(0x33)).unwrap();
        assert_eq!(table.allocate(owner(5, 1), entry(0x34)), Err(TableError::HolderQuota { limit: 3 }));
        let kernel = EntryOwner { device: Bdf::from_requester_id(0xff00), group: None, holder: Holder::Kernel };
        for vector in 0x35..0x4d {
            assert!(table.allocate(kernel, entry(vector)).is_ok(), "24 IO APIC lines: no quota applies");
        }
    }

    #[test]
    fn only_the_owning_device_frees_an_entry() {
        let mut table = table();
        let handle = table.allocate(owner(3, 1), entry(0x30)).unwrap();
        assert_eq!(table.free(handle, device(4)), Err(TableError::NotFound));
        assert_eq!(table.free(0, device(3)), Err(TableError::NotFound));
        assert_eq!(table.free(u16::MAX, device(3)), Err(TableError::NotFound));
        assert!(table.free(handle, device(3)).is_ok());
        assert_eq!(table.free(handle, device(3)), Err(TableError::NotFound), "once");
    }

    #[test]
    fn a_full_table_refuses_and_revocation_takes_every_selected_entry() {
        let mut table = InterruptTable::new(Quotas { per_device: 1, per_holder: u16::MAX });
        for n in 0..TABLE_ENTRIES - 1 {
            let device = Bdf::from_requester_id(n as u16);
            let owner = EntryOwner { device, group: Some((n % 3) as u16), holder: Holder::Task((n % 2) as u16) };
            assert!(table.allocate(owner, entry(0x40)).is_ok());
        }
        let extra = EntryOwner { device: Bdf::from_requester_id(0x1000), group: None, holder: Holder::Kernel };
        assert_eq!(table.allocate(extra, entry(0x40)), Err(TableError::Full));
        let mut taken = 0;
        while let Some((handle, allocated)) = table.take_first(|o| o.group == Some(1) && o.holder == Holder::Task(1)) {
            assert_ne!(handle, 0);
            assert_eq!((allocated.owner.group, allocated.owner.holder), (Some(1), Holder::Task(1)));
            taken += 1;
        }
        // Devices 1, 7, 13, ... 253: group 1 and task 1.
        assert_eq!(taken, 43);
        assert_eq!(table.in_use(), TABLE_ENTRIES - 1 - 43);
        assert!(table.allocate(extra, entry(0x40)).is_ok());
    }
}
