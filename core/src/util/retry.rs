//! Retry schedules as data: how many attempts, how long to wait before each and how long one
//! attempt may take. The shell's one retry loop (`src/retry.rs`) runs a schedule; which
//! schedule fits (stats batches to the controller, alert webhooks) is decided here, where it
//! can be read and tested without the runtime. The mechanism never decides.

/// A bounded retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Wait before each attempt, in milliseconds; its length is the number of attempts.
    pub waits_ms: &'static [u64],
    /// Longest one attempt may take before it counts as failed.
    pub attempt_timeout_ms: u64,
}

impl Schedule {
    /// A stats batch to the controller: four attempts over ~4 s of waits. With 3 s per attempt,
    /// a batch the controller never answers is given up on after ~16 s, inside the 30 s that
    /// `waitUntil` allows after a response; the batch stays queued for the next flush.
    pub const STATS_BATCH: Schedule = Schedule {
        waits_ms: &[0, 250, 1000, 3000],
        attempt_timeout_ms: 3000,
    };

    /// An alert to the webhook: three attempts over ~4 s, 5 s each (a chat webhook may be slow,
    /// and an alert is sent once per event, off every request path).
    pub const ALERT: Schedule = Schedule {
        waits_ms: &[0, 1000, 3000],
        attempt_timeout_ms: 5000,
    };

    /// The routing document to KV: four attempts within ~5 s. KV takes at most one write a
    /// second to a key, so a split followed at once by a rollback has its second write refused
    /// (429); waiting more than a second before each retry lands it within seconds.
    pub const KV_WRITE: Schedule = Schedule {
        waits_ms: &[0, 1100, 1500, 2500],
        attempt_timeout_ms: 5000,
    };

    /// Number of attempts.
    pub fn attempts(&self) -> usize {
        self.waits_ms.len()
    }

    /// Longest the whole schedule can take when every attempt times out.
    pub fn worst_case_ms(&self) -> u64 {
        self.waits_ms.iter().sum::<u64>() + self.attempts() as u64 * self.attempt_timeout_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_fit_the_time_the_runtime_gives_them() {
        // (schedule, attempts, worst case): 4 250 + 4 × 3000 = 16 250 ms, inside waitUntil's
        // 30 s after a response; 4 000 + 3 × 5000 = 19 000 ms for alerts.
        // KV: 5 100 + 4 × 5000 = 25 100 ms, inside the 30 s a Durable Object request may run.
        for (s, attempts, worst) in [
            (Schedule::STATS_BATCH, 4, 16_250),
            (Schedule::ALERT, 3, 19_000),
            (Schedule::KV_WRITE, 4, 25_100),
        ] {
            assert_eq!((s.attempts(), s.worst_case_ms()), (attempts, worst));
            assert!(s.worst_case_ms() < 30_000);
            assert_eq!(s.waits_ms[0], 0, "the first attempt goes at once");
        }
        assert!(
            Schedule::KV_WRITE.waits_ms[1..].iter().all(|w| *w > 1000),
            "KV takes one write a second to a key"
        );
    }
}
