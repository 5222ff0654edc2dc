//! A token bucket that limits how often faults are logged.
//!
//! A device pointed at an unmapped buffer can fault millions of times a
//! second; each fault costs an interrupt and register reads, and a log
//! flooded with one source hides the rest. The service keeps one bucket
//! for all groups and uses it for log lines only: every fault is still
//! drained and recorded in its group's log.

/// Admits at most `burst` events at once and one more every `interval`
/// ticks of the caller's clock; counts what it refused.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    burst: u32,
    tokens: u32,
    interval: u64,
    last_refill: u64,
    suppressed: u64,
}

impl RateLimiter {
    /// A full bucket at time `now`; an `interval` of 0 admits everything.
    pub fn new(burst: u32, interval: u64, now: u64) -> Self {
        Self { burst, tokens: burst, interval, last_refill: now, suppressed: 0 }
    }

    /// True if an event at `now` may be handled. A clock that goes
    /// backwards refills nothing.
    pub fn admit(&mut self, now: u64) -> bool {
        if self.interval == 0 {
            return true;
        }
        let earned = now.saturating_sub(self.last_refill) / self.interval;
        if earned > 0 {
            let refill = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(refill).min(self.burst);
            self.last_refill = self.last_refill.saturating_add(earned.saturating_mul(self.interval));
        }
        if self.tokens == 0 {
            self.suppressed = self.suppressed.saturating_add(1);
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Events refused since the last take; resets the count.
    pub fn take_suppressed(&mut self) -> u64 {
        core::mem::take(&mut self.suppressed)
    }

    /// True while events are being refused: a storm worth reporting (and
    /// perhaps worth setting fault-processing-disable for).
    pub fn in_storm(&self) -> bool {
        self.suppressed > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_one_per_interval() {
        let mut limiter = RateLimiter::new(3, 100, 1000);
        assert!((0..3).all(|_| limiter.admit(1000)));
        assert!(!limiter.admit(1000) && !limiter.admit(1099));
        assert!(limiter.in_storm());
        assert!(limiter.admit(1100));
        assert!(!limiter.admit(1150));
        assert_eq!(limiter.take_suppressed(), 3);
        assert!(!limiter.in_storm());
        assert!((0..3).all(|_| limiter.admit(100_000)), "refills up to the burst only");
        assert!(!limiter.admit(100_000));
        assert!(!limiter.admit(5), "clock going backwards");
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let mut limiter = RateLimiter::new(u32::MAX, 1, 0);
        assert!(limiter.admit(u64::MAX));
        let mut unlimited = RateLimiter::new(0, 0, 0);
        assert!(unlimited.admit(0));
        let mut never = RateLimiter::new(0, u64::MAX, 0);
        assert!(!never.admit(u64::MAX - 1));
        assert!(!never.admit(u64::MAX), "a zero burst admits nothing");
    }

    #[test]
    fn storm_admits_a_bounded_number() {
        let mut limiter = RateLimiter::new(10, 1_000, 0);
        let admitted = (0..1_000_000u64).filter(|tick| limiter.admit(*tick)).count();
        assert_eq!(admitted, 10 + 999);
        assert_eq!(limiter.take_suppressed(), 1_000_000 - 1009);
    }
}
