//! A submission queue and its completion queue, driven one command at a time.

use crate::Error;
use crate::queue::{CompletionEntry, CompletionQueue, QueueMemory, SubmissionEntry, SubmissionQueue};

/// A queue pair with one outstanding command at most: the drivers wait
/// for each command before the next, so a completion that does not name
/// the command in flight is the controller misbehaving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePair {
    submissions: SubmissionQueue,
    completions: CompletionQueue,
    next_command: u16,
    in_flight: Option<u16>,
}

impl QueuePair {
    /// Queue pair `id` of `entries` entries each, both empty.
    pub fn new(id: u16, entries: u16) -> Result<Self, Error> {
        Ok(Self {
            submissions: SubmissionQueue::new(id, entries)?,
            completions: CompletionQueue::new(id, entries)?,
            next_command: 0,
            in_flight: None,
        })
    }

    /// The queue identifier.
    pub fn id(&self) -> u16 {
        self.submissions.id
    }

    /// Writes the command `build` makes with a fresh command identifier;
    /// the new submission tail, for the doorbell.
    pub fn submit(
        &mut self,
        memory: &mut impl QueueMemory,
        build: impl FnOnce(u16) -> Result<SubmissionEntry, Error>,
    ) -> Result<u16, Error> {
        if self.in_flight.is_some() {
            return Err(Error::QueueFull);
        }
        let command = self.next_command;
        let tail = self.submissions.push(memory, &build(command)?)?;
        self.next_command = command.wrapping_add(1);
        self.in_flight = Some(command);
        Ok(tail)
    }

    /// The completion of the command in flight, if posted, with the new
    /// completion head for the doorbell.
    pub fn reap(&mut self, memory: &impl QueueMemory) -> Result<Option<(CompletionEntry, u16)>, Error> {
        let Some(command) = self.in_flight else { return Err(Error::UnexpectedCompletion) };
        let Some((entry, head)) = self.completions.poll(memory)? else { return Ok(None) };
        if entry.command_id != command {
            return Err(Error::UnexpectedCompletion);
        }
        self.submissions.retire(&entry)?;
        self.in_flight = None;
        Ok(Some((entry, head)))
    }

    /// Forgets the command in flight (after a timeout, before the
    /// controller is reset and the queues built again).
    pub fn abandon(&mut self) {
        self.in_flight = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{self, Direction};
    use crate::error::Status;
    use crate::model::{Memory, ModelController};
    use crate::prp::Prp;
    use crate::queue::{COMPLETION_ENTRY_BYTES, SUBMISSION_ENTRY_BYTES};

    const ENTRIES: u16 = 4;
    const BUFFER: Prp = Prp { first: 0x1000, second: 0 };

    fn setup() -> (QueuePair, Memory, Memory, ModelController) {
        let pair = QueuePair::new(1, ENTRIES).unwrap();
        let submissions = Memory::new(usize::from(ENTRIES) * SUBMISSION_ENTRY_BYTES);
        let completions = Memory::new(usize::from(ENTRIES) * COMPLETION_ENTRY_BYTES);
        (pair, submissions, completions, ModelController::new(1, ENTRIES, 100))
    }

    fn read(first: u64) -> impl FnOnce(u16) -> Result<SubmissionEntry, Error> {
        move |id| command::transfer(id, Direction::Read, 1, first, 1, BUFFER)
    }

    #[test]
    fn commands_complete_across_several_wraps_of_the_phase_tag() {
        let (mut pair, mut submissions, mut completions, mut controller) = setup();
        for round in 0..(3 * ENTRIES) {
            let tail = pair.submit(&mut submissions, read(u64::from(round))).unwrap();
            assert_eq!(pair.reap(&completions), Ok(None), "nothing before the controller runs");
            controller.ring_submission(tail, &submissions, &mut completions);
            let (entry, head) = pair.reap(&completions).unwrap().expect("completion posted");
            assert_eq!(entry.command_id, round);
            assert_eq!(entry.outcome(), Ok(0));
            controller.ring_completion(head);
        }
        assert_eq!(controller.completed(), usize::from(3 * ENTRIES));
    }

    #[test]
    fn a_failed_command_is_a_typed_error_and_the_pair_keeps_working() {
        let (mut pair, mut submissions, mut completions, mut controller) = setup();
        let tail = pair.submit(&mut submissions, read(100)).unwrap();
        controller.ring_submission(tail, &submissions, &mut completions);
        let (entry, head) = pair.reap(&completions).unwrap().unwrap();
        controller.ring_completion(head);
        let Err(Error::Command(status)) = entry.outcome() else { panic!("out of range succeeded") };
        assert!(status.is_lba_out_of_range());
        assert_eq!(status.code, Status::LBA_OUT_OF_RANGE);
        let tail = pair.submit(&mut submissions, read(99)).unwrap();
        controller.ring_submission(tail, &submissions, &mut completions);
        assert_eq!(pair.reap(&completions).unwrap().unwrap().0.outcome(), Ok(0));
    }

    #[test]
    fn a_second_command_waits_for_the_first() {
        let (mut pair, mut submissions, _, _) = setup();
        pair.submit(&mut submissions, read(0)).unwrap();
        assert_eq!(pair.submit(&mut submissions, read(1)), Err(Error::QueueFull));
        pair.abandon();
        assert!(pair.submit(&mut submissions, read(1)).is_ok());
    }

    #[test]
    fn a_completion_for_another_command_is_refused() {
        let (mut pair, mut submissions, mut completions, mut controller) = setup();
        let tail = pair.submit(&mut submissions, read(0)).unwrap();
        controller.corrupt_next_command_id();
        controller.ring_submission(tail, &submissions, &mut completions);
        assert_eq!(pair.reap(&completions), Err(Error::UnexpectedCompletion));
    }

    #[test]
    fn reaping_with_nothing_in_flight_is_refused() {
        let (mut pair, _, completions, _) = setup();
        assert_eq!(pair.reap(&completions), Err(Error::UnexpectedCompletion));
    }

    #[test]
    fn a_build_error_leaves_nothing_in_flight() {
        let (mut pair, mut submissions, _, _) = setup();
        let zero_blocks = |id| command::transfer(id, Direction::Read, 1, 0, 0, BUFFER);
        assert_eq!(pair.submit(&mut submissions, zero_blocks), Err(Error::BlockRange));
        assert!(pair.submit(&mut submissions, read(0)).is_ok());
    }
}
