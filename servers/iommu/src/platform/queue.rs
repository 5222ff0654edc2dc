//! The invalidation queue and its status word, in one pinned two-page frame.

use capabilities::ErrorCode;
use iommu_server::invalidation::Descriptor;
use iommu_server::memory::{PAGE_SIZE, TablePage};
use iommu_server::unit::{QueueConfig, QueueMemory};
use userlib::cap::{Control, Frame, SlotPool, own};
use userlib::mmio::Mapping;
use userlib::{cap::Cap, objects};

/// Bytes per 128-bit descriptor.
const DESCRIPTOR: u64 = 16;

/// Page 0 holds the 256 descriptors of a size-order-0 queue; the status
/// word the unit writes on wait descriptors is at the start of page 1.
pub struct QueuePages {
    mapping: Mapping<Frame>,
}

impl QueuePages {
    /// Allocates, maps at `virt` and pins the queue's frame; returns it with
    /// where the unit must find it.
    pub fn create(control: Cap<Control>, pool: &mut SlotPool, virt: u64) -> Result<(Self, QueueConfig), ErrorCode> {
        let slot = pool.take().ok_or(ErrorCode::QuotaExceeded)?;
        let frame = objects::alloc_frame(slot, 2)?;
        let mapping = Mapping::map(own::SPACE, frame, virt, true)?;
        // The pin lasts as long as the server: the unit reads the queue
        // until the machine stops.
        // The unit writes the status word.
        let pin = control.pin(frame, true)?;
        let base = TablePage::new(pin.physical).ok_or(ErrorCode::InvalidArgument)?;
        let config = QueueConfig { base, size_order: 0, status_address: pin.physical + PAGE_SIZE };
        Ok((Self { mapping }, config))
    }
}

// Queue descriptors and the status word are always snooped by the unit
// (ECAP.C covers only translation structures), so no cache write-back.
impl QueueMemory for QueuePages {
    fn write_descriptor(&mut self, slot: u32, descriptor: Descriptor) {
        let at = u64::from(slot) * DESCRIPTOR;
        let _ = self.mapping.write64(at, descriptor.low);
        let _ = self.mapping.write64(at + 8, descriptor.high);
    }

    fn read_status(&mut self) -> u32 {
        self.mapping.read32(PAGE_SIZE).unwrap_or(0)
    }

    fn write_status(&mut self, value: u32) {
        let _ = self.mapping.write32(PAGE_SIZE, value);
    }
}
