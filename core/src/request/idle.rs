//! The idle limit of a relayed stream: once the router has committed to a stream, an upstream
//! silent for longer than `STREAM_IDLE_TIMEOUT_MS` is cut (the client gets the SSE `error`
//! event, and the request counts as `interrupted`).
//!
//! Silence is time without a byte from the upstream, keep-alive comments included (a comment
//! is a sign of life), counted from when the relay last heard from it or came back to listen
//! after writing to the client (time the client takes to read is not the upstream's silence).
//!
//! The shell keeps one timer per stream and never re-arms it per chunk: each chunk only moves
//! [`IdleClock::heard`], and when the timer fires [`IdleClock::check`] says whether the limit
//! was reached or how much longer to wait. A stream that keeps talking costs one timer per
//! idle period, not one per chunk. Time comes in as an argument; nothing here reads a clock.

/// When a stream was last heard from, and how long it may stay silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleClock {
    limit_ms: u64,
    heard_ms: u64,
}

/// What a timer firing means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Silent for the whole limit: cut the stream.
    Expired,
    /// Heard from since the timer was set: wait this many ms more, then check again.
    CheckIn(u64),
}

impl IdleClock {
    /// A clock that starts at `now_ms` (the router committed to the stream) with a limit of
    /// `limit_ms` of silence.
    pub fn new(now_ms: u64, limit_ms: u64) -> IdleClock {
        IdleClock {
            limit_ms,
            heard_ms: now_ms,
        }
    }

    /// Bytes arrived, or the relay is listening again after writing to the client, at
    /// `now_ms`: silence counts from here.
    pub fn heard(&mut self, now_ms: u64) {
        self.heard_ms = self.heard_ms.max(now_ms);
    }

    /// At `now_ms` (when the timer fires, or to arm the first one): expired, or how long to
    /// wait before checking again.
    pub fn check(&self, now_ms: u64) -> Idle {
        let due = self.heard_ms.saturating_add(self.limit_ms);
        match due.checked_sub(now_ms) {
            Some(left) if left > 0 => Idle::CheckIn(left),
            _ => Idle::Expired,
        }
    }

    /// The limit, for the message the client gets.
    pub fn limit_ms(&self) -> u64 {
        self.limit_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeline_of_a_stream_that_talks_then_stalls() {
        // Committed at t = 1 000 with a 120 000 ms limit: the first timer is set for 120 000.
        let mut c = IdleClock::new(1_000, 120_000);
        assert_eq!(c.check(1_000), Idle::CheckIn(120_000));
        // Chunks at 5 s, 60 s and 100 s move nothing but the clock.
        for t in [5_000, 60_000, 100_000] {
            c.heard(t);
        }
        // The timer fires at 121 000: heard at 100 000, so 99 000 ms are left.
        assert_eq!(c.check(121_000), Idle::CheckIn(99_000));
        // Nothing more: the next firing, at 220 000, finds 120 000 ms of silence.
        assert_eq!(c.check(220_000), Idle::Expired);
        assert_eq!(c.check(500_000), Idle::Expired);
    }

    #[test]
    fn one_timer_per_idle_period_however_many_chunks() {
        // A chunk every 10 ms for 10 s with a 1 s limit: counting the checks the timer makes.
        let mut c = IdleClock::new(0, 1_000);
        let mut due = match c.check(0) {
            Idle::CheckIn(ms) => ms,
            Idle::Expired => unreachable!(),
        };
        let mut timers = 1;
        for t in (10..=10_000).step_by(10) {
            if t == due {
                match c.check(t) {
                    Idle::CheckIn(ms) => {
                        due = t + ms;
                        timers += 1;
                    }
                    Idle::Expired => panic!("expired at {t} while talking"),
                }
            }
            c.heard(t);
        }
        // 1000 chunks, about one timer a second: 10 s / 1 s = 10, plus the first.
        assert!(timers <= 11, "{timers}");
        // Then silence: expired exactly 1 s after the last chunk.
        assert_eq!(c.check(10_999), Idle::CheckIn(1));
        assert_eq!(c.check(11_000), Idle::Expired);
    }

    #[test]
    fn an_older_reading_never_moves_the_clock_back() {
        let mut c = IdleClock::new(5_000, 1_000);
        c.heard(4_000);
        assert_eq!(c.check(5_500), Idle::CheckIn(500));
        assert_eq!(c.limit_ms(), 1_000);
    }
}
