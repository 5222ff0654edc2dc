//! Bounded waits: retry a check until it holds, the bound passes, or it fails.

use crate::Error;

/// Time as the driver sees it, and what it does between two looks.
pub trait Clock {
    /// Microseconds since some fixed start.
    fn now_micros(&self) -> u64;
    /// Lets time pass for at most `micros` (yield, sleep, or wait for an
    /// interrupt) before the next look.
    fn pause(&mut self, micros: u64) -> Result<(), Error>;
}

/// Calls `look` until it gives a value, at most `bound` microseconds after
/// the first call, pausing between looks. An error from `look` or `pause`
/// ends the wait at once; the bound passing is [`Error::Timeout`].
pub fn until<T>(
    clock: &mut impl Clock,
    bound: u64,
    mut look: impl FnMut() -> Result<Option<T>, Error>,
) -> Result<T, Error> {
    let deadline = clock.now_micros().saturating_add(bound);
    loop {
        if let Some(value) = look()? {
            return Ok(value);
        }
        let now = clock.now_micros();
        if now >= deadline {
            return Err(Error::Timeout { micros: bound });
        }
        clock.pause(deadline - now)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{self, Direction};
    use crate::model::{Memory, ModelController};
    use crate::pair::QueuePair;
    use crate::prp::Prp;
    use crate::queue::{COMPLETION_ENTRY_BYTES, SUBMISSION_ENTRY_BYTES};
    use crate::registers::ControllerStatus;

    /// A clock that moves `step` microseconds at each pause.
    struct SteppingClock {
        now: u64,
        step: u64,
        pauses: u32,
    }

    impl Clock for SteppingClock {
        fn now_micros(&self) -> u64 {
            self.now
        }

        fn pause(&mut self, micros: u64) -> Result<(), Error> {
            self.now += self.step.min(micros);
            self.pauses += 1;
            Ok(())
        }
    }

    fn clock() -> SteppingClock {
        SteppingClock { now: 1_000, step: 100, pauses: 0 }
    }

    #[test]
    fn a_check_that_never_holds_times_out_at_the_bound() {
        let mut clock = clock();
        let waited: Result<(), Error> = until(&mut clock, 1_000, || Ok(None));
        assert_eq!(waited, Err(Error::Timeout { micros: 1_000 }));
        assert_eq!(clock.now, 2_000, "the wait lasted exactly the bound");
        assert_eq!(clock.pauses, 10);
    }

    #[test]
    fn a_check_that_holds_ends_the_wait_with_its_value() {
        let mut clock = clock();
        let mut looks = 0;
        let waited = until(&mut clock, 1_000, || {
            looks += 1;
            Ok((looks == 3).then_some(looks))
        });
        assert_eq!(waited, Ok(3));
        assert_eq!(clock.pauses, 2);
    }

    #[test]
    fn a_fatal_controller_ends_the_wait_at_once() {
        let mut clock = clock();
        let waited = until(&mut clock, 1_000, || ControllerStatus::decode(0b10).reached(true).map(|_| None::<()>));
        assert_eq!(waited, Err(Error::ControllerFatal));
        assert_eq!(clock.pauses, 0);
    }

    #[test]
    fn a_controller_that_ignores_its_doorbell_times_out_and_the_pair_is_reusable() {
        let mut pair = QueuePair::new(1, 4).unwrap();
        let mut submissions = Memory::new(4 * SUBMISSION_ENTRY_BYTES);
        let mut completions = Memory::new(4 * COMPLETION_ENTRY_BYTES);
        let mut controller = ModelController::new(1, 4, 100);
        let read = |id| command::transfer(id, Direction::Read, 1, 0, 1, Prp { first: 0x1000, second: 0 });
        pair.submit(&mut submissions, read).unwrap();
        // The doorbell write is lost: the controller never runs the command.
        let mut clock = clock();
        let waited = until(&mut clock, 500, || pair.reap(&completions));
        assert_eq!(waited, Err(Error::Timeout { micros: 500 }));
        // After a reset the controller's queues start empty; so do the host's.
        pair = QueuePair::new(1, 4).unwrap();
        let tail = pair.submit(&mut submissions, read).unwrap();
        controller.ring_submission(tail, &submissions, &mut completions);
        let (entry, _) = until(&mut clock, 500, || pair.reap(&completions)).unwrap();
        assert_eq!(entry.outcome(), Ok(0));
    }
}
