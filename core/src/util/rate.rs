//! A token bucket: how many of something may start in a given time, spread evenly rather than
//! all at the start of each period. Used for shadow copies ([`crate::shadow::Budget`]), for the
//! feedback scores an isolate sends on ([`crate::isolate::feedback::Intake`]) and for the scores the
//! controller takes in.
//!
//! The bucket counts in thousandths of a token, refilled at `per_minute` tokens per 60 000 ms
//! and holding at most `capacity` tokens; what a refill leaves over (less than a thousandth) is
//! kept for the next, so no fraction is lost however often it is asked. Time comes in as an
//! argument.

/// A token bucket that starts full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenBucket {
    /// Thousandths of a token in the bucket.
    milli: u64,
    /// Until when the bucket was filled (Unix ms).
    filled_ms: u64,
    /// What the last refill left over, in thousandths × 60 (below 60).
    rest: u64,
}

impl TokenBucket {
    /// Takes one token at `now_ms` from a bucket refilled at `per_minute` and holding at most
    /// `capacity` tokens; false (nothing taken) when it holds less than one.
    pub fn take(&mut self, now_ms: u64, per_minute: u32, capacity: u32) -> bool {
        self.refill(now_ms, per_minute, capacity);
        if self.milli < 1000 {
            return false;
        }
        self.milli -= 1000;
        true
    }

    fn refill(&mut self, now_ms: u64, per_minute: u32, capacity: u32) {
        let full = u64::from(capacity) * 1000;
        if now_ms <= self.filled_ms {
            // The same instant, or a clock that went back: nothing to add.
            self.milli = self.milli.min(full);
            return;
        }
        // A thousandth a token per (60 / per_minute) ms: elapsed × per_minute / 60.
        let sixtieths = (now_ms - self.filled_ms)
            .saturating_mul(u64::from(per_minute))
            .saturating_add(self.rest);
        self.filled_ms = now_ms;
        self.rest = sixtieths % 60;
        self.milli = self.milli.saturating_add(sixtieths / 60).min(full);
        if self.milli == full {
            // A full bucket keeps no leftover: nothing accrues beyond the capacity.
            self.rest = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_764_201_600_000;

    #[test]
    fn starts_full_and_refills_at_the_rate() {
        let mut b = TokenBucket::default();
        // 60 a minute holding 3: three at once, then one a second.
        assert!((0..3).all(|_| b.take(T0, 60, 3)));
        assert!(!b.take(T0, 60, 3));
        assert!(!b.take(T0 + 999, 60, 3));
        assert!(b.take(T0 + 1000, 60, 3));
        assert!(!b.take(T0 + 1000, 60, 3));
        // A long pause fills it to its capacity, not beyond.
        let later = T0 + 3_600_000;
        assert_eq!((0..5).filter(|_| b.take(later, 60, 3)).count(), 3);
    }

    #[test]
    fn no_fraction_is_lost_to_frequent_asking() {
        // 7 a minute, asked every millisecond for ten minutes: exactly 70 after the first
        // (capacity 1 so the start's full bucket is 1).
        let mut b = TokenBucket::default();
        let mut taken = 0;
        for ms in 0..600_000 {
            taken += u64::from(b.take(T0 + ms, 7, 1));
        }
        // One at T0, then one every 60 000 / 7 ms: floor(599 999 × 7 / 60 000) = 69 more.
        assert_eq!(taken, 70);
    }

    #[test]
    fn extreme_rates_and_clocks_never_panic() {
        let mut b = TokenBucket::default();
        assert!(!b.take(T0, 0, 0), "a zero capacity holds nothing");
        assert!(!b.take(u64::MAX, 0, 0));
        let mut b = TokenBucket::default();
        assert!(b.take(u64::MAX, u32::MAX, u32::MAX));
        assert!(
            b.take(0, u32::MAX, u32::MAX),
            "a clock going back takes from what is there"
        );
        let mut b = TokenBucket::default();
        assert!(b.take(T0, 1, 1));
        assert!(!b.take(T0 - 1_000_000, 1, 1));
        assert!(b.take(T0 + 60_000, 1, 1));
    }
}
