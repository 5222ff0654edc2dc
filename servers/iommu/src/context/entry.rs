//! Legacy-mode root and context entries (128 bits each).
//!
//! A *blocking* context is the all-zero, not-present entry. Every DMA from
//! its requester then faults with reason 2 (context entry not present),
//! whatever the address: no page table, domain id or memory is needed to
//! block, hardware caches no translation for it, and fault reason 2
//! identifies a blocked requester in the fault log. (A present entry with
//! an empty page table would also fault everything, but costs a table page
//! and a domain id per unit.) Linux's VT-d blocking domain also clears the
//! context entry.

use crate::capability::AddressWidth;
use crate::domain::DomainId;
use crate::memory::TablePage;

/// Present bit of root and context entries (low word).
const PRESENT: u64 = 1;
/// Fault processing disable (context low word).
const FAULT_PROCESSING_DISABLE: u64 = 1 << 1;
/// Translation type field (context low word, bits 3:2); 0 selects
/// untranslated requests through second-level tables, the only type used.
const TRANSLATION_TYPE: u64 = 3 << 2;
/// Table pointer bits (low word, bits 63:12).
const POINTER: u64 = !0xfff;
/// Address width field (context high word, bits 2:0).
const ADDRESS_WIDTH: u64 = 7;
/// Domain id field shift (context high word, bits 23:8).
const DOMAIN_SHIFT: u32 = 8;

/// A root-table entry: the context table of one bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RootEntry {
    /// Bits 63:0.
    pub low: u64,
    /// Bits 127:64 (reserved in legacy mode).
    pub high: u64,
}

impl RootEntry {
    /// An entry pointing at `context_table`.
    pub fn present(context_table: TablePage) -> Self {
        Self { low: context_table.address() | PRESENT, high: 0 }
    }

    /// The context table, if the entry is present.
    pub fn context_table(&self) -> Option<TablePage> {
        if self.low & PRESENT == 0 {
            return None;
        }
        TablePage::new(self.low & POINTER)
    }
}

/// What a present context entry says: translate through these tables,
/// tagged with this domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TranslatedContext {
    /// Top-level second-level page table.
    pub page_table: TablePage,
    /// Width, and so depth, of that table.
    pub width: AddressWidth,
    /// Domain id the unit tags cached entries with.
    pub domain: DomainId,
    /// Suppress fault recording for this requester (for a known-noisy
    /// device once its faults are being rate limited).
    pub fault_processing_disable: bool,
}

/// A context-table entry: how one requester id's DMA is translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContextEntry {
    /// Bits 63:0.
    pub low: u64,
    /// Bits 127:64.
    pub high: u64,
}

impl ContextEntry {
    /// The blocking entry: not present, so every request faults.
    pub const BLOCKING: Self = Self { low: 0, high: 0 };

    /// A present entry translating through second-level tables.
    pub fn translated(context: TranslatedContext) -> Self {
        let fault = if context.fault_processing_disable { FAULT_PROCESSING_DISABLE } else { 0 };
        Self {
            low: context.page_table.address() | fault | PRESENT,
            high: u64::from(context.domain.get()) << DOMAIN_SHIFT | u64::from(context.width.encoding()),
        }
    }

    /// True unless the entry blocks.
    pub fn is_present(&self) -> bool {
        self.low & PRESENT != 0
    }

    /// The domain id a present entry tags its translations with.
    pub fn domain(&self) -> Option<DomainId> {
        self.is_present().then(|| DomainId::from_raw((self.high >> DOMAIN_SHIFT) as u16))
    }

    /// Decodes a present entry of the one type this crate writes.
    pub fn decode(&self) -> Option<TranslatedContext> {
        if !self.is_present() || self.low & TRANSLATION_TYPE != 0 {
            return None;
        }
        Some(TranslatedContext {
            page_table: TablePage::new(self.low & POINTER)?,
            width: AddressWidth::from_encoding((self.high & ADDRESS_WIDTH) as u8)?,
            domain: self.domain()?,
            fault_processing_disable: self.low & FAULT_PROCESSING_DISABLE != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Capabilities;

    #[test]
    fn root_entries() {
        let page = TablePage::new(0x12_3000).unwrap();
        let entry = RootEntry::present(page);
        assert_eq!(entry, RootEntry { low: 0x12_3001, high: 0 });
        assert_eq!(entry.context_table(), Some(page));
        assert_eq!(RootEntry::default().context_table(), None);
    }

    #[test]
    fn context_entries_round_trip() {
        let caps = Capabilities::decode(0x206, 0).unwrap();
        let context = TranslatedContext {
            page_table: TablePage::new(0x45_6000).unwrap(),
            width: AddressWidth::Bits48,
            domain: DomainId::new(0x1234, &caps).unwrap(),
            fault_processing_disable: true,
        };
        let entry = ContextEntry::translated(context);
        assert_eq!(entry, ContextEntry { low: 0x45_6003, high: 0x12_3402 });
        // QEMU's reserved bits for a legacy context entry (39-bit host width).
        assert_eq!(entry.low & 0xff0, 0);
        assert_eq!(entry.high & 0xffff_ffff_ff00_0080, 0);
        assert_eq!(entry.decode(), Some(context));
        assert_eq!(entry.domain().map(DomainId::get), Some(0x1234));
    }

    #[test]
    fn blocking_is_not_present_and_decodes_to_nothing() {
        assert!(!ContextEntry::BLOCKING.is_present());
        assert_eq!(ContextEntry::BLOCKING.domain(), None);
        assert_eq!(ContextEntry::BLOCKING.decode(), None);
        let pass_through = ContextEntry { low: 0x1000 | 2 << 2 | 1, high: 1 };
        assert_eq!(pass_through.decode(), None);
        let bad_width = ContextEntry { low: 0x1001, high: 0x100 | 7 };
        assert_eq!(bad_width.decode(), None);
    }
}
