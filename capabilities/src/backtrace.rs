//! Walking a frame-pointer chain within known stack bounds.
//!
//! Every bare-metal ELF is built with frame pointers kept, so each frame
//! starts with the caller's `rbp` and, above it, the return address. The
//! kernel walks a faulting task's chain through its page tables, the
//! task's panic handler walks its own, and the kernel's panic handler its
//! own stacks; the host turns the addresses into functions and lines.
//!
//! A chain is an allegation: a task may have written anything over it. The
//! walk follows a frame only if it lies inside one of the stacks it is
//! given, is 8-byte aligned, and (within one stack) lies above the frame
//! before it, so every walk ends, after at most [`MAX_FRAMES`] frames, and
//! never reads outside the stacks. How it ended is part of the result, so
//! a broken chain is reported, not followed.

use core::ops::Range;

/// Most return addresses one walk collects: enough for the deepest call
/// chains of the servers, few enough for one log record.
pub const MAX_FRAMES: usize = 16;

/// Bytes of a frame record: the saved frame pointer and the return address.
const RECORD: u64 = 16;

/// Why a walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The chain ended where every chain ends: a zero frame pointer (the
    /// entry code clears `rbp`) or a zero return address.
    Outermost,
    /// A frame pointer outside every stack (or too close to a stack's top
    /// for a whole frame record).
    OutsideStack(u64),
    /// A frame pointer that is not 8-byte aligned.
    Misaligned(u64),
    /// A frame pointer at or below the frame before it on the same stack:
    /// a loop, or a corrupt chain.
    NotAscending(u64),
    /// A frame record that could not be read.
    Unreadable(u64),
    /// [`MAX_FRAMES`] return addresses were collected before the end.
    TooDeep,
}

impl End {
    /// Why the walk stopped, in words, or `None` when it reached the
    /// outermost frame (nothing to say).
    pub fn note(&self) -> Option<&'static str> {
        match self {
            End::Outermost => None,
            End::OutsideStack(_) => Some("the frame chain leaves the stack"),
            End::Misaligned(_) => Some("a frame pointer is misaligned"),
            End::NotAscending(_) => Some("the frame chain loops or descends"),
            End::Unreadable(_) => Some("a frame could not be read"),
            End::TooDeep => Some("deeper frames left out"),
        }
    }

    /// The frame pointer the walk stopped at (0 when none is to blame).
    pub fn frame_pointer(&self) -> u64 {
        match *self {
            End::OutsideStack(at) | End::Misaligned(at) | End::NotAscending(at) | End::Unreadable(at) => at,
            End::Outermost | End::TooDeep => 0,
        }
    }
}

/// The return addresses of a chain, innermost first, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walk {
    /// Return addresses, innermost first.
    pub returns: heapless::Vec<u64, MAX_FRAMES>,
    /// Why the walk stopped.
    pub end: End,
}

/// Walks the chain starting at frame pointer `rbp`, reading 8-byte words
/// through `read` (which says `None` for a word it cannot read), and
/// following frames only inside `stacks`.
pub fn walk(mut rbp: u64, stacks: &[Range<u64>], mut read: impl FnMut(u64) -> Option<u64>) -> Walk {
    let mut returns = heapless::Vec::new();
    let mut previous: Option<(usize, u64)> = None;
    let end = loop {
        if rbp == 0 {
            break End::Outermost;
        }
        if !rbp.is_multiple_of(8) {
            break End::Misaligned(rbp);
        }
        let Some(stack) = stacks
            .iter()
            .position(|stack| rbp >= stack.start && rbp.checked_add(RECORD).is_some_and(|end| end <= stack.end))
        else {
            break End::OutsideStack(rbp);
        };
        if previous.is_some_and(|(on, below)| on == stack && rbp <= below) {
            break End::NotAscending(rbp);
        }
        let (Some(saved), Some(ret)) = (read(rbp), read(rbp + 8)) else {
            break End::Unreadable(rbp);
        };
        if ret == 0 {
            break End::Outermost;
        }
        if returns.push(ret).is_err() {
            break End::TooDeep;
        }
        previous = Some((stack, rbp));
        rbp = saved;
    };
    Walk { returns, end }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A stack of words at the given addresses.
    fn memory(words: &[(u64, u64)]) -> HashMap<u64, u64> {
        words.iter().copied().collect()
    }

    fn run(rbp: u64, stacks: &[Range<u64>], words: &HashMap<u64, u64>) -> Walk {
        walk(rbp, stacks, |at| words.get(&at).copied())
    }

    const STACK: Range<u64> = 0x1000..0x2000;

    #[test]
    fn a_whole_chain_is_walked_to_its_zero_frame_pointer() {
        let words = memory(&[(0x1800, 0x1900), (0x1808, 0x40_1000), (0x1900, 0), (0x1908, 0x40_2000)]);
        let walked = run(0x1800, &[STACK], &words);
        assert_eq!(walked.returns.as_slice(), [0x40_1000, 0x40_2000]);
        assert_eq!(walked.end, End::Outermost);
        assert_eq!(walked.end.note(), None);
    }

    #[test]
    fn a_frame_outside_the_stack_ends_the_walk_without_reading_it() {
        let words = memory(&[(0x1800, 0x9000), (0x1808, 0x40_1000)]);
        let mut reads = Vec::new();
        let walked = walk(0x1800, &[STACK], |at| {
            reads.push(at);
            words.get(&at).copied()
        });
        assert_eq!(walked.returns.as_slice(), [0x40_1000]);
        assert_eq!(walked.end, End::OutsideStack(0x9000));
        assert!(reads.iter().all(|at| STACK.contains(at)), "read outside the stack: {reads:x?}");
        // A record must fit whole: the last 8 bytes of a stack are not a frame.
        assert_eq!(run(0x1ff8, &[STACK], &words).end, End::OutsideStack(0x1ff8));
        let everything = 0..u64::MAX;
        assert_eq!(run(u64::MAX - 7, core::slice::from_ref(&everything), &words).end, End::OutsideStack(u64::MAX - 7));
    }

    #[test]
    fn loops_descents_and_misalignment_are_notes_not_hangs() {
        let looped = memory(&[(0x1800, 0x1800), (0x1808, 0x40_1000)]);
        assert_eq!(run(0x1800, &[STACK], &looped).end, End::NotAscending(0x1800));
        let descending = memory(&[(0x1800, 0x1700), (0x1808, 0x40_1000)]);
        assert_eq!(run(0x1800, &[STACK], &descending).end, End::NotAscending(0x1700));
        let odd = memory(&[(0x1800, 0x1903), (0x1808, 0x40_1000)]);
        let walked = run(0x1800, &[STACK], &odd);
        assert_eq!((walked.returns.len(), walked.end), (1, End::Misaligned(0x1903)));
        assert!(walked.end.note().is_some());
    }

    #[test]
    fn an_unreadable_word_and_a_zero_return_address_end_the_walk() {
        let missing = memory(&[(0x1800, 0x1900), (0x1808, 0x40_1000), (0x1900, 0x1a00)]);
        assert_eq!(run(0x1800, &[STACK], &missing).end, End::Unreadable(0x1900));
        let zero = memory(&[(0x1800, 0x1900), (0x1808, 0)]);
        let walked = run(0x1800, &[STACK], &zero);
        assert_eq!((walked.returns.len(), walked.end), (0, End::Outermost));
    }

    #[test]
    fn a_long_chain_stops_at_the_frame_limit() {
        let words: HashMap<u64, u64> = (0..40u64)
            .flat_map(|frame| {
                let at = 0x1000 + frame * 0x20;
                [(at, at + 0x20), (at + 8, 0x40_0000 + frame)]
            })
            .collect();
        let walked = run(0x1000, &[STACK], &words);
        assert_eq!(walked.returns.len(), MAX_FRAMES);
        assert_eq!(walked.end, End::TooDeep);
    }

    #[test]
    fn a_chain_may_move_to_another_stack() {
        // An exception on its own stack whose frames continue on the main one.
        let other = 0x8000..0x9000;
        let words = memory(&[(0x8800, 0x1100), (0x8808, 0x40_1000), (0x1100, 0), (0x1108, 0x40_2000)]);
        let walked = run(0x8800, &[STACK, other], &words);
        assert_eq!(walked.returns.as_slice(), [0x40_1000, 0x40_2000]);
        assert_eq!(walked.end, End::Outermost);
    }
}
