//! The physical frame allocator: one bit per 4 KiB frame of managed RAM.
//!
//! # Invariants
//!
//! * A bit is set exactly when its frame is free.
//! * `free` equals the number of set bits.
//!
//! Frames start out used; the boot code marks the usable RAM from the memory
//! map free, minus the kernel image and the boot image.

use crate::phys::{Frame, PAGE_SIZE};

/// Why a frame could not be returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The frame lies outside the managed range.
    OutOfRange,
    /// The frame was already free (a double free).
    AlreadyFree,
}

/// Bitmap allocator over `WORDS * 64` frames starting at physical address 0.
pub struct FrameAllocator<const WORDS: usize> {
    bits: [u64; WORDS],
    free: usize,
    hint: usize,
    /// One past the highest frame ever made free: searches stop there.
    span: usize,
}

impl<const WORDS: usize> Default for FrameAllocator<WORDS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const WORDS: usize> FrameAllocator<WORDS> {
    /// Frames this allocator can manage.
    pub const CAPACITY: usize = WORDS * 64;

    /// An allocator with every frame in use.
    pub const fn new() -> Self {
        Self { bits: [0; WORDS], free: 0, hint: 0, span: 0 }
    }

    /// Highest physical address (exclusive) the allocator can manage.
    pub const fn limit() -> u64 {
        (WORDS * 64 * PAGE_SIZE) as u64
    }

    /// Marks the whole frames inside `[start, end)` free; the part beyond
    /// [`Self::limit`] is ignored. Returns how many frames became free.
    pub fn add_free(&mut self, start: u64, end: u64) -> usize {
        let first = start.div_ceil(PAGE_SIZE as u64);
        let last = (end.min(Self::limit()) / PAGE_SIZE as u64).max(first);
        let mut added = 0;
        for frame in first..last {
            if self.set(frame as usize, true) {
                added += 1;
            }
        }
        added
    }

    /// Marks every frame touching `[start, end)` used. Returns how many free
    /// frames it took.
    pub fn reserve(&mut self, start: u64, end: u64) -> usize {
        let first = start / PAGE_SIZE as u64;
        let last = end.min(Self::limit()).div_ceil(PAGE_SIZE as u64);
        let mut taken = 0;
        for frame in first..last.max(first) {
            if self.set(frame as usize, false) {
                taken += 1;
            }
        }
        taken
    }

    /// Frames currently free.
    pub fn free_frames(&self) -> usize {
        self.free
    }

    /// Takes one free frame.
    pub fn alloc(&mut self) -> Option<Frame> {
        for offset in 0..WORDS {
            let word = (self.hint + offset) % WORDS;
            let bits = self.bits[word];
            if bits != 0 {
                let index = word * 64 + bits.trailing_zeros() as usize;
                self.set(index, false);
                self.hint = word;
                return Some(Frame::containing((index * PAGE_SIZE) as u64));
            }
        }
        None
    }

    /// Takes `pages` contiguous free frames whose first frame number is a
    /// multiple of `align_pages` (a power of two), as low as they can be.
    pub fn alloc_contiguous(&mut self, pages: usize, align_pages: usize) -> Option<Frame> {
        if pages == 0 || !align_pages.is_power_of_two() || pages > self.free {
            return None;
        }
        let mut start = 0;
        while start + pages <= self.span {
            match (start..start + pages).rev().find(|&index| !self.is_free(index)) {
                None => return Some(self.take_run(start, pages)),
                // Skip past the used frame, keeping the alignment.
                Some(used) => start = (used + 1).next_multiple_of(align_pages),
            }
        }
        None
    }

    /// [`Self::alloc_contiguous`], as high as they can be: tasks' memory
    /// comes from the top, as Linux fills its high zones before the ones
    /// below 4 GiB, which are kept for the kernel's own needs.
    pub fn alloc_contiguous_high(&mut self, pages: usize, align_pages: usize) -> Option<Frame> {
        if pages == 0 || !align_pages.is_power_of_two() || pages > self.free || pages > self.span {
            return None;
        }
        let mut start = (self.span - pages) / align_pages * align_pages;
        loop {
            match (start..start + pages).find(|&index| !self.is_free(index)) {
                None => return Some(self.take_run(start, pages)),
                // End the next try below the used frame, keeping the alignment.
                Some(used) if used >= pages => start = (used - pages) / align_pages * align_pages,
                Some(_) => return None,
            }
        }
    }

    fn take_run(&mut self, start: usize, pages: usize) -> Frame {
        for index in start..start + pages {
            self.set(index, false);
        }
        Frame::containing((start * PAGE_SIZE) as u64)
    }

    /// Returns one frame.
    pub fn free(&mut self, frame: Frame) -> Result<(), FreeError> {
        self.free_contiguous(frame, 1)
    }

    /// Returns `pages` frames starting at `frame`; nothing changes on error.
    pub fn free_contiguous(&mut self, frame: Frame, pages: usize) -> Result<(), FreeError> {
        let first = frame.number() as usize;
        let end = first.checked_add(pages).ok_or(FreeError::OutOfRange)?;
        if end > Self::CAPACITY {
            return Err(FreeError::OutOfRange);
        }
        if (first..end).any(|index| self.is_free(index)) {
            return Err(FreeError::AlreadyFree);
        }
        for index in first..end {
            self.set(index, true);
        }
        Ok(())
    }

    fn is_free(&self, index: usize) -> bool {
        self.bits[index / 64] & (1 << (index % 64)) != 0
    }

    /// Sets a frame's state; returns whether it changed.
    fn set(&mut self, index: usize, free: bool) -> bool {
        if index >= Self::CAPACITY || self.is_free(index) == free {
            return false;
        }
        self.bits[index / 64] ^= 1 << (index % 64);
        if free {
            self.free += 1;
            self.span = self.span.max(index + 1);
        } else {
            self.free -= 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = PAGE_SIZE as u64;

    #[test]
    fn hands_out_only_free_frames_and_counts_them() {
        let mut frames = FrameAllocator::<4>::new();
        assert_eq!(frames.alloc(), None);
        assert_eq!(frames.add_free(10 * PAGE, 20 * PAGE), 10);
        assert_eq!(frames.reserve(12 * PAGE, 13 * PAGE + 1), 2);
        let mut got = Vec::new();
        while let Some(frame) = frames.alloc() {
            got.push(frame.number());
        }
        assert_eq!(got, [10, 11, 14, 15, 16, 17, 18, 19]);
        assert_eq!(frames.free_frames(), 0);
    }

    #[test]
    fn partial_pages_at_the_edges_are_not_freed() {
        let mut frames = FrameAllocator::<4>::new();
        assert_eq!(frames.add_free(PAGE + 1, 4 * PAGE - 1), 1, "only frame 2 lies wholly inside");
        assert_eq!(frames.add_free(0, 1000 * PAGE), 256 - 1);
    }

    #[test]
    fn double_free_and_out_of_range_are_refused() {
        let mut frames = FrameAllocator::<1>::new();
        frames.add_free(0, 64 * PAGE);
        let frame = frames.alloc().expect("a frame is free");
        assert_eq!(frames.free(frame), Ok(()));
        assert_eq!(frames.free(frame), Err(FreeError::AlreadyFree));
        assert_eq!(frames.free(Frame::containing(64 * PAGE)), Err(FreeError::OutOfRange));
        assert_eq!(frames.free_contiguous(frame, usize::MAX), Err(FreeError::OutOfRange));
    }

    #[test]
    fn high_runs_come_from_the_top_and_respect_alignment_and_holes() {
        let mut frames = FrameAllocator::<4>::new();
        frames.add_free(PAGE, 200 * PAGE);
        frames.reserve(195 * PAGE, 196 * PAGE);
        let top = frames.alloc_contiguous_high(8, 8).expect("room below the hole");
        assert_eq!(top.number(), 184, "the highest aligned run below the reserved frame 195");
        let above = frames.alloc_contiguous_high(4, 1).expect("room above it");
        assert_eq!(above.number(), 196, "the top of what was ever freed, not of the capacity");
        assert_eq!(frames.alloc_contiguous_high(300, 1), None);
        frames.free_contiguous(top, 8).expect("run was allocated");
        assert_eq!(frames.alloc_contiguous_high(8, 8).map(Frame::number), Some(184));
        assert_eq!(frames.alloc_contiguous_high(190, 1), None, "no run that long is left");
    }

    #[test]
    fn contiguous_runs_respect_alignment_and_holes() {
        let mut frames = FrameAllocator::<4>::new();
        frames.add_free(PAGE, 256 * PAGE);
        frames.reserve(9 * PAGE, 10 * PAGE);
        let run = frames.alloc_contiguous(8, 8).expect("room for 8 aligned pages");
        assert_eq!(run.number(), 16);
        let small = frames.alloc_contiguous(7, 1).expect("room before the hole");
        assert_eq!(small.number(), 1);
        assert_eq!(frames.alloc_contiguous(300, 1), None);
        frames.free_contiguous(run, 8).expect("run was allocated");
        assert_eq!(frames.alloc_contiguous(8, 8).map(Frame::number), Some(16));
    }
}
