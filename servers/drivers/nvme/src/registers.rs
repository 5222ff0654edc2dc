//! The controller registers in BAR0: offsets, and their fields decoded.

use crate::Error;

/// Controller Capabilities (64 bits).
pub const CAP: u64 = 0x00;
/// Version (32 bits).
pub const VS: u64 = 0x08;
/// Controller Configuration (32 bits).
pub const CC: u64 = 0x14;
/// Controller Status (32 bits).
pub const CSTS: u64 = 0x1c;
/// Admin Queue Attributes (32 bits).
pub const AQA: u64 = 0x24;
/// Admin Submission Queue base address (64 bits).
pub const ASQ: u64 = 0x28;
/// Admin Completion Queue base address (64 bits).
pub const ACQ: u64 = 0x30;
/// Where the doorbells start.
pub const DOORBELLS: u64 = 0x1000;

/// The unit of CAP.TO: 500 milliseconds.
const TIMEOUT_UNIT_MICROS: u64 = 500_000;

/// CAP, decoded: what the controller supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Largest queue size, in entries (MQES is zero-based; this is not).
    pub max_queue_entries: u32,
    /// Queues must be physically contiguous (CQR).
    pub contiguous_queues_required: bool,
    /// How long CSTS.RDY may take to follow CC.EN, in microseconds (TO).
    pub ready_timeout_micros: u64,
    /// Doorbell stride: doorbells are `4 << stride` bytes apart (DSTRD).
    pub doorbell_stride: u8,
    /// Command sets supported (CSS), bit 0 the NVM command set.
    pub command_sets: u8,
    /// Smallest memory page size, as a power of two (12 + MPSMIN).
    pub min_page_shift: u8,
    /// Largest memory page size, as a power of two (12 + MPSMAX).
    pub max_page_shift: u8,
}

impl Capabilities {
    /// Decodes the CAP register.
    pub fn decode(cap: u64) -> Self {
        let field = |shift: u32, bits: u32| (cap >> shift) & ((1 << bits) - 1);
        Self {
            max_queue_entries: field(0, 16) as u32 + 1,
            contiguous_queues_required: field(16, 1) != 0,
            ready_timeout_micros: field(24, 8) * TIMEOUT_UNIT_MICROS,
            doorbell_stride: field(32, 4) as u8,
            command_sets: field(37, 8) as u8,
            min_page_shift: 12 + field(48, 4) as u8,
            max_page_shift: 12 + field(52, 4) as u8,
        }
    }

    /// Checks that this controller can run with pages of `1 << page_shift`
    /// bytes and the NVM command set.
    pub fn check(&self, page_shift: u8) -> Result<(), Error> {
        if self.command_sets & 1 == 0 {
            return Err(Error::NvmCommandSetUnsupported);
        }
        if page_shift < self.min_page_shift || page_shift > self.max_page_shift {
            return Err(Error::PageSizeUnsupported);
        }
        Ok(())
    }

    /// The offset in BAR0 of queue `queue`'s submission tail doorbell.
    pub fn submission_doorbell(&self, queue: u16) -> u64 {
        DOORBELLS + (2 * u64::from(queue)) * (4 << self.doorbell_stride)
    }

    /// The offset in BAR0 of queue `queue`'s completion head doorbell.
    pub fn completion_doorbell(&self, queue: u16) -> u64 {
        DOORBELLS + (2 * u64::from(queue) + 1) * (4 << self.doorbell_stride)
    }

    /// Checks a queue size against MQES: at least two entries (one always
    /// stays empty), at most what the controller allows.
    pub fn check_queue_entries(&self, entries: u16) -> Result<(), Error> {
        if entries < 2 || u32::from(entries) > self.max_queue_entries {
            return Err(Error::QueueSize);
        }
        Ok(())
    }
}

/// CC.EN: the controller processes commands.
const CC_ENABLE: u32 = 1;
/// CC.IOSQES and CC.IOCQES: 64-byte submission and 16-byte completion entries.
const CC_ENTRY_SIZES: u32 = (6 << 16) | (4 << 20);

/// The CC value that enables the controller with the NVM command set,
/// round-robin arbitration and pages of `1 << page_shift` bytes.
pub fn enabled_configuration(page_shift: u8) -> u32 {
    CC_ENTRY_SIZES | (u32::from(page_shift.saturating_sub(12)) << 7) | CC_ENABLE
}

/// The AQA value for admin queues of `entries` entries each.
pub fn admin_queue_attributes(entries: u16) -> u32 {
    let zero_based = u32::from(entries.saturating_sub(1)) & 0xfff;
    (zero_based << 16) | zero_based
}

/// CSTS, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControllerStatus {
    /// The controller is ready (RDY).
    pub ready: bool,
    /// The controller hit a fatal error (CFS).
    pub fatal: bool,
}

impl ControllerStatus {
    /// Decodes the CSTS register. A controller that is gone reads all
    /// ones, which decodes as fatal.
    pub fn decode(csts: u32) -> Self {
        Self { ready: csts & 1 != 0, fatal: csts & 2 != 0 }
    }

    /// Whether the controller has reached the state `ready`; a fatal status
    /// is an error whatever was waited for.
    pub fn reached(self, ready: bool) -> Result<bool, Error> {
        if self.fatal {
            return Err(Error::ControllerFatal);
        }
        Ok(self.ready == ready)
    }
}

/// The version register, as (major, minor, tertiary).
pub fn version(vs: u32) -> (u16, u8, u8) {
    ((vs >> 16) as u16, (vs >> 8) as u8, vs as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CAP value built field by field, as the specification lays it out.
    fn cap(mqes: u64, cqr: u64, to: u64, dstrd: u64, css: u64, mpsmin: u64, mpsmax: u64) -> u64 {
        mqes | (cqr << 16) | (to << 24) | (dstrd << 32) | (css << 37) | (mpsmin << 48) | (mpsmax << 52)
    }

    #[test]
    fn capabilities_decode_each_field() {
        let decoded = Capabilities::decode(cap(0x7ff, 1, 0xf, 2, 0x41, 0, 4));
        assert_eq!(decoded.max_queue_entries, 0x800);
        assert!(decoded.contiguous_queues_required);
        assert_eq!(decoded.ready_timeout_micros, 15 * 500_000);
        assert_eq!(decoded.doorbell_stride, 2);
        assert_eq!(decoded.command_sets, 0x41);
        assert_eq!(decoded.min_page_shift, 12);
        assert_eq!(decoded.max_page_shift, 16);
    }

    #[test]
    fn doorbells_follow_the_stride() {
        let dense = Capabilities::decode(cap(63, 1, 1, 0, 1, 0, 0));
        assert_eq!(dense.submission_doorbell(0), 0x1000);
        assert_eq!(dense.completion_doorbell(0), 0x1004);
        assert_eq!(dense.submission_doorbell(1), 0x1008);
        assert_eq!(dense.completion_doorbell(1), 0x100c);
        let sparse = Capabilities::decode(cap(63, 1, 1, 2, 1, 0, 0));
        assert_eq!(sparse.completion_doorbell(0), 0x1010);
        assert_eq!(sparse.submission_doorbell(1), 0x1020);
    }

    #[test]
    fn a_controller_without_nvm_or_our_page_size_is_refused() {
        assert_eq!(Capabilities::decode(cap(63, 1, 1, 0, 0x40, 0, 0)).check(12), Err(Error::NvmCommandSetUnsupported));
        assert_eq!(Capabilities::decode(cap(63, 1, 1, 0, 1, 1, 2)).check(12), Err(Error::PageSizeUnsupported));
        assert_eq!(Capabilities::decode(cap(63, 1, 1, 0, 1, 0, 2)).check(12), Ok(()));
    }

    #[test]
    fn queue_sizes_are_bounded_by_mqes() {
        let caps = Capabilities::decode(cap(63, 1, 1, 0, 1, 0, 0));
        assert_eq!(caps.check_queue_entries(64), Ok(()));
        assert_eq!(caps.check_queue_entries(65), Err(Error::QueueSize));
        assert_eq!(caps.check_queue_entries(1), Err(Error::QueueSize));
    }

    #[test]
    fn configuration_and_admin_attributes_encode() {
        assert_eq!(enabled_configuration(12), 0x0046_0001);
        assert_eq!(enabled_configuration(13), 0x0046_0081);
        assert_eq!(admin_queue_attributes(32), 0x001f_001f);
    }

    #[test]
    fn status_waits_end_on_fatal() {
        assert_eq!(ControllerStatus::decode(1).reached(true), Ok(true));
        assert_eq!(ControllerStatus::decode(0).reached(true), Ok(false));
        assert_eq!(ControllerStatus::decode(0).reached(false), Ok(true));
        assert_eq!(ControllerStatus::decode(0xffff_ffff).reached(false), Err(Error::ControllerFatal));
    }

    #[test]
    fn version_splits() {
        assert_eq!(version(0x0001_0400), (1, 4, 0));
    }
}
