//! Host stand-ins for the machine: array-backed physical memory and a
//! page-table frame pool, for the unit tests of the logic.

use crate::paging::TableFrames;
use crate::phys::{Frame, PAGE_SIZE, PhysMem};

/// Physical memory `[0, pages * PAGE_SIZE)` held in a vector.
pub struct TestMemory {
    pages: Vec<[u8; PAGE_SIZE]>,
}

impl TestMemory {
    /// Zeroed memory of `pages` frames.
    pub fn new(pages: usize) -> Self {
        Self { pages: vec![[0; PAGE_SIZE]; pages] }
    }

    /// Frames this memory holds.
    pub fn frames(&self) -> usize {
        self.pages.len()
    }

    /// Copies `bytes` to physical address `at`.
    pub fn write(&mut self, at: u64, bytes: &[u8]) {
        for (offset, byte) in bytes.iter().enumerate() {
            let address = at as usize + offset;
            self.pages[address / PAGE_SIZE][address % PAGE_SIZE] = *byte;
        }
    }

    /// Reads `len` bytes from physical address `at`.
    pub fn read(&self, at: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|offset| {
                let address = at as usize + offset;
                self.pages[address / PAGE_SIZE][address % PAGE_SIZE]
            })
            .collect()
    }
}

impl PhysMem for TestMemory {
    fn manages(&self, frame: Frame) -> bool {
        frame.number() < self.pages.len() as u64
    }

    fn page(&self, frame: Frame) -> &[u8; PAGE_SIZE] {
        &self.pages[frame.number() as usize]
    }

    fn page_mut(&mut self, frame: Frame) -> &mut [u8; PAGE_SIZE] {
        &mut self.pages[frame.number() as usize]
    }
}

/// A pool of page-table frames taken from the top of a [`TestMemory`].
pub struct TestTables {
    free: Vec<Frame>,
    capacity: usize,
}

impl TestTables {
    /// The top `count` frames of `mem` as the pool.
    pub fn new(mem: &mut TestMemory, count: usize) -> Self {
        let top = mem.frames() as u64;
        let free = (top - count as u64..top).rev().map(|n| Frame::containing(n * PAGE_SIZE as u64)).collect();
        Self { free, capacity: count }
    }

    /// A zeroed frame from the pool.
    pub fn alloc_zeroed(&mut self, mem: &mut TestMemory) -> Frame {
        let frame = self.alloc_table().expect("test pool has a frame");
        mem.page_mut(frame).fill(0);
        frame
    }

    /// Frames currently handed out.
    pub fn used(&self) -> usize {
        self.capacity - self.free.len()
    }
}

impl TableFrames for TestTables {
    fn alloc_table(&mut self) -> Option<Frame> {
        self.free.pop()
    }

    fn free_table(&mut self, frame: Frame) {
        assert!(!self.free.contains(&frame), "table frame {frame:?} freed twice");
        self.free.push(frame);
    }
}
