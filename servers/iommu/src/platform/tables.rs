//! Table memory: pinned frames of the server's own quota, carved into 4 KiB pages.
//!
//! Frames are allocated a chunk at a time, mapped write-back cacheable at
//! consecutive addresses and pinned so their physical addresses stay put
//! while tables point at them. A bitmap per chunk tracks its pages. Every
//! page comes out zeroed and written back, so a unit that does not snoop
//! sees the zeroes too.

use core::cell::RefCell;

use heapless::Vec;
use iommu_server::memory::{ENTRIES_PER_PAGE, PAGE_SIZE, TablePage, TablePages};
use userlib::cap::{Cap, Control, Frame, SlotPool, own};
use userlib::mmio::Mapping;
use userlib::objects;

/// Pages per chunk (one bit each in a `u64`).
const CHUNK_PAGES: u64 = 64;
/// Most chunks: 2048 table pages, 8 MiB of tables.
const MAX_CHUNKS: usize = 32;
/// Bytes per entry.
const ENTRY: u64 = 8;

/// One pinned frame of table pages.
struct Chunk {
    mapping: Mapping<Frame>,
    physical: u64,
    /// Bit `i` set: page `i` is free.
    free: u64,
}

impl Chunk {
    /// The page index of `page` in this chunk, if it is one of its pages.
    fn index_of(&self, page: TablePage) -> Option<u64> {
        let offset = page.address().checked_sub(self.physical)?;
        (offset < CHUNK_PAGES * PAGE_SIZE).then_some(offset / PAGE_SIZE)
    }
}

/// Table pages from frames the server allocates on demand.
pub struct FramePool<'a> {
    chunks: Vec<Chunk, MAX_CHUNKS>,
    slots: &'a RefCell<SlotPool>,
    control: Cap<Control>,
    /// Where the next chunk is mapped.
    next_virt: u64,
    in_use: usize,
}

impl<'a> FramePool<'a> {
    /// An empty pool whose chunks are mapped from `virt` upward.
    pub fn new(slots: &'a RefCell<SlotPool>, control: Cap<Control>, virt: u64) -> Self {
        Self { chunks: Vec::new(), slots, control, next_virt: virt, in_use: 0 }
    }

    /// Adds a chunk; `None` when the frame quota, the slots or the chunk
    /// limit run out (a logged, typed failure: the allocation fails).
    fn add_chunk(&mut self) -> Option<&mut Chunk> {
        if self.chunks.is_full() {
            defmt::warn!("table memory at its limit of {=usize} chunks", MAX_CHUNKS);
            return None;
        }
        let slot = self.slots.borrow_mut().take()?;
        let frame = match objects::alloc_frame(slot, CHUNK_PAGES) {
            Ok(frame) => frame,
            Err(code) => {
                defmt::warn!("no frame for table memory: {}", code);
                self.slots.borrow_mut().give(slot);
                return None;
            }
        };
        let pinned = Mapping::map(own::SPACE, frame, self.next_virt, true)
            .and_then(|mapping| self.control.pin(frame, false).map(|pin| (mapping, pin)));
        let (mapping, pin) = match pinned {
            Ok(pinned) => pinned,
            Err(code) => {
                defmt::warn!("table memory cannot be mapped and pinned: {}", code);
                // Deleting the only capability frees the frame and its mapping.
                let _ = frame.delete();
                self.slots.borrow_mut().give(slot);
                return None;
            }
        };
        self.next_virt += CHUNK_PAGES * PAGE_SIZE;
        let chunk = Chunk { mapping, physical: pin.physical, free: u64::MAX };
        self.chunks.push(chunk).ok()?;
        self.chunks.last_mut()
    }

    /// The chunk holding `page` and the byte offset of entry `index`.
    fn locate(&self, page: TablePage, index: usize) -> Option<(&Chunk, u64)> {
        self.chunks.iter().find_map(|chunk| {
            let at = chunk.index_of(page)?;
            Some((chunk, at * PAGE_SIZE + index as u64 * ENTRY))
        })
    }
}

impl TablePages for FramePool<'_> {
    fn allocate(&mut self) -> Option<TablePage> {
        let chunk = match self.chunks.iter().position(|chunk| chunk.free != 0) {
            Some(at) => &mut self.chunks[at],
            None => self.add_chunk()?,
        };
        let index = u64::from(chunk.free.trailing_zeros());
        chunk.free &= !(1 << index);
        let offset = index * PAGE_SIZE;
        for entry in 0..ENTRIES_PER_PAGE as u64 {
            chunk.mapping.write64(offset + entry * ENTRY, 0)?;
        }
        chunk.mapping.write_back(offset, PAGE_SIZE)?;
        let page = TablePage::new(chunk.physical + offset);
        self.in_use += 1;
        page
    }

    fn release(&mut self, page: TablePage) {
        let found = self.chunks.iter_mut().find_map(|chunk| {
            let index = chunk.index_of(page)?;
            Some((chunk, index))
        });
        if let Some((chunk, index)) = found
            && chunk.free & 1 << index == 0
        {
            chunk.free |= 1 << index;
            self.in_use -= 1;
        }
    }

    fn read(&self, page: TablePage, index: usize) -> u64 {
        self.locate(page, index).and_then(|(chunk, at)| chunk.mapping.read64(at)).unwrap_or(0)
    }

    fn write(&mut self, page: TablePage, index: usize, value: u64) {
        if let Some((chunk, at)) = self.locate(page, index) {
            let _ = chunk.mapping.write64(at, value);
        }
    }

    fn flush(&mut self, page: TablePage, first: usize, count: usize) {
        if let Some((chunk, at)) = self.locate(page, first) {
            let _ = chunk.mapping.write_back(at, count as u64 * ENTRY);
        }
    }

    fn in_use(&self) -> usize {
        self.in_use
    }

    fn spare(&self) -> usize {
        self.chunks.iter().map(|chunk| chunk.free.count_ones() as usize).sum()
    }

    fn grow(&mut self) -> bool {
        self.add_chunk().is_some()
    }
}
