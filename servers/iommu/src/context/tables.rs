//! Building the root table and per-bus context tables, and changing entries.
//!
//! A present context entry is never rewritten in place: its 128 bits cannot
//! be written at once, and hardware could fetch a mix of old and new halves.
//! It is cleared (made blocking), invalidated, then installed anew.

use core::fmt;

use super::entry::{ContextEntry, RootEntry, TranslatedContext};
use crate::capability::Capabilities;
use crate::domain::DomainId;
use crate::invalidation::{Invalidation, policy};
use crate::memory::{EntryWriter, TablePage, TablePages};

/// Why a context table operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextError {
    /// No page could be allocated for a table.
    OutOfTablePages,
    /// The requester already has a present entry; clear it first.
    StillPresent {
        /// The requester id.
        source_id: u16,
        /// The domain it translates through.
        domain: DomainId,
    },
    /// The unit cannot walk page tables of the entry's width.
    UnsupportedWidth,
}

impl fmt::Display for ContextError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfTablePages => formatter.write_str("no page left for a context table"),
            Self::StillPresent { source_id, domain } => {
                write!(formatter, "requester {source_id:#06x} still translates through domain {}", domain.get())
            }
            Self::UnsupportedWidth => formatter.write_str("the unit does not support that table width"),
        }
    }
}

/// The root table of one unit and the context tables it points to. Every
/// requester starts out blocked.
#[derive(Debug)]
pub struct ContextTables {
    root: TablePage,
    capabilities: Capabilities,
}

/// Slot of a requester's entry: bus selects the root entry, device and
/// function the context entry; each 128-bit entry is two 64-bit slots.
fn slots(source_id: u16) -> (usize, usize) {
    let [devfn, bus] = source_id.to_le_bytes();
    (usize::from(bus) * 2, usize::from(devfn) * 2)
}

impl ContextTables {
    /// An empty root table, every bus without a context table.
    pub fn new(pages: &mut impl TablePages, capabilities: &Capabilities) -> Result<Self, ContextError> {
        let root = pages.allocate().ok_or(ContextError::OutOfTablePages)?;
        Ok(Self { root, capabilities: *capabilities })
    }

    /// The root table, for RTADDR.
    pub fn root(&self) -> TablePage {
        self.root
    }

    fn root_entry(&self, pages: &impl TablePages, bus_slot: usize) -> RootEntry {
        RootEntry { low: pages.read(self.root, bus_slot), high: pages.read(self.root, bus_slot + 1) }
    }

    /// The current entry of a requester (blocking if its bus has no table).
    pub fn entry(&self, pages: &impl TablePages, source_id: u16) -> ContextEntry {
        let (bus_slot, device_slot) = slots(source_id);
        match self.root_entry(pages, bus_slot).context_table() {
            Some(table) => {
                ContextEntry { low: pages.read(table, device_slot), high: pages.read(table, device_slot + 1) }
            }
            None => ContextEntry::BLOCKING,
        }
    }

    /// Makes a blocked requester translate through `context`; returns the
    /// invalidations the change needs.
    pub fn install<P: TablePages>(
        &mut self,
        pages: &mut P,
        source_id: u16,
        context: TranslatedContext,
    ) -> Result<Invalidation, ContextError> {
        if !self.capabilities.supports(context.width) {
            return Err(ContextError::UnsupportedWidth);
        }
        if let Some(domain) = self.entry(pages, source_id).domain() {
            return Err(ContextError::StillPresent { source_id, domain });
        }
        let (bus_slot, device_slot) = slots(source_id);
        let existing = self.root_entry(pages, bus_slot).context_table();
        let table = match existing {
            Some(table) => table,
            None => pages.allocate().ok_or(ContextError::OutOfTablePages)?,
        };
        let entry = ContextEntry::translated(context);
        let mut writer = EntryWriter::new(pages, self.capabilities.coherent);
        // High half first: hardware acts on the entry once the low half's
        // present bit is visible, and must then see the whole entry.
        writer.write(table, device_slot + 1, entry.high);
        writer.write(table, device_slot, entry.low);
        if existing.is_none() {
            // The context table is complete before the root points at it.
            writer.finish();
            writer.write(self.root, bus_slot, RootEntry::present(table).low);
        }
        Ok(policy::context_installed(&self.capabilities, source_id, context.domain, existing.is_none()))
    }

    /// Blocks a requester; returns the invalidations the change needs
    /// (none if it was already blocked).
    pub fn clear<P: TablePages>(&mut self, pages: &mut P, source_id: u16) -> Invalidation {
        let (bus_slot, device_slot) = slots(source_id);
        let (Some(table), Some(domain)) =
            (self.root_entry(pages, bus_slot).context_table(), self.entry(pages, source_id).domain())
        else {
            return Invalidation::default();
        };
        let mut writer = EntryWriter::new(pages, self.capabilities.coherent);
        // Low half first, so the entry stops being present before the rest
        // of it changes.
        writer.write(table, device_slot, ContextEntry::BLOCKING.low);
        writer.write(table, device_slot + 1, ContextEntry::BLOCKING.high);
        policy::context_cleared(source_id, domain)
    }

    /// Releases the root and every context table. Only once translation is
    /// disabled or the root pointer has been replaced and invalidated.
    pub fn release(self, pages: &mut impl TablePages) {
        for bus in 0..256 {
            if let Some(table) = self.root_entry(pages, bus * 2).context_table() {
                pages.release(table);
            }
        }
        pages.release(self.root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::AddressWidth;
    use crate::invalidation::{ContextScope, IotlbScope};
    use crate::testing::FakePages;

    const QEMU_CAP: u64 = 0x00d2_008c_2226_0206;
    const QEMU_ECAP: u64 = 0xf0_0f4a;

    fn context(caps: &Capabilities, domain: u16) -> TranslatedContext {
        TranslatedContext {
            page_table: TablePage::new(0x8000_0000).unwrap(),
            width: AddressWidth::Bits39,
            domain: DomainId::new(domain, caps).unwrap(),
            fault_processing_disable: false,
        }
    }

    #[test]
    fn every_requester_starts_blocked() {
        let caps = Capabilities::decode(QEMU_CAP, QEMU_ECAP).unwrap();
        let mut pages = FakePages::new(8);
        let tables = ContextTables::new(&mut pages, &caps).unwrap();
        for source_id in [0, 0x18, 0xff00, 0xffff] {
            assert_eq!(tables.entry(&pages, source_id), ContextEntry::BLOCKING);
        }
    }

    #[test]
    fn install_builds_the_bus_table_then_clear_blocks_again() {
        let caps = Capabilities::decode(QEMU_CAP, QEMU_ECAP).unwrap();
        let mut pages = FakePages::new(8);
        let mut tables = ContextTables::new(&mut pages, &caps).unwrap();
        let needed = tables.install(&mut pages, 0x0108, context(&caps, 3)).unwrap();
        assert!(needed.is_empty(), "no caching mode, no RWBF: nothing to invalidate");
        assert_eq!(pages.live(), 2);
        assert_eq!(tables.entry(&pages, 0x0108).decode(), Some(context(&caps, 3)));
        assert_eq!(tables.entry(&pages, 0x0109), ContextEntry::BLOCKING);
        // QEMU reports ECAP.C = 0: every written entry was flushed, the
        // context table before the root entry pointing at it.
        let root = tables.root();
        let last = pages.flushes.last().copied().unwrap();
        assert_eq!(last, (root, 2, 1));
        assert_eq!(pages.flushes.len(), 2);

        assert_eq!(
            tables.install(&mut pages, 0x0108, context(&caps, 4)),
            Err(ContextError::StillPresent { source_id: 0x0108, domain: DomainId::new(3, &caps).unwrap() })
        );
        tables.install(&mut pages, 0x0110, context(&caps, 3)).unwrap();
        assert_eq!(pages.live(), 2, "same bus, same context table");

        let needed = tables.clear(&mut pages, 0x0108);
        let domain = DomainId::new(3, &caps).unwrap();
        assert_eq!(needed.context, Some(ContextScope::Device { domain, source_id: 0x0108 }));
        assert_eq!(needed.iotlb.as_slice(), [IotlbScope::Domain(domain)]);
        assert_eq!(tables.entry(&pages, 0x0108), ContextEntry::BLOCKING);
        assert!(tables.clear(&mut pages, 0x0108).is_empty());
        assert!(tables.clear(&mut pages, 0x0508).is_empty());
        tables.install(&mut pages, 0x0108, context(&caps, 4)).unwrap();
        tables.release(&mut pages);
        assert_eq!(pages.live(), 0);
    }

    #[test]
    fn caching_mode_installs_need_invalidation() {
        let caps = Capabilities::decode(QEMU_CAP | 1 << 7, QEMU_ECAP | 1).unwrap();
        let mut pages = FakePages::new(8);
        let mut tables = ContextTables::new(&mut pages, &caps).unwrap();
        let first = tables.install(&mut pages, 0x0018, context(&caps, 1)).unwrap();
        assert_eq!(first.context, Some(ContextScope::Global));
        let second = tables.install(&mut pages, 0x0020, context(&caps, 1)).unwrap();
        assert!(matches!(second.context, Some(ContextScope::Device { source_id: 0x0020, .. })));
        assert!(pages.flushes.is_empty(), "coherent unit: no flushes");
    }

    #[test]
    fn exhaustion_and_unsupported_widths_are_errors() {
        let caps = Capabilities::decode(QEMU_CAP, QEMU_ECAP).unwrap();
        let mut pages = FakePages::new(1);
        let mut tables = ContextTables::new(&mut pages, &caps).unwrap();
        assert_eq!(tables.install(&mut pages, 0x18, context(&caps, 1)), Err(ContextError::OutOfTablePages));
        assert_eq!(tables.entry(&pages, 0x18), ContextEntry::BLOCKING);
        let mut wide = context(&caps, 1);
        wide.width = AddressWidth::Bits48;
        assert_eq!(tables.install(&mut pages, 0x18, wide), Err(ContextError::UnsupportedWidth));
        assert!(ContextTables::new(&mut FakePages::new(0), &caps).is_err());
    }
}
