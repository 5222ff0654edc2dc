//! Submission and completion queues: entry layouts, and the ring state.
//!
//! # Invariants
//!
//! A submission queue of `n` entries holds at most `n - 1` outstanding
//! commands (a full ring would look empty). A completion queue entry is
//! new when its phase tag equals the phase the host expects; the expected
//! phase starts at 1 and flips each time the head wraps.

use crate::Error;
use crate::error::Status;

/// Bytes in a submission queue entry.
pub const SUBMISSION_ENTRY_BYTES: usize = 64;
/// Bytes in a completion queue entry.
pub const COMPLETION_ENTRY_BYTES: usize = 16;

/// Memory a queue lives in, as the host sees it: the driver's DMA-mapped
/// pages, or a plain array in tests.
pub trait QueueMemory {
    /// Copies `bytes` into the memory at `offset` and makes them visible to
    /// the device.
    fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<(), Error>;
    /// Copies the memory at `offset` into `bytes`.
    fn read(&self, offset: usize, bytes: &mut [u8]) -> Result<(), Error>;
}

/// A submission queue entry, in host order; [`SubmissionEntry::encode`]
/// lays it out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubmissionEntry {
    /// The command's opcode.
    pub opcode: u8,
    /// The command identifier its completion will carry.
    pub command_id: u16,
    /// The namespace it acts on (0 for none).
    pub namespace: u32,
    /// The first PRP entry.
    pub prp1: u64,
    /// The second PRP entry (or PRP list pointer).
    pub prp2: u64,
    /// Command dwords 10 to 15.
    pub dwords: [u32; 6],
}

impl SubmissionEntry {
    /// The 64 bytes the controller reads: dword 0 opcode and command
    /// identifier (PRPs for data, no fusing), dword 1 the namespace, bytes
    /// 24..40 the PRPs, dwords 10 to 15 from byte 40.
    pub fn encode(&self) -> [u8; SUBMISSION_ENTRY_BYTES] {
        let mut bytes = [0; SUBMISSION_ENTRY_BYTES];
        let dword0 = u32::from(self.opcode) | (u32::from(self.command_id) << 16);
        bytes[0..4].copy_from_slice(&dword0.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.namespace.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.prp1.to_le_bytes());
        bytes[32..40].copy_from_slice(&self.prp2.to_le_bytes());
        for (index, dword) in self.dwords.iter().enumerate() {
            let at = 40 + 4 * index;
            bytes[at..at + 4].copy_from_slice(&dword.to_le_bytes());
        }
        bytes
    }

    /// Decodes what [`SubmissionEntry::encode`] lays out (the model
    /// controller in the tests reads commands with it).
    pub fn decode(bytes: &[u8; SUBMISSION_ENTRY_BYTES]) -> Self {
        let dword = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let qword = |at: usize| u64::from(dword(at)) | (u64::from(dword(at + 4)) << 32);
        Self {
            opcode: bytes[0],
            command_id: (dword(0) >> 16) as u16,
            namespace: dword(4),
            prp1: qword(24),
            prp2: qword(32),
            dwords: core::array::from_fn(|index| dword(40 + 4 * index)),
        }
    }
}

/// A completion queue entry, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletionEntry {
    /// Command specific result (dword 0).
    pub result: u32,
    /// How far the controller has consumed the submission queue.
    pub submission_head: u16,
    /// The submission queue the command came from.
    pub submission_queue: u16,
    /// The command identifier the submission carried.
    pub command_id: u16,
    /// The phase tag.
    pub phase: bool,
    /// The status.
    pub status: Status,
}

impl CompletionEntry {
    /// Decodes 16 bytes of completion queue memory.
    pub fn decode(bytes: &[u8; COMPLETION_ENTRY_BYTES]) -> Self {
        let dword = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let (dword2, dword3) = (dword(8), dword(12));
        Self {
            result: dword(0),
            submission_head: dword2 as u16,
            submission_queue: (dword2 >> 16) as u16,
            command_id: dword3 as u16,
            phase: dword3 & (1 << 16) != 0,
            status: Status::from_field((dword3 >> 17) as u16),
        }
    }

    /// Lays the entry out as the controller writes it (the model
    /// controller in the tests posts completions with it).
    pub fn encode(&self) -> [u8; COMPLETION_ENTRY_BYTES] {
        let status = u32::from(self.status.code)
            | (u32::from(self.status.code_type & 0x7) << 8)
            | (u32::from(self.status.do_not_retry) << 14);
        let dword2 = u32::from(self.submission_head) | (u32::from(self.submission_queue) << 16);
        let dword3 = u32::from(self.command_id) | (u32::from(self.phase) << 16) | (status << 17);
        let mut bytes = [0; COMPLETION_ENTRY_BYTES];
        bytes[0..4].copy_from_slice(&self.result.to_le_bytes());
        bytes[8..12].copy_from_slice(&dword2.to_le_bytes());
        bytes[12..16].copy_from_slice(&dword3.to_le_bytes());
        bytes
    }

    /// The command's outcome: its result dword, or its status as an error.
    pub fn outcome(&self) -> Result<u32, Error> {
        if self.status.is_success() { Ok(self.result) } else { Err(Error::Command(self.status)) }
    }
}

/// The host's side of a submission queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubmissionQueue {
    /// The queue identifier (0 for the admin queue).
    pub id: u16,
    entries: u16,
    tail: u16,
    head: u16,
}

impl SubmissionQueue {
    /// An empty queue of `entries` entries (at least two).
    pub fn new(id: u16, entries: u16) -> Result<Self, Error> {
        if entries < 2 {
            return Err(Error::QueueSize);
        }
        Ok(Self { id, entries, tail: 0, head: 0 })
    }

    /// Writes `entry` at the tail; the new tail, for the doorbell.
    pub fn push(&mut self, memory: &mut impl QueueMemory, entry: &SubmissionEntry) -> Result<u16, Error> {
        let next = (self.tail + 1) % self.entries;
        if next == self.head {
            return Err(Error::QueueFull);
        }
        memory.write(usize::from(self.tail) * SUBMISSION_ENTRY_BYTES, &entry.encode())?;
        self.tail = next;
        Ok(next)
    }

    /// Takes the controller's submission head from a completion of this
    /// queue: the entries before it are free again.
    pub fn retire(&mut self, completion: &CompletionEntry) -> Result<(), Error> {
        if completion.submission_queue != self.id || completion.submission_head >= self.entries {
            return Err(Error::UnexpectedCompletion);
        }
        // The head can only move forward to the tail, never past it.
        let outstanding = (self.tail + self.entries - self.head) % self.entries;
        let advance = (completion.submission_head + self.entries - self.head) % self.entries;
        if advance > outstanding {
            return Err(Error::UnexpectedCompletion);
        }
        self.head = completion.submission_head;
        Ok(())
    }

    /// Commands written and not yet consumed by the controller.
    pub fn outstanding(&self) -> u16 {
        (self.tail + self.entries - self.head) % self.entries
    }
}

/// The host's side of a completion queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletionQueue {
    /// The queue identifier (0 for the admin queue).
    pub id: u16,
    entries: u16,
    head: u16,
    phase: bool,
}

impl CompletionQueue {
    /// An empty queue of `entries` entries (at least two), whose memory
    /// the caller has zeroed so that no entry carries phase 1.
    pub fn new(id: u16, entries: u16) -> Result<Self, Error> {
        if entries < 2 {
            return Err(Error::QueueSize);
        }
        Ok(Self { id, entries, head: 0, phase: true })
    }

    /// The next new completion, if the controller has posted one; the new
    /// head for the doorbell with it.
    pub fn poll(&mut self, memory: &impl QueueMemory) -> Result<Option<(CompletionEntry, u16)>, Error> {
        let mut bytes = [0; COMPLETION_ENTRY_BYTES];
        memory.read(usize::from(self.head) * COMPLETION_ENTRY_BYTES, &mut bytes)?;
        let entry = CompletionEntry::decode(&bytes);
        if entry.phase != self.phase {
            return Ok(None);
        }
        self.head += 1;
        if self.head == self.entries {
            self.head = 0;
            self.phase = !self.phase;
        }
        Ok(Some((entry, self.head)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Memory;

    #[test]
    fn a_submission_entry_lays_out_as_the_specification_says() {
        let entry = SubmissionEntry {
            opcode: 0x02,
            command_id: 0x1234,
            namespace: 1,
            prp1: 0x1122_3344_5566_7788,
            prp2: 0x2000,
            dwords: [10, 11, 12, 13, 14, 15],
        };
        let bytes = entry.encode();
        assert_eq!(&bytes[0..4], &[0x02, 0x00, 0x34, 0x12]);
        assert_eq!(&bytes[4..8], &[1, 0, 0, 0]);
        assert_eq!(&bytes[24..32], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&bytes[40..44], &[10, 0, 0, 0]);
        assert_eq!(&bytes[60..64], &[15, 0, 0, 0]);
        assert_eq!(SubmissionEntry::decode(&bytes), entry);
    }

    #[test]
    fn a_completion_entry_decodes_phase_and_status() {
        // Dword 3: command 7, phase 1, status LBA out of range with DNR.
        let status = 0x80u32 | (1 << 14);
        let dword3 = 7 | (1 << 16) | (status << 17);
        let mut bytes = [0u8; 16];
        bytes[0..4].copy_from_slice(&5u32.to_le_bytes());
        bytes[8..12].copy_from_slice(&(3u32 | (1 << 16)).to_le_bytes());
        bytes[12..16].copy_from_slice(&dword3.to_le_bytes());
        let entry = CompletionEntry::decode(&bytes);
        assert_eq!(entry.result, 5);
        assert_eq!((entry.submission_head, entry.submission_queue, entry.command_id), (3, 1, 7));
        assert!(entry.phase);
        assert!(entry.status.is_lba_out_of_range());
        assert!(entry.status.do_not_retry);
        assert_eq!(entry.outcome(), Err(Error::Command(entry.status)));
        assert_eq!(CompletionEntry::decode(&entry.encode()), entry);
    }

    #[test]
    fn a_full_submission_queue_refuses_the_next_entry() {
        let mut memory = Memory::new(4 * SUBMISSION_ENTRY_BYTES);
        let mut queue = SubmissionQueue::new(1, 4).unwrap();
        for expected_tail in 1..4 {
            assert_eq!(queue.push(&mut memory, &SubmissionEntry::default()), Ok(expected_tail));
        }
        assert_eq!(queue.push(&mut memory, &SubmissionEntry::default()), Err(Error::QueueFull));
        assert_eq!(queue.outstanding(), 3);
    }

    #[test]
    fn a_completion_cannot_move_the_head_past_the_tail_or_name_another_queue() {
        let mut memory = Memory::new(4 * SUBMISSION_ENTRY_BYTES);
        let mut queue = SubmissionQueue::new(1, 4).unwrap();
        queue.push(&mut memory, &SubmissionEntry::default()).unwrap();
        let completion = |queue_id, head| CompletionEntry {
            result: 0,
            submission_head: head,
            submission_queue: queue_id,
            command_id: 0,
            phase: true,
            status: Status::from_field(0),
        };
        assert_eq!(queue.retire(&completion(1, 2)), Err(Error::UnexpectedCompletion));
        assert_eq!(queue.retire(&completion(2, 1)), Err(Error::UnexpectedCompletion));
        assert_eq!(queue.retire(&completion(1, 9)), Err(Error::UnexpectedCompletion));
        assert_eq!(queue.retire(&completion(1, 1)), Ok(()));
        assert_eq!(queue.outstanding(), 0);
    }

    #[test]
    fn queues_of_fewer_than_two_entries_are_refused() {
        assert_eq!(SubmissionQueue::new(0, 1), Err(Error::QueueSize));
        assert_eq!(CompletionQueue::new(0, 0), Err(Error::QueueSize));
    }
}
