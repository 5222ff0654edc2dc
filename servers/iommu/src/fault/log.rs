//! A bounded per-group log of faults that counts exactly what it dropped.

use heapless::Deque;

use super::record::FaultRecord;

/// The last `N` faults of one group, oldest first, and how many older ones
/// were dropped to make room.
#[derive(Debug, Clone)]
pub struct FaultLog<const N: usize> {
    records: Deque<FaultRecord, N>,
    dropped: u64,
    total: u64,
}

impl<const N: usize> Default for FaultLog<N> {
    fn default() -> Self {
        Self { records: Deque::new(), dropped: 0, total: 0 }
    }
}

impl<const N: usize> FaultLog<N> {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a fault, dropping the oldest when full.
    pub fn push(&mut self, record: FaultRecord) {
        self.total = self.total.saturating_add(1);
        if self.records.is_full() {
            self.records.pop_front();
            self.dropped = self.dropped.saturating_add(u64::from(!cfg!(feature = "mutant-fault-drops-uncounted")));
        }
        // Room was just made (heapless refuses N = 0 at compile time), so
        // the push succeeds.
        let _ = self.records.push_back(record);
    }

    /// Counts a fault that a rate limiter suppressed before logging.
    pub fn count_suppressed(&mut self, count: u64) {
        self.total = self.total.saturating_add(count);
        self.dropped = self.dropped.saturating_add(count);
    }

    /// The kept records, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &FaultRecord> {
        self.records.iter()
    }

    /// Number of kept records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True if no record is kept.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Faults not kept (overwritten or suppressed) since the last take.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Faults seen since the log was made.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Removes and returns the oldest record.
    pub fn pop(&mut self) -> Option<FaultRecord> {
        self.records.pop_front()
    }

    /// Returns the dropped count and resets it (after reporting it).
    pub fn take_dropped(&mut self) -> u64 {
        core::mem::take(&mut self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{FaultReason, FaultRecord};
    use crate::registers::frcd;

    fn record(n: u64) -> FaultRecord {
        FaultRecord::decode(n << 12, frcd::F | u64::from(FaultReason(6).0) << 32).unwrap()
    }

    #[test]
    fn keeps_the_newest_and_counts_exactly_what_it_dropped() {
        let mut log = FaultLog::<4>::new();
        for n in 0..10 {
            log.push(record(n));
        }
        assert_eq!(log.len(), 4);
        assert_eq!(log.iter().map(|r| r.address >> 12).collect::<Vec<_>>(), [6, 7, 8, 9]);
        assert_eq!((log.dropped(), log.total()), (6, 10));
        log.count_suppressed(5);
        assert_eq!((log.take_dropped(), log.dropped(), log.total()), (11, 0, 15));
        assert_eq!(log.pop().map(|r| r.address >> 12), Some(6));
        assert_eq!(log.len(), 3);
        let mut single = FaultLog::<1>::new();
        single.push(record(1));
        single.push(record(2));
        assert_eq!((single.len(), single.dropped()), (1, 1));
        assert!(!single.is_empty());
    }
}
