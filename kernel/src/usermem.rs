//! Copying to and from user memory by walking the task's page tables.
//!
//! The kernel never dereferences a user pointer: it translates each page
//! through the task's own tables, checks the user and write permissions of
//! the leaf, and copies through [`PhysMem`]. It touches only RAM it
//! manages: a leaf that maps device memory, or any frame the memory does
//! not manage, is refused. A null, kernel, unmapped, read-only or device
//! address is therefore an error code, never a kernel fault.

use capabilities::ErrorCode;
use capabilities::abi::layout;

use crate::paging::{self, flags};
use crate::phys::{Frame, PAGE_SIZE, PhysMem};

/// Checks that `[address, address + len)` is a user range and returns the
/// physical frame and offset of each page-sized piece through `visit`.
fn for_each_piece(
    mem: &impl PhysMem,
    root: Frame,
    address: u64,
    len: usize,
    writable: bool,
    mut visit: impl FnMut(Frame, usize, usize, usize),
) -> Result<(), ErrorCode> {
    let end = address.checked_add(len as u64).ok_or(ErrorCode::BadAddress)?;
    if end > layout::USER_END {
        return Err(ErrorCode::BadAddress);
    }
    let mut done = 0usize;
    while done < len {
        let here = address + done as u64;
        let translation = paging::translate(mem, root, here).ok_or(ErrorCode::BadAddress)?;
        let needed = flags::PRESENT | flags::USER | if writable { flags::WRITABLE } else { 0 };
        if translation.flags & needed != needed || translation.flags & flags::DEVICE != 0 {
            return Err(ErrorCode::BadAddress);
        }
        let frame = Frame::containing(translation.physical);
        if !mem.manages(frame) {
            return Err(ErrorCode::BadAddress);
        }
        let offset = (here % PAGE_SIZE as u64) as usize;
        let chunk = (PAGE_SIZE - offset).min(len - done);
        visit(frame, offset, done, chunk);
        done += chunk;
    }
    Ok(())
}

/// Fills `buffer` from user address `address` of the space rooted at `root`.
pub fn copy_from_user(mem: &impl PhysMem, root: Frame, address: u64, buffer: &mut [u8]) -> Result<(), ErrorCode> {
    let len = buffer.len();
    for_each_piece(mem, root, address, len, false, |_, _, _, _| {})?;
    for_each_piece(mem, root, address, len, false, |frame, offset, done, chunk| {
        buffer[done..done + chunk].copy_from_slice(&mem.page(frame)[offset..offset + chunk]);
    })
}

/// Writes `bytes` to user address `address` of the space rooted at `root`;
/// nothing is written unless the whole range is writable.
pub fn copy_to_user(mem: &mut impl PhysMem, root: Frame, address: u64, bytes: &[u8]) -> Result<(), ErrorCode> {
    let mut pieces: heapless::Vec<(Frame, usize, usize, usize), 8> = heapless::Vec::new();
    let mut too_many = false;
    for_each_piece(mem, root, address, bytes.len(), true, |frame, offset, done, chunk| {
        too_many |= pieces.push((frame, offset, done, chunk)).is_err();
    })?;
    if too_many {
        return Err(ErrorCode::TooLarge);
    }
    for (frame, offset, done, chunk) in pieces {
        mem.page_mut(frame)[offset..offset + chunk].copy_from_slice(&bytes[done..done + chunk]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestMemory, TestTables};

    fn space() -> (TestMemory, Frame) {
        let mut mem = TestMemory::new(32);
        let mut tables = TestTables::new(&mut mem, 8);
        let root = tables.alloc_zeroed(&mut mem);
        let user_rw = flags::PRESENT | flags::USER | flags::WRITABLE;
        paging::map(&mut mem, &mut tables, root, 0x40_0000, Frame::containing(0x1000), user_rw).expect("maps");
        paging::map(&mut mem, &mut tables, root, 0x40_1000, Frame::containing(0x3000), user_rw).expect("maps");
        let user_ro = flags::PRESENT | flags::USER;
        paging::map(&mut mem, &mut tables, root, 0x40_2000, Frame::containing(0x4000), user_ro).expect("maps");
        paging::map(&mut mem, &mut tables, root, 0x40_3000, Frame::containing(0x5000), flags::PRESENT).expect("maps");
        (mem, root)
    }

    #[test]
    fn copies_across_a_page_boundary_to_separate_frames() {
        let (mut mem, root) = space();
        copy_to_user(&mut mem, root, 0x40_0ffe, b"abcd").expect("writable");
        assert_eq!(mem.read(0x1ffe, 2), b"ab");
        assert_eq!(mem.read(0x3000, 2), b"cd");
        let mut back = [0u8; 4];
        copy_from_user(&mem, root, 0x40_0ffe, &mut back).expect("readable");
        assert_eq!(&back, b"abcd");
    }

    #[test]
    fn bad_ranges_are_errors_and_write_nothing() {
        let (mut mem, root) = space();
        let mut buffer = [0u8; 8];
        for (address, len) in
            [(0u64, 8usize), (0x50_0000, 8), (0x40_3000, 8), (u64::MAX - 2, 8), (0xffff_8000_0000_0000, 8)]
        {
            assert_eq!(
                copy_from_user(&mem, root, address, &mut buffer[..len]),
                Err(ErrorCode::BadAddress),
                "{address:#x}"
            );
        }
        assert_eq!(copy_to_user(&mut mem, root, 0x40_1ffc, b"12345678"), Err(ErrorCode::BadAddress));
        assert_eq!(mem.read(0x3ffc, 4), [0; 4], "the writable part was not written");
        let mut readable = [0u8; 4];
        assert_eq!(copy_from_user(&mem, root, 0x40_2000, &mut readable), Ok(()));
    }

    #[test]
    fn device_leaves_and_frames_outside_memory_are_bad_addresses() {
        let (mut mem, root) = space();
        // Both pages share the level-1 table `space` made: no new table.
        let mut tables = TestTables::new(&mut mem, 0);
        let user = flags::PRESENT | flags::USER | flags::WRITABLE;
        let beyond = Frame::containing(0x100_0000);
        paging::map(&mut mem, &mut tables, root, 0x40_4000, beyond, user).expect("maps");
        let device = user | flags::DEVICE;
        paging::map(&mut mem, &mut tables, root, 0x40_5000, Frame::containing(0x6000), device).expect("maps");
        let mut buffer = [0u8; 8];
        for address in [0x40_4000, 0x40_5000, 0x40_3ffc] {
            assert_eq!(copy_from_user(&mem, root, address, &mut buffer), Err(ErrorCode::BadAddress), "{address:#x}");
            assert_eq!(copy_to_user(&mut mem, root, address, b"12345678"), Err(ErrorCode::BadAddress));
        }
        assert_eq!(mem.read(0x6000, 8), [0; 8], "the device frame was not written");
    }
}
