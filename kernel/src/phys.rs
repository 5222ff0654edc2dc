//! Physical memory as the kernel logic sees it: pages addressed by frame.

/// Bytes in a page frame.
pub const PAGE_SIZE: usize = 4096;

/// A page-aligned physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Frame(u64);

impl Frame {
    /// The frame that holds `address`.
    pub const fn containing(address: u64) -> Self {
        Frame(address & !(PAGE_SIZE as u64 - 1))
    }

    /// The frame starting at `address`, or `None` if it is not page-aligned.
    pub const fn at(address: u64) -> Option<Self> {
        if address.is_multiple_of(PAGE_SIZE as u64) { Some(Frame(address)) } else { None }
    }

    /// The frame's physical address.
    pub const fn address(self) -> u64 {
        self.0
    }

    /// The frame's number (address divided by the page size).
    pub const fn number(self) -> u64 {
        self.0 / PAGE_SIZE as u64
    }

    /// The frame `pages` pages above this one.
    pub const fn add(self, pages: u64) -> Self {
        Frame(self.0 + pages * PAGE_SIZE as u64)
    }
}

/// Access to the contents of physical page frames.
///
/// The bare-metal kernel implements this through its direct map of RAM; host
/// tests implement it with an array. Implementations panic on a frame that is
/// not RAM they manage: the logic only passes frames it got from the frame
/// allocator or the boot image, so that would be a kernel bug.
pub trait PhysMem {
    /// Whether `frame` is RAM this memory manages, which [`Self::page`]
    /// may be asked for. The logic asks before it follows a mapping a task
    /// made (user copies), where the frame's provenance is not its own.
    /// Implementations whose memory has holes must say where they are.
    fn manages(&self, frame: Frame) -> bool {
        let _ = frame;
        true
    }

    /// The page at `frame`, for reading.
    fn page(&self, frame: Frame) -> &[u8; PAGE_SIZE];

    /// The page at `frame`, for writing.
    fn page_mut(&mut self, frame: Frame) -> &mut [u8; PAGE_SIZE];

    /// Reads the little-endian word at byte `offset` (a multiple of 8) of `frame`.
    fn read_u64(&self, frame: Frame, offset: usize) -> u64 {
        let page = self.page(frame);
        let mut word = [0u8; 8];
        word.copy_from_slice(&page[offset..offset + 8]);
        u64::from_le_bytes(word)
    }

    /// Writes the little-endian word at byte `offset` (a multiple of 8) of `frame`.
    fn write_u64(&mut self, frame: Frame, offset: usize, value: u64) {
        self.page_mut(frame)[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
    }

    /// Reads the little-endian `u32` at byte `offset` (a multiple of 4) of `frame`.
    fn read_u32(&self, frame: Frame, offset: usize) -> u32 {
        let page = self.page(frame);
        u32::from_le_bytes([page[offset], page[offset + 1], page[offset + 2], page[offset + 3]])
    }

    /// Writes the little-endian `u32` at byte `offset` (a multiple of 4) of `frame`.
    fn write_u32(&mut self, frame: Frame, offset: usize, value: u32) {
        self.page_mut(frame)[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// Copies `len` bytes from `src` to `dst` (byte offsets within pages;
    /// neither range may cross its page).
    fn copy(&mut self, src: Frame, src_offset: usize, dst: Frame, dst_offset: usize, len: usize) {
        let mut buffer = [0u8; 256];
        let mut done = 0;
        while done < len {
            let chunk = (len - done).min(buffer.len());
            buffer[..chunk].copy_from_slice(&self.page(src)[src_offset + done..src_offset + done + chunk]);
            self.page_mut(dst)[dst_offset + done..dst_offset + done + chunk].copy_from_slice(&buffer[..chunk]);
            done += chunk;
        }
    }
}
