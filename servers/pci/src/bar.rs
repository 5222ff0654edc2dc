//! Base address registers: decoding, and sizing by the write-all-ones protocol.
//!
//! A BAR's size is not stored anywhere: software writes all ones, reads back
//! which address bits the device let it set (the rest are hard-wired zero
//! below the size), and restores the original value. Sizing therefore
//! briefly moves the BAR, so memory and I/O decoding are switched off while
//! it runs and the command register is restored afterwards, as Linux does.

use capabilities::pci::{Bdf, HeaderKind};

use crate::config::{ConfigSpace, Function};
use crate::error::PciError;
use crate::header::{COMMAND_IO, COMMAND_MEMORY, reg};

/// Most BARs a header has (type 0).
pub const MAX_BARS: usize = 6;

/// What address space a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BarKind {
    /// I/O ports.
    Io,
    /// Memory below 4 GiB (type 0b00).
    Memory32 {
        /// Reads have no side effects, so the range may be prefetched.
        prefetchable: bool,
    },
    /// Memory below 1 MiB (the obsolete type 0b01).
    MemoryBelow1M {
        /// Reads have no side effects.
        prefetchable: bool,
    },
    /// Memory anywhere in 64-bit space (type 0b10); uses this BAR and the next.
    Memory64 {
        /// Reads have no side effects.
        prefetchable: bool,
    },
}

/// One BAR as programmed (by firmware), without its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BarValue {
    /// Index of the BAR (its lower half for a 64-bit BAR).
    pub index: u8,
    /// Address space and width.
    pub kind: BarKind,
    /// The address it is programmed to.
    pub base: u64,
}

/// One implemented BAR with its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Bar {
    /// Index, address space and programmed base.
    pub value: BarValue,
    /// Bytes it decodes (a power of two).
    pub size: u64,
}

/// Number of BARs a header layout has.
pub fn bar_count(kind: HeaderKind) -> u8 {
    match kind {
        HeaderKind::Normal => 6,
        HeaderKind::PciBridge => 2,
        HeaderKind::CardBus => 1,
        HeaderKind::Unknown(_) => 0,
    }
}

/// Register offset of BAR `index`.
fn offset(index: u8) -> u16 {
    reg::BAR0 + 4 * u16::from(index)
}

/// Decodes the low register's type bits; `None` for the reserved memory type.
fn kind_of(low: u32) -> Option<BarKind> {
    if low & 1 != 0 {
        return Some(BarKind::Io);
    }
    let prefetchable = low & 8 != 0;
    match (low >> 1) & 3 {
        0 => Some(BarKind::Memory32 { prefetchable }),
        1 => Some(BarKind::MemoryBelow1M { prefetchable }),
        2 => Some(BarKind::Memory64 { prefetchable }),
        _ => None,
    }
}

/// Bits of the low register that are flags, not address.
fn flag_mask(kind: BarKind) -> u32 {
    match kind {
        BarKind::Io => 0x3,
        _ => 0xf,
    }
}

/// Checks `index` against the header and reads its type, taking for
/// granted that `index` is not the upper half of a 64-bit BAR.
fn kind_at<C: ConfigSpace + ?Sized>(
    f: &mut Function<'_, C>,
    header: HeaderKind,
    index: u8,
) -> Result<(BarKind, u32), PciError> {
    let count = bar_count(header);
    if index >= count {
        return Err(PciError::NoSuchBar { bdf: f.bdf(), index });
    }
    let low = f.read32(offset(index))?;
    let kind = kind_of(low).ok_or(PciError::ReservedBarType { bdf: f.bdf(), offset: offset(index) })?;
    if matches!(kind, BarKind::Memory64 { .. }) && index + 1 >= count {
        return Err(PciError::Bar64WithoutUpperHalf { bdf: f.bdf(), offset: offset(index) });
    }
    Ok((kind, low))
}

/// Like [`kind_at`], but first walks the BARs below `index` to reject the
/// upper half of a 64-bit BAR (only the layout from BAR 0 up tells).
fn locate<C: ConfigSpace + ?Sized>(
    f: &mut Function<'_, C>,
    header: HeaderKind,
    index: u8,
) -> Result<(BarKind, u32), PciError> {
    let mut below = 0;
    while below < index {
        below += match kind_at(f, header, below)?.0 {
            BarKind::Memory64 { .. } => 2,
            _ => 1,
        };
    }
    if below > index {
        return Err(PciError::UpperHalfOfBar { bdf: f.bdf(), offset: offset(index) });
    }
    kind_at(f, header, index)
}

/// Reads BAR `index` of `bdf` (a function with `header` layout) without
/// touching it.
pub fn read<C: ConfigSpace + ?Sized>(
    cfg: &mut C,
    bdf: Bdf,
    header: HeaderKind,
    index: u8,
) -> Result<BarValue, PciError> {
    let f = &mut Function::new(cfg, bdf);
    let (kind, low) = locate(f, header, index)?;
    let high = match kind {
        BarKind::Memory64 { .. } => f.read32(offset(index + 1))?,
        _ => 0,
    };
    let base = (u64::from(high) << 32) | u64::from(low & !flag_mask(kind));
    Ok(BarValue { index, kind, base })
}

/// Writes all ones to the register at `at`, reads what sticks, restores it.
fn probe<C: ConfigSpace + ?Sized>(f: &mut Function<'_, C>, at: u16) -> Result<(u32, u32), PciError> {
    let original = f.read32(at)?;
    f.write32(at, u32::MAX)?;
    let sized = f.read32(at);
    let restored = f.write32(at, original);
    Ok((original, sized.and_then(|sized| restored.map(|()| sized))?))
}

/// The size a sizing read-back gives: the lowest address bit the device
/// let software set. `None` if no address bit stuck (BAR not implemented).
fn size_from_mask(mask: u64) -> Option<u64> {
    (mask != 0).then(|| mask & mask.wrapping_neg())
}

/// Sizes BAR `index` with decoding already off: its kind, and the BAR if
/// it is implemented.
fn size_one<C: ConfigSpace + ?Sized>(
    f: &mut Function<'_, C>,
    header: HeaderKind,
    index: u8,
) -> Result<(BarKind, Option<Bar>), PciError> {
    let (kind, _) = kind_at(f, header, index)?;
    let (low, low_mask) = probe(f, offset(index))?;
    if low_mask == 0 || low_mask == u32::MAX {
        // Nothing stuck, or nothing answered the read-back (Linux also
        // takes all ones as "no BAR here").
        return Ok((kind, None));
    }
    let (high, high_mask) = match kind {
        BarKind::Memory64 { .. } => probe(f, offset(index + 1))?,
        _ => (0, 0),
    };
    let mut mask = (u64::from(high_mask) << 32) | u64::from(low_mask & !flag_mask(kind));
    if kind == BarKind::Io && low_mask & 0xffff_0000 == 0 {
        // A 16-bit I/O decoder hard-wires the upper half to zero.
        mask |= 0xffff_0000;
    }
    let base = (u64::from(high) << 32) | u64::from(low & !flag_mask(kind));
    Ok((kind, size_from_mask(mask).map(|size| Bar { value: BarValue { index, kind, base }, size })))
}

/// Sizes every implemented BAR of `bdf`, with memory and I/O decoding
/// switched off meanwhile. Entry `i` is BAR `i`; unimplemented BARs and
/// upper halves of 64-bit BARs are `None`. The command register is restored
/// even when a BAR fails to size; the first error is returned.
pub fn size_all<C: ConfigSpace + ?Sized>(
    cfg: &mut C,
    bdf: Bdf,
    header: HeaderKind,
) -> Result<[Option<Bar>; MAX_BARS], PciError> {
    let f = &mut Function::new(cfg, bdf);
    let command = f.read16(reg::COMMAND)?;
    let decoding = command & (COMMAND_IO | COMMAND_MEMORY);
    if decoding != 0 {
        f.write16(reg::COMMAND, command & !decoding)?;
    }
    let sized = size_each(f, header);
    let restored = if decoding != 0 { f.write16(reg::COMMAND, command) } else { Ok(()) };
    let bars = sized?;
    restored?;
    Ok(bars)
}

fn size_each<C: ConfigSpace + ?Sized>(
    f: &mut Function<'_, C>,
    header: HeaderKind,
) -> Result<[Option<Bar>; MAX_BARS], PciError> {
    let mut bars = [None; MAX_BARS];
    let mut index = 0;
    while index < bar_count(header) {
        let (kind, bar) = size_one(f, header, index)?;
        let width = if matches!(kind, BarKind::Memory64 { .. }) { 2 } else { 1 };
        if let Some(slot) = bars.get_mut(usize::from(index)) {
            *slot = bar;
        }
        index += width;
    }
    Ok(bars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeConfig, FakeFunction, bdf};

    /// edu-like: 1 MiB memory BAR0; a 64-bit prefetchable 8 GiB BAR2/3; a
    /// 32-byte I/O BAR4 with a 16-bit decoder; BAR5 unimplemented.
    fn device() -> FakeConfig {
        let mut function = FakeFunction::endpoint(0x1234, 0x11e8)
            .bar(0, 0xfe80_0000, 0xfff0_0000)
            .bar(2, 0x0000_000c, 0x0000_0000)
            .bar(3, 0x0000_0002, 0xffff_fffe)
            .bar(4, 0x0000_c041, 0x0000_ffe0)
            .bar(5, 0, 0);
        function.set16(0x04, COMMAND_IO | COMMAND_MEMORY);
        FakeConfig::default().with("00:03.0", function)
    }

    #[test]
    fn sizes_every_kind_and_restores_everything() {
        let mut cfg = device();
        let before = cfg.functions[&bdf("00:03.0")].bytes.clone();
        let bars = size_all(&mut cfg, bdf("00:03.0"), HeaderKind::Normal).unwrap();
        let memory = BarValue { index: 0, kind: BarKind::Memory32 { prefetchable: false }, base: 0xfe80_0000 };
        assert_eq!(bars[0], Some(Bar { value: memory, size: 1 << 20 }));
        assert_eq!(bars[1], None);
        let wide = BarValue { index: 2, kind: BarKind::Memory64 { prefetchable: true }, base: 8 << 30 };
        assert_eq!(bars[2], Some(Bar { value: wide, size: 8 << 30 }));
        assert_eq!(bars[3], None, "upper half");
        let io = BarValue { index: 4, kind: BarKind::Io, base: 0xc040 };
        assert_eq!(bars[4], Some(Bar { value: io, size: 32 }));
        assert_eq!(bars[5], None);
        assert_eq!(cfg.functions[&bdf("00:03.0")].bytes, before);
        assert!(!cfg.bar_written_while_decoding);
    }

    #[test]
    fn reads_without_sizing() {
        let mut cfg = device();
        let wide = read(&mut cfg, bdf("00:03.0"), HeaderKind::Normal, 2).unwrap();
        assert_eq!(wide, BarValue { index: 2, kind: BarKind::Memory64 { prefetchable: true }, base: 8 << 30 });
        assert_eq!(
            read(&mut cfg, bdf("00:03.0"), HeaderKind::Normal, 3),
            Err(PciError::UpperHalfOfBar { bdf: bdf("00:03.0"), offset: 0x1c })
        );
        assert_eq!(
            read(&mut cfg, bdf("00:03.0"), HeaderKind::Normal, 6),
            Err(PciError::NoSuchBar { bdf: bdf("00:03.0"), index: 6 })
        );
        assert_eq!(
            read(&mut cfg, bdf("00:03.0"), HeaderKind::PciBridge, 2),
            Err(PciError::NoSuchBar { bdf: bdf("00:03.0"), index: 2 })
        );
    }

    #[test]
    fn broken_bars_are_errors_and_the_command_register_is_restored() {
        let mut function = FakeFunction::endpoint(1, 2).bar(0, 0x6, 0);
        function.set16(0x04, COMMAND_MEMORY);
        let mut cfg = FakeConfig::default().with("00:03.0", function);
        assert_eq!(
            size_all(&mut cfg, bdf("00:03.0"), HeaderKind::Normal),
            Err(PciError::ReservedBarType { bdf: bdf("00:03.0"), offset: 0x10 })
        );
        assert_eq!(cfg.functions[&bdf("00:03.0")].bytes[4], COMMAND_MEMORY as u8);
        let function = FakeFunction::endpoint(1, 2).bar(5, 0x4, 0xffff_0000);
        let mut cfg = FakeConfig::default().with("00:03.0", function);
        assert_eq!(
            read(&mut cfg, bdf("00:03.0"), HeaderKind::Normal, 5),
            Err(PciError::Bar64WithoutUpperHalf { bdf: bdf("00:03.0"), offset: 0x24 })
        );
    }

    #[test]
    fn bridges_have_two_bars() {
        let bridge = FakeFunction::bridge(0x1b36, 0x000e, 0, 1, 1).bar(0, 0x4, 0xffff_ff00).bar(1, 0, 0xffff_ffff);
        let mut cfg = FakeConfig::default().with("00:02.0", bridge);
        let bars = size_all(&mut cfg, bdf("00:02.0"), HeaderKind::PciBridge).unwrap();
        let shpc = BarValue { index: 0, kind: BarKind::Memory64 { prefetchable: false }, base: 0 };
        assert_eq!(bars, [Some(Bar { value: shpc, size: 256 }), None, None, None, None, None]);
    }
}
