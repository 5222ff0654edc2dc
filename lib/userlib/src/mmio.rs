//! Mapped memory: a frame or device range with bounds-checked volatile access.
//!
//! A [`Mapping`] is the one place a task touches memory the kernel mapped
//! for a capability, so drivers and servers need no `unsafe` of their own.
//! Every access is checked against the mapping's length and naturally
//! aligned; a bad offset is `None`, never a stray access.

use capabilities::ErrorCode;
use capabilities::abi::{PAGE_SIZE, rights};

use crate::cap::{AddressSpace, Cap};
use crate::objects::Mappable;

/// Bytes per cache line on x86-64 (CPUID's CLFLUSH line size on every
/// processor that has one).
const CACHE_LINE: u64 = 64;

/// The integers a mapping is read and written in: every bit pattern is a
/// value, and each is aligned to its size.
trait Word: Copy {}

impl Word for u8 {}
impl Word for u16 {}
impl Word for u32 {}
impl Word for u64 {}

/// A memory capability of kind `K` mapped at a fixed address of this task.
#[derive(Debug)]
pub struct Mapping<K: Mappable> {
    base: u64,
    len: u64,
    writable: bool,
    memory: Cap<K>,
}

impl<K: Mappable> Mapping<K> {
    /// Maps all of `memory` into `space` at `virt` (page-aligned, at or above
    /// `layout::USER_MAP_BASE`), writable if `writable`.
    pub fn map(space: Cap<AddressSpace>, memory: Cap<K>, virt: u64, writable: bool) -> Result<Self, ErrorCode> {
        let pages = memory.info()?.extent;
        let len = pages.checked_mul(PAGE_SIZE).ok_or(ErrorCode::InvalidArgument)?;
        space.map(memory, virt, if writable { rights::WRITE } else { 0 })?;
        Ok(Self { base: virt, len, writable, memory })
    }

    /// Bytes mapped.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing is mapped (a zero-page capability cannot be mapped,
    /// so this is always false for a mapping that exists).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of `width` bytes at `offset`, if inside and aligned.
    fn address(&self, offset: u64, width: u64) -> Option<u64> {
        let end = offset.checked_add(width)?;
        (offset.is_multiple_of(width) && end <= self.len).then(|| self.base + offset)
    }

    /// Reads the naturally aligned `W` at `offset`.
    fn read<W: Word>(&self, offset: u64) -> Option<W> {
        let address = self.address(offset, size_of::<W>() as u64)?;
        // SAFETY: `address` lies inside the range the kernel mapped for
        // this mapping and is a multiple of the word's size (both checked
        // above), which for these integers is their alignment. The kernel
        // only maps at or above `USER_MAP_BASE`, where Rust places
        // nothing, so no Rust object is aliased; the access is volatile,
        // as device registers need. If the capability was revoked
        // meanwhile the page is gone and the access faults, which ends
        // this task and touches nothing else.
        Some(unsafe { (address as *const W).read_volatile() })
    }

    /// Writes the naturally aligned `value` at `offset`; `None` if outside,
    /// or mapped read-only.
    fn write<W: Word>(&self, offset: u64, value: W) -> Option<()> {
        let address = self.address(offset, size_of::<W>() as u64).filter(|_| self.writable)?;
        // SAFETY: as in `read`, and the range is mapped writable.
        unsafe { (address as *mut W).write_volatile(value) };
        Some(())
    }

    /// Reads the byte at `offset`.
    pub fn read8(&self, offset: u64) -> Option<u8> {
        self.read(offset)
    }

    /// Reads the naturally aligned 16-bit value at `offset`.
    pub fn read16(&self, offset: u64) -> Option<u16> {
        self.read(offset)
    }

    /// Reads the naturally aligned 32-bit value at `offset`.
    pub fn read32(&self, offset: u64) -> Option<u32> {
        self.read(offset)
    }

    /// Reads the naturally aligned 64-bit value at `offset`.
    pub fn read64(&self, offset: u64) -> Option<u64> {
        self.read(offset)
    }

    /// Writes the byte at `offset`; `None` if outside, or mapped read-only.
    pub fn write8(&self, offset: u64, value: u8) -> Option<()> {
        self.write(offset, value)
    }

    /// Writes the naturally aligned 16-bit value at `offset`.
    pub fn write16(&self, offset: u64, value: u16) -> Option<()> {
        self.write(offset, value)
    }

    /// Writes the naturally aligned 32-bit value at `offset`.
    pub fn write32(&self, offset: u64, value: u32) -> Option<()> {
        self.write(offset, value)
    }

    /// Writes the naturally aligned 64-bit value at `offset`.
    pub fn write64(&self, offset: u64, value: u64) -> Option<()> {
        self.write(offset, value)
    }

    /// Copies `buffer.len()` bytes from `offset` into `buffer`, byte by
    /// byte; `None` (and nothing copied) if the range is not all mapped.
    pub fn copy_out(&self, offset: u64, buffer: &mut [u8]) -> Option<()> {
        let end = offset.checked_add(buffer.len() as u64)?;
        if end > self.len {
            return None;
        }
        for (at, byte) in (offset..end).zip(buffer.iter_mut()) {
            *byte = self.read8(at)?;
        }
        Some(())
    }

    /// Writes the CPU cache lines holding `len` bytes at `offset` back to
    /// memory, for a device that reads it without snooping the caches (a
    /// VT-d unit whose ECAP.C is 0 walking its tables); `None` if the range
    /// is not all mapped.
    pub fn write_back(&self, offset: u64, len: u64) -> Option<()> {
        let end = offset.checked_add(len).filter(|&end| end <= self.len)?;
        let mut line = offset & !(CACHE_LINE - 1);
        while line < end {
            // SAFETY: the line lies inside this mapping (checked above), so
            // `clflush` touches only memory the kernel mapped for it; the
            // instruction is allowed at CPL 3 and changes no memory contents.
            unsafe { core::arch::x86_64::_mm_clflush((self.base + line) as *const u8) };
            line += CACHE_LINE;
        }
        // SAFETY: `mfence` only orders memory accesses: the flushes complete
        // before the caller tells the device to look.
        unsafe { core::arch::x86_64::_mm_mfence() };
        Some(())
    }

    /// Removes the mapping (the capability stays).
    pub fn unmap(self) -> Result<(), ErrorCode> {
        self.memory.unmap()
    }

    /// Removes the mapping and hands back the capability it was made
    /// with, for the caller to delete or map again.
    pub fn into_capability(self) -> Result<Cap<K>, ErrorCode> {
        let memory = self.memory;
        self.unmap().map(|()| memory)
    }
}
