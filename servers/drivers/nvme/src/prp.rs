//! Physical Region Page entries for a data buffer of one or two pages.
//!
//! A buffer that spans more than two memory pages needs a PRP list (a page
//! of entries the controller reads): this library refuses it with
//! [`Error::PrpListUnsupported`] rather than build one.

use crate::Error;

/// The two PRP entries of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prp {
    /// The buffer's first byte.
    pub first: u64,
    /// The start of the buffer's second page, or 0 when it has one.
    pub second: u64,
}

/// The PRPs for `length` bytes starting `offset` bytes into the first of
/// `pages`, the device addresses of consecutive pages of the buffer, each
/// `1 << page_shift` bytes and aligned to it.
pub fn build(pages: &[u64], offset: u64, length: u64, page_shift: u8) -> Result<Prp, Error> {
    let page = 1u64 << page_shift;
    // PRP entries address dwords: bits 1:0 of the offset are reserved.
    if length == 0 || offset >= page || !offset.is_multiple_of(4) {
        return Err(Error::BadBuffer);
    }
    let end = offset.checked_add(length).ok_or(Error::BadBuffer)?;
    let spanned = usize::try_from(end.div_ceil(page)).map_err(|_| Error::BadBuffer)?;
    if spanned > 2 {
        return Err(Error::PrpListUnsupported { pages: spanned });
    }
    let needed = pages.get(..spanned).ok_or(Error::BadBuffer)?;
    if needed.iter().any(|address| !address.is_multiple_of(page)) {
        return Err(Error::BadBuffer);
    }
    Ok(Prp { first: needed[0] + offset, second: needed.get(1).copied().unwrap_or(0) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_needs_only_the_first_entry() {
        assert_eq!(build(&[0x10_000], 0, 4096, 12), Ok(Prp { first: 0x10_000, second: 0 }));
        assert_eq!(build(&[0x10_000], 512, 512, 12), Ok(Prp { first: 0x10_200, second: 0 }));
    }

    #[test]
    fn a_buffer_crossing_a_page_uses_the_second_entry() {
        let prp = build(&[0x10_000, 0x30_000], 2048, 4096, 12);
        assert_eq!(prp, Ok(Prp { first: 0x10_800, second: 0x30_000 }));
        assert_eq!(build(&[0x10_000, 0x30_000], 0, 8192, 12), Ok(Prp { first: 0x10_000, second: 0x30_000 }));
    }

    #[test]
    fn three_pages_are_refused_as_needing_a_prp_list() {
        let pages = [0x10_000, 0x11_000, 0x12_000];
        assert_eq!(build(&pages, 0, 8193, 12), Err(Error::PrpListUnsupported { pages: 3 }));
        assert_eq!(build(&pages, 4, 8192, 12), Err(Error::PrpListUnsupported { pages: 3 }));
    }

    #[test]
    fn bad_buffers_are_refused() {
        assert_eq!(build(&[0x10_000], 0, 0, 12), Err(Error::BadBuffer));
        assert_eq!(build(&[0x10_000], 2, 16, 12), Err(Error::BadBuffer));
        assert_eq!(build(&[0x10_000], 4096, 16, 12), Err(Error::BadBuffer));
        assert_eq!(build(&[0x10_000], 0, 4097, 12), Err(Error::BadBuffer));
        assert_eq!(build(&[0x10_010], 0, 16, 12), Err(Error::BadBuffer));
        assert_eq!(build(&[0x10_000], 4, u64::MAX, 12), Err(Error::BadBuffer));
    }
}
