//! What can go wrong talking to an NVMe controller, as typed values.

/// A command's completion status: its status code type and status code
/// (NVMe base specification, Completion Queue Entry, Status Field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Status {
    /// Status code type: 0 generic, 1 command specific, 2 media and data integrity.
    pub code_type: u8,
    /// Status code within its type.
    pub code: u8,
    /// Do not retry: the same command would fail again.
    pub do_not_retry: bool,
}

impl Status {
    /// Generic status code: the command completed successfully.
    pub const SUCCESS: u8 = 0x00;
    /// Generic status code: a field of the command is invalid.
    pub const INVALID_FIELD: u8 = 0x02;
    /// Generic status code: the LBA range goes past the namespace's end.
    pub const LBA_OUT_OF_RANGE: u8 = 0x80;

    /// Decodes the 15-bit status field (bits 31:17 of completion dword 3,
    /// shifted down to bit 0).
    pub fn from_field(field: u16) -> Self {
        Self { code: (field & 0xff) as u8, code_type: ((field >> 8) & 0x7) as u8, do_not_retry: field & (1 << 14) != 0 }
    }

    /// Whether the command succeeded.
    pub fn is_success(self) -> bool {
        self.code_type == 0 && self.code == Self::SUCCESS
    }

    /// Whether this is the generic "LBA out of range" status.
    pub fn is_lba_out_of_range(self) -> bool {
        self.code_type == 0 && self.code == Self::LBA_OUT_OF_RANGE
    }
}

/// Every way an NVMe operation fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The controller completed the command with an error status.
    Command(Status),
    /// The controller did not answer within the bound (in microseconds).
    Timeout {
        /// The bound that passed.
        micros: u64,
    },
    /// The controller reports a fatal status (CSTS.CFS): only a reset helps.
    ControllerFatal,
    /// The controller does not implement the NVM command set.
    NvmCommandSetUnsupported,
    /// The host's page size is outside the controller's MPSMIN..MPSMAX.
    PageSizeUnsupported,
    /// A queue has no free entry.
    QueueFull,
    /// A queue size is zero, one, or beyond what the controller allows.
    QueueSize,
    /// A buffer needs a PRP list, which this library does not build.
    PrpListUnsupported {
        /// The pages the buffer spans.
        pages: usize,
    },
    /// A buffer is empty, not dword aligned, or its pages do not cover it.
    BadBuffer,
    /// A completion names a command, queue or head that is not outstanding.
    UnexpectedCompletion,
    /// An access fell outside the queue's memory or the register window.
    OutOfBounds,
    /// Identify data is shorter than its structure or inconsistent.
    BadIdentify,
    /// Waiting for a completion's interrupt failed other than by timing out.
    InterruptWait,
    /// The I/O queues have not been created.
    NoQueue,
    /// A block range is empty or past the namespace's end (checked before
    /// anything reaches the device).
    BlockRange,
}
