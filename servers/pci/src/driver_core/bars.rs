//! Which memory BARs can become device-memory capabilities a holder may map.
//!
//! A capability covers whole pages, so a BAR is granted only if its base
//! is page-aligned and no other function's BAR lies in the pages it
//! spans: a BAR smaller than a page that shares its page with another
//! device would hand that device's registers to the wrong holder. A grant
//! carries at most [`MAX_GRANTED_BARS`] BARs (one message carries four
//! capabilities: two BARs, the interrupt and the DMA handle), the first
//! ones in BAR order. The pages holding the MSI-X table and PBA are left
//! out of a BAR's capability ([`super::msix_pages`]).

use capabilities::abi::PAGE_SIZE;
use capabilities::pci::{Bdf, MsixInfo};
use heapless::Vec;

use super::msix_pages::{OnlyMsix, PageRun, holder_run};
use crate::bar::{Bar, BarKind, MAX_BARS};

/// Most BARs one grant carries (`pci_api::DeviceGrant::bars`).
pub const MAX_GRANTED_BARS: usize = 2;

/// A memory BAR that may be granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BarRegion {
    /// BAR number.
    pub index: u8,
    /// Physical base (page-aligned).
    pub base: u64,
    /// Bytes the BAR decodes.
    pub size: u64,
    /// The pages of it the holder's capability covers (none of them the
    /// MSI-X table's or PBA's).
    pub holder: PageRun,
}

impl BarRegion {
    /// Whole pages the holder's capability covers.
    pub fn pages(&self) -> u64 {
        self.holder.pages
    }

    /// Physical address where the holder's capability starts.
    pub fn holder_base(&self) -> u64 {
        self.base + self.holder.first * PAGE_SIZE
    }

    /// Byte offset in the BAR where the holder's capability starts.
    pub fn holder_offset(&self) -> u64 {
        self.holder.first * PAGE_SIZE
    }

    fn end(&self) -> u64 {
        self.base.saturating_add(self.size.div_ceil(PAGE_SIZE).saturating_mul(PAGE_SIZE))
    }
}

/// Why a BAR is not granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BarSkip {
    /// An I/O BAR (no port capabilities are granted through the PCI server).
    Io,
    /// Firmware left it at address 0.
    Unassigned,
    /// Its base is not page-aligned.
    Unaligned,
    /// Another function's BAR lies in its pages.
    SharesPage {
        /// That function.
        with: Bdf,
        /// Its BAR.
        bar: u8,
    },
    /// It holds only the MSI-X table and PBA, which are the server's.
    OnlyMsix,
    /// The grant already carries the most BARs it can.
    BeyondGrant,
}

/// The sized BARs of one function.
pub type SizedBars = [Option<Bar>; MAX_BARS];

/// The BARs of `bdf` (sized as `bars`) a holder may be granted, and those
/// it may not with the reason; `all` is every function's sized BARs and
/// `msix` the function's MSI-X capability, whose pages are the server's.
pub fn plan(
    bdf: Bdf,
    bars: &SizedBars,
    all: &[(Bdf, SizedBars)],
    msix: Option<&MsixInfo>,
) -> (Vec<BarRegion, MAX_GRANTED_BARS>, Vec<(u8, BarSkip), MAX_BARS>) {
    let mut granted = Vec::new();
    let mut skipped = Vec::new();
    for bar in bars.iter().flatten() {
        let verdict = check(bdf, bar, all, msix)
            .and_then(|region| if granted.is_full() { Err(BarSkip::BeyondGrant) } else { Ok(region) });
        // Both lists hold at most as many entries as there are BARs.
        let _ = match verdict {
            Ok(region) => granted.push(region).map_err(|_| ()),
            Err(skip) => skipped.push((bar.value.index, skip)).map_err(|_| ()),
        };
    }
    (granted, skipped)
}

fn check(bdf: Bdf, bar: &Bar, all: &[(Bdf, SizedBars)], msix: Option<&MsixInfo>) -> Result<BarRegion, BarSkip> {
    if bar.value.kind == BarKind::Io {
        return Err(BarSkip::Io);
    }
    if bar.value.base == 0 {
        return Err(BarSkip::Unassigned);
    }
    if !bar.value.base.is_multiple_of(PAGE_SIZE) {
        return Err(BarSkip::Unaligned);
    }
    let holder = holder_run(bar.value.index, bar.size, msix).map_err(|OnlyMsix| BarSkip::OnlyMsix)?;
    let region = BarRegion { index: bar.value.index, base: bar.value.base, size: bar.size, holder };
    for (other, bars) in all.iter().filter(|(other, _)| *other != bdf) {
        for theirs in bars.iter().flatten().filter(|theirs| theirs.value.kind != BarKind::Io) {
            let end = theirs.value.base.saturating_add(theirs.size);
            if theirs.value.base < region.end() && region.base < end {
                return Err(BarSkip::SharesPage { with: *other, bar: theirs.value.index });
            }
        }
    }
    Ok(region)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bar::BarValue;

    fn memory(index: u8, base: u64, size: u64) -> Option<Bar> {
        Some(Bar { value: BarValue { index, kind: BarKind::Memory32 { prefetchable: false }, base }, size })
    }

    fn bdf(device: u8) -> Bdf {
        Bdf::new(0, device, 0).unwrap()
    }

    #[test]
    fn page_aligned_exclusive_bars_are_granted_in_order() {
        let edu: SizedBars = [memory(0, 0xfea0_0000, 1 << 20), None, None, None, None, None];
        let wide = Some(Bar {
            value: BarValue { index: 2, kind: BarKind::Memory64 { prefetchable: true }, base: 0x8_0000_0000 },
            size: 1 << 30,
        });
        let nic: SizedBars = [memory(0, 0xfeb0_0000, 0x2_0000), memory(1, 0xfeb2_0000, 0x100), wide, None, None, None];
        let all = [(bdf(3), edu), (bdf(4), nic)];
        let (granted, skipped) = plan(bdf(3), &edu, &all, None);
        assert_eq!(
            granted.as_slice(),
            [BarRegion { index: 0, base: 0xfea0_0000, size: 1 << 20, holder: PageRun { first: 0, pages: 256 } }]
        );
        assert!(skipped.is_empty());
        let (granted, skipped) = plan(bdf(4), &nic, &all, None);
        assert_eq!(granted.iter().map(|r| (r.index, r.pages())).collect::<std::vec::Vec<_>>(), [(0, 32), (1, 1)]);
        assert_eq!(skipped.as_slice(), [(2, BarSkip::BeyondGrant)]);
    }

    #[test]
    fn bars_sharing_a_page_with_another_function_are_not_granted() {
        let first: SizedBars = [memory(0, 0xfe00_0000, 0x100), None, None, None, None, None];
        let second: SizedBars = [memory(0, 0xfe00_0800, 0x100), None, None, None, None, None];
        let all = [(bdf(3), first), (bdf(4), second)];
        let (granted, skipped) = plan(bdf(3), &first, &all, None);
        assert!(granted.is_empty());
        assert_eq!(skipped.as_slice(), [(0, BarSkip::SharesPage { with: bdf(4), bar: 0 })]);
    }

    #[test]
    fn a_bar_of_only_msix_pages_is_not_granted_and_others_are_cut() {
        use capabilities::pci::BarLocation;
        let msix = |table: u32, pending: u32| MsixInfo {
            offset: 0x70,
            table_size: 4,
            table: BarLocation { bar: 0, offset: table },
            pending: BarLocation { bar: 0, offset: pending },
            enabled: false,
            function_masked: false,
        };
        let only: SizedBars = [memory(0, 0xfe00_0000, 0x2000), None, None, None, None, None];
        let (granted, skipped) = plan(bdf(3), &only, &[(bdf(3), only)], Some(&msix(0, 0x1000)));
        assert!(granted.is_empty());
        assert_eq!(skipped.as_slice(), [(0, BarSkip::OnlyMsix)]);
        let bars: SizedBars = [memory(0, 0xfe00_0000, 0x8000), None, None, None, None, None];
        let all = [(bdf(3), bars)];
        let (granted, _) = plan(bdf(3), &bars, &all, Some(&msix(0x2000, 0x3000)));
        assert_eq!((granted[0].holder_base(), granted[0].pages(), granted[0].holder.first), (0xfe00_0000, 2, 0));
        let (granted, _) = plan(bdf(3), &bars, &all, Some(&msix(0x6000, 0x7000)));
        assert_eq!((granted[0].holder_base(), granted[0].pages()), (0xfe00_0000, 6));
        let (granted, _) = plan(bdf(3), &bars, &all, Some(&msix(0, 0x800)));
        assert_eq!(
            (granted[0].holder_base(), granted[0].pages(), granted[0].holder_offset()),
            (0xfe00_1000, 7, 0x1000)
        );
    }

    #[test]
    fn io_unassigned_and_unaligned_bars_are_not_granted() {
        let io = Some(Bar { value: BarValue { index: 0, kind: BarKind::Io, base: 0xc000 }, size: 32 });
        let bars: SizedBars = [io, memory(1, 0, 0x1000), memory(2, 0xfe00_0800, 0x800), None, None, None];
        let (granted, skipped) = plan(bdf(3), &bars, &[(bdf(3), bars)], None);
        assert!(granted.is_empty());
        assert_eq!(skipped.as_slice(), [(0, BarSkip::Io), (1, BarSkip::Unassigned), (2, BarSkip::Unaligned)]);
    }
}
