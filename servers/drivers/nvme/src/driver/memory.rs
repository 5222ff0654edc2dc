//! The driver's DMA-mapped pages, carved into queues and buffers.

use nvme::Error;
use nvme::queue::QueueMemory;
use userlib::cap::Frame;
use userlib::mmio::Mapping;

/// One page-aligned region of the driver's DMA frame: where the host sees
/// it (an offset in the mapping) and where the device does (its IOVA).
pub struct Region<'a> {
    memory: &'a Mapping<Frame>,
    offset: u64,
    len: u64,
    /// The region's first byte as the device addresses it.
    pub iova: u64,
}

impl<'a> Region<'a> {
    /// `pages` pages from page `first` of `memory`, which the DMA API
    /// mapped at `iova`.
    pub fn new(memory: &'a Mapping<Frame>, iova: u64, first: u64, pages: u64) -> Self {
        let offset = first * crate::PAGE;
        Self { memory, offset, len: pages * crate::PAGE, iova: iova + offset }
    }

    /// The device addresses of the region's pages, for PRPs.
    pub fn pages(&self) -> [u64; 2] {
        [self.iova, self.iova + crate::PAGE]
    }

    /// Fills the region with zeroes (a completion queue must start with
    /// no entry carrying phase 1).
    pub fn zero(&mut self) -> Result<(), Error> {
        for at in (0..self.len).step_by(8) {
            self.memory.write64(self.offset + at, 0).ok_or(Error::OutOfBounds)?;
        }
        self.memory.write_back(self.offset, self.len).ok_or(Error::OutOfBounds)
    }

    fn range(&self, offset: usize, len: usize) -> Result<u64, Error> {
        let (offset, len) = (offset as u64, len as u64);
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(self.offset + offset),
            _ => Err(Error::OutOfBounds),
        }
    }
}

impl QueueMemory for Region<'_> {
    fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<(), Error> {
        let at = self.range(offset, bytes.len())?;
        for (index, &byte) in bytes.iter().enumerate() {
            self.memory.write8(at + index as u64, byte).ok_or(Error::OutOfBounds)?;
        }
        self.memory.write_back(at, bytes.len() as u64).ok_or(Error::OutOfBounds)
    }

    fn read(&self, offset: usize, bytes: &mut [u8]) -> Result<(), Error> {
        let at = self.range(offset, bytes.len())?;
        self.memory.copy_out(at, bytes).ok_or(Error::OutOfBounds)
    }
}
