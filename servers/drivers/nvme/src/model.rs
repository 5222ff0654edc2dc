//! A model controller for the host tests: it consumes submission entries
//! and posts completions with the phase tag, as the specification says.

use crate::Error;
use crate::command::io;
use crate::error::Status;
use crate::queue::{COMPLETION_ENTRY_BYTES, CompletionEntry, QueueMemory, SUBMISSION_ENTRY_BYTES, SubmissionEntry};

/// Queue memory as a byte array.
pub struct Memory(Vec<u8>);

impl Memory {
    /// `bytes` of zeroed memory.
    pub fn new(bytes: usize) -> Self {
        Self(vec![0; bytes])
    }
}

impl QueueMemory for Memory {
    fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<(), Error> {
        let end = offset.checked_add(bytes.len()).ok_or(Error::OutOfBounds)?;
        self.0.get_mut(offset..end).ok_or(Error::OutOfBounds)?.copy_from_slice(bytes);
        Ok(())
    }

    fn read(&self, offset: usize, bytes: &mut [u8]) -> Result<(), Error> {
        let end = offset.checked_add(bytes.len()).ok_or(Error::OutOfBounds)?;
        bytes.copy_from_slice(self.0.get(offset..end).ok_or(Error::OutOfBounds)?);
        Ok(())
    }
}

/// One I/O queue pair of a controller whose namespace 1 has `blocks`
/// blocks: reads and writes inside it succeed, others fail with
/// "LBA out of range".
pub struct ModelController {
    queue: u16,
    entries: u16,
    blocks: u64,
    submission_head: u16,
    completion_tail: u16,
    completion_head: u16,
    phase: bool,
    completed: usize,
    corrupt: bool,
}

impl ModelController {
    pub fn new(queue: u16, entries: u16, blocks: u64) -> Self {
        Self {
            queue,
            entries,
            blocks,
            submission_head: 0,
            completion_tail: 0,
            completion_head: 0,
            phase: true,
            completed: 0,
            corrupt: false,
        }
    }

    /// Commands completed so far.
    pub fn completed(&self) -> usize {
        self.completed
    }

    /// The next completion names a command that was never submitted.
    pub fn corrupt_next_command_id(&mut self) {
        self.corrupt = true;
    }

    /// The host wrote `tail` to the submission doorbell: run every command
    /// up to it.
    pub fn ring_submission(&mut self, tail: u16, submissions: &Memory, completions: &mut Memory) {
        while self.submission_head != tail {
            let mut bytes = [0; SUBMISSION_ENTRY_BYTES];
            let at = usize::from(self.submission_head) * SUBMISSION_ENTRY_BYTES;
            submissions.read(at, &mut bytes).expect("entry inside the queue");
            let command = SubmissionEntry::decode(&bytes);
            self.submission_head = (self.submission_head + 1) % self.entries;
            let next_tail = (self.completion_tail + 1) % self.entries;
            assert_ne!(next_tail, self.completion_head, "the host let the completion queue fill");
            let completion = CompletionEntry {
                result: 0,
                submission_head: self.submission_head,
                submission_queue: self.queue,
                command_id: if self.corrupt { command.command_id.wrapping_add(1) } else { command.command_id },
                phase: self.phase,
                status: self.execute(&command),
            };
            let at = usize::from(self.completion_tail) * COMPLETION_ENTRY_BYTES;
            completions.write(at, &completion.encode()).expect("entry inside the queue");
            self.completion_tail = next_tail;
            if self.completion_tail == 0 {
                self.phase = !self.phase;
            }
            self.completed += 1;
        }
    }

    /// The host wrote `head` to the completion doorbell.
    pub fn ring_completion(&mut self, head: u16) {
        self.completion_head = head;
    }

    fn execute(&self, command: &SubmissionEntry) -> Status {
        let first = u64::from(command.dwords[0]) | (u64::from(command.dwords[1]) << 32);
        let blocks = u64::from(command.dwords[2] & 0xffff) + 1;
        let code = match command.opcode {
            io::READ | io::WRITE if first + blocks <= self.blocks => Status::SUCCESS,
            io::READ | io::WRITE => Status::LBA_OUT_OF_RANGE,
            _ => Status::INVALID_FIELD,
        };
        Status { code_type: 0, code, do_not_retry: code != Status::SUCCESS }
    }
}
