//! An isolate's outbox of stats batches for the rollout controller: what is gathered, which
//! request must schedule the flush, which batch a flush posts next, and which undelivered
//! batches are given up on.
//!
//! Outcomes gather in an [`Accumulator`]. The first request after a flush claims the next one
//! ([`Outbox::claim_flush`]); when that flush runs it seals what gathered into a pending batch
//! ([`Outbox::seal`]) and posts pending batches oldest first ([`Outbox::claim`]), each kept
//! until the controller acknowledges it ([`Outbox::ack`]). A batch whose post failed is
//! released for the next flush ([`Outbox::release`]); one whose flush was cancelled mid-post
//! (its `waitUntil` ran out) becomes claimable again after [`CLAIM_TTL_MS`].
//!
//! Time comes in as an argument and batch ids from the caller: this module does no I/O, reads
//! no clock and draws no random numbers. Waiting, posting and logging are the shell's
//! (`src/recorder.rs`).

use std::rc::Rc;

use crate::isolate::batch::Accumulator;
use crate::judge::losses::Loss;
use crate::request::outcome::Outcome;
use crate::shadow::ShadowEnd;
use crate::stats::judged::JudgedCounts;
use crate::stats::{BatchEntry, Prices};

/// How long records gather before a flush seals them, by default (`STATS_FLUSH_SECONDS`): an
/// isolate sends a route's controller (or the stats queue) one batch per this much time.
pub const DEFAULT_FLUSH_SECONDS: u64 = 1;
/// Longest `STATS_FLUSH_SECONDS`: the flush waits inside a request's `waitUntil`, which the
/// runtime may end 30 s after the response, so the wait must leave the posts most of that. A
/// flush cut off loses nothing: its claim, and a batch it was posting, expire and are taken
/// again ([`CLAIM_TTL_MS`]).
pub const MAX_FLUSH_SECONDS: u64 = 10;
/// A flush starts no new post after this long, leaving the rest for the next flush.
pub const FLUSH_BUDGET_MS: u64 = 20_000;
/// A batch claimed by a flush that was cancelled (its `waitUntil` ran out) may be claimed
/// again after this long.
pub const CLAIM_TTL_MS: u64 = 30_000;
/// Undelivered batches older than this are dropped: the controller remembers batch ids for an
/// hour, so an older batch could be counted twice if it had in fact landed.
pub const MAX_AGE_MS: u64 = 50 * 60_000;
/// Undelivered batches kept per isolate; beyond this the oldest are dropped.
pub const MAX_PENDING: usize = 600;

/// True while a flush that started at `started_ms` may still start a post at `now_ms`
/// (within [`FLUSH_BUDGET_MS`]).
pub fn within_budget(started_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(started_ms) < FLUSH_BUDGET_MS
}

/// A batch not yet acknowledged by the controller. It stays in the outbox until it is, so a
/// flush that is cancelled mid-post loses nothing: the batch is posted again later.
#[derive(Debug)]
struct Pending {
    id: String,
    requests: u64,
    json: Rc<str>,
    created_ms: u64,
    /// When a flush claimed it for posting; `None` while nobody is posting it.
    claimed_ms: Option<u64>,
}

/// A batch a flush must post now.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The batch id: posted again under the same id, the controller counts it once.
    pub id: String,
    /// Requests the batch counts (for the log when it is not delivered).
    pub requests: u64,
    /// The body to post, identical on every attempt.
    pub json: Rc<str>,
}

/// Requests whose stats [`Outbox::seal`] gave up on, by reason; 0 when none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// In batches undelivered for longer than [`MAX_AGE_MS`].
    pub too_old: u64,
    /// In the oldest batches beyond [`MAX_PENDING`].
    pub too_many: u64,
}

/// The isolate's stats on their way to the controller. One per isolate, kept by the shell.
#[derive(Debug, Default)]
pub struct Outbox {
    acc: Accumulator,
    /// When a request claimed the next flush, while it has not sealed yet.
    flush_claimed: Option<u64>,
    /// Oldest first.
    pending: Vec<Pending>,
}

impl Outbox {
    /// Adds one request's outcome to the next batch. Called on every proxied request.
    pub fn add(&mut self, outcome: &Outcome, prices: &Prices) {
        self.acc.add(outcome, prices);
    }

    /// Adds a stats entry made elsewhere (a refused feedback score's) to the next batch.
    pub fn add_entry(&mut self, entry: &BatchEntry) {
        self.acc.add_entry(entry);
    }

    /// Adds a pair the grader judged (its one verdict and the grader's usage and cost, and
    /// the pair when green lost) under the request's `minute` and routing `version`.
    pub fn add_judged(
        &mut self,
        minute: u64,
        version: u64,
        judged: JudgedCounts,
        loss: Option<Loss>,
    ) {
        self.acc.add_judged(minute, version, judged, loss);
    }

    /// Adds a shadow copy's end (`None`: a request the cost bound kept from being copied),
    /// paired with blue's outcome on the same request, to the next batch.
    pub fn add_shadow(&mut self, green: Option<&ShadowEnd>, blue: &Outcome, prices: &Prices) {
        self.acc.add_shadow(green, blue, prices);
    }

    /// Called after [`Outbox::add`] at `now_ms`: `true` when this request must schedule the
    /// flush, which waits `flush_ms` before it seals (none is scheduled yet, or the one claimed
    /// never sealed within `flush_ms` + [`CLAIM_TTL_MS`]: its `waitUntil` was cut off while it
    /// waited), `false` when one already will carry its record.
    pub fn claim_flush(&mut self, now_ms: u64, flush_ms: u64) -> bool {
        let live = self
            .flush_claimed
            .is_some_and(|at| now_ms.saturating_sub(at) <= flush_ms.saturating_add(CLAIM_TTL_MS));
        if !live {
            self.flush_claimed = Some(now_ms);
        }
        !live
    }

    /// Called when a flush starts, `STATS_FLUSH_SECONDS` after it was claimed: turns what
    /// gathered into a pending batch named `id` created at `now_ms` (nothing when nothing
    /// gathered), lets the next record claim a new flush, and drops the batches too old or too
    /// many to keep. Returns what was dropped, for the log.
    pub fn seal(&mut self, now_ms: u64, id: String) -> Dropped {
        self.flush_claimed = None;
        if !self.acc.is_empty() {
            let batch = self.acc.take(id);
            // A batch is strings, integers and floats in plain structs; serde_json writes a
            // non-finite float as null, so serializing it to a string cannot fail.
            let json = serde_json::to_string(&batch).unwrap_or_default();
            self.pending.push(Pending {
                requests: batch.requests(),
                id: batch.id,
                json: json.into(),
                created_ms: now_ms,
                claimed_ms: None,
            });
        }
        let mut dropped = Dropped::default();
        self.pending.retain(|p| {
            let keep = now_ms.saturating_sub(p.created_ms) <= MAX_AGE_MS;
            if !keep {
                dropped.too_old += p.requests;
            }
            keep
        });
        let excess = self.pending.len().saturating_sub(MAX_PENDING);
        dropped.too_many = self
            .pending
            .drain(..excess)
            .map(|p| p.requests)
            .fold(0, u64::saturating_add);
        dropped
    }

    /// The oldest batch nobody is posting (or whose claim is older than [`CLAIM_TTL_MS`]),
    /// now claimed at `now_ms` by the caller, who must post it and then [`Outbox::ack`] or
    /// [`Outbox::release`] it. `None` when there is nothing to post.
    pub fn claim(&mut self, now_ms: u64) -> Option<Claimed> {
        let p = self.pending.iter_mut().find(|p| {
            p.claimed_ms
                .is_none_or(|c| now_ms.saturating_sub(c) > CLAIM_TTL_MS)
        })?;
        p.claimed_ms = Some(now_ms);
        Some(Claimed {
            id: p.id.clone(),
            requests: p.requests,
            json: p.json.clone(),
        })
    }

    /// The controller took batch `id` (or knew it already): it leaves the outbox. An id no
    /// longer pending (dropped meanwhile) is ignored.
    pub fn ack(&mut self, id: &str) {
        self.pending.retain(|p| p.id != id);
    }

    /// Posting batch `id` failed: any flush may claim it again at once.
    pub fn release(&mut self, id: &str) {
        if let Some(p) = self.pending.iter_mut().find(|p| p.id == id) {
            p.claimed_ms = None;
        }
    }

    /// Batches not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Requests counted here and not yet handed to the transport (gathered, or in a batch not
    /// yet acknowledged): what the isolate's eviction now would lose.
    pub fn undelivered_requests(&self) -> u64 {
        self.pending
            .iter()
            .map(|p| p.requests)
            .fold(self.acc.requests(), u64::saturating_add)
    }

    /// Nothing to deliver: no stats gathered, no batch pending, no flush claimed. Only then may
    /// the shell forget the outbox (a deleted route's).
    pub fn is_empty(&self) -> bool {
        self.acc.is_empty() && self.pending.is_empty() && self.flush_claimed.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::Environment;
    use crate::isolate::batch::Batch;
    use crate::request::outcome::StatusClass;
    use crate::request::split::Basis;

    fn outcome() -> Outcome {
        Outcome {
            request_id: "r".into(),
            at_ms: 120_500,
            route: "default".into(),
            api: crate::api::Api::Chat,
            environment: Environment::Blue,
            model: "blue-m".into(),
            basis: Basis::Random,
            routing_version: 0,
            stream: false,
            status: 200,
            class: StatusClass::Ok,
            fallback: None,
            first_byte_ms: Some(40),
            total_ms: 50,
            usage: None,
            interrupted: false,
            defect: None,
            vector_length: None,
            client_gone: false,
        }
    }

    /// An outbox after `requests` records were added and sealed at `now` as batch `id`.
    fn record_and_seal(outbox: &mut Outbox, requests: u64, now: u64, id: &str) -> Dropped {
        for _ in 0..requests {
            outbox.add(&outcome(), &Prices::default());
        }
        outbox.seal(now, id.into())
    }

    fn claimed_id(outbox: &mut Outbox, now: u64) -> Option<String> {
        outbox.claim(now).map(|c| c.id)
    }

    #[test]
    fn the_first_record_claims_the_flush_and_a_flush_seals_one_batch() {
        let mut outbox = Outbox::default();
        // Three records before the flush runs: only the first schedules it.
        let claims: Vec<bool> = (0..3)
            .map(|_| {
                outbox.add(&outcome(), &Prices::default());
                outbox.claim_flush(0, 1_000)
            })
            .collect();
        assert_eq!(claims, [true, false, false]);
        // t = 1 000: the flush seals all three into one batch.
        assert_eq!(outbox.seal(1_000, "a".into()), Dropped::default());
        assert_eq!(outbox.pending(), 1);
        // A second seal with nothing gathered makes no batch (its id is unused).
        outbox.seal(1_000, "unused".into());
        assert_eq!(outbox.pending(), 1);
        // After the seal the next record claims a new flush, and goes in the next batch.
        outbox.add(&outcome(), &Prices::default());
        assert!(outbox.claim_flush(1_000, 1_000));
        outbox.seal(2_000, "b".into());
        let a = outbox.claim(2_000).unwrap();
        let batch: Batch = serde_json::from_str(&a.json).unwrap();
        assert_eq!((a.id.as_str(), a.requests, batch.requests()), ("a", 3, 3));
        assert_eq!(outbox.claim(2_000).map(|c| c.requests), Some(1));
    }

    #[test]
    fn a_flush_cut_off_while_it_waited_is_claimed_again_after_its_wait_and_the_ttl() {
        let mut outbox = Outbox::default();
        outbox.add(&outcome(), &Prices::default());
        // t = 0: claimed, with a 10 s wait; its waitUntil is then cut off: it never seals.
        assert!(outbox.claim_flush(0, 10_000));
        // Up to 10 s + 30 s later it may still come: records ride on it.
        assert!(!outbox.claim_flush(40_000, 10_000));
        // Past that it never will: the next record claims a new flush, which carries both.
        assert!(outbox.claim_flush(40_001, 10_000));
        assert!(!outbox.claim_flush(40_002, 10_000));
        outbox.seal(50_001, "a".into());
        assert_eq!(outbox.claim(50_001).map(|c| c.requests), Some(1));
    }

    #[test]
    fn undelivered_requests_are_the_gathered_and_the_unacknowledged_ones() {
        let mut outbox = Outbox::default();
        assert_eq!(outbox.undelivered_requests(), 0);
        record_and_seal(&mut outbox, 3, 1_000, "a");
        outbox.add(&outcome(), &Prices::default());
        outbox.add(&outcome(), &Prices::default());
        // 3 in batch "a", 2 gathered since.
        assert_eq!(outbox.undelivered_requests(), 5);
        // Claimed but not acknowledged: still the isolate's to lose.
        assert_eq!(claimed_id(&mut outbox, 1_000).as_deref(), Some("a"));
        assert_eq!(outbox.undelivered_requests(), 5);
        outbox.ack("a");
        assert_eq!(outbox.undelivered_requests(), 2);
        outbox.seal(2_000, "b".into());
        outbox.ack("b");
        assert_eq!(outbox.undelivered_requests(), 0);
    }

    #[test]
    fn a_cancelled_flushs_claim_expires_after_30_s_and_the_batch_is_posted_again() {
        let mut outbox = Outbox::default();
        record_and_seal(&mut outbox, 2, 1_000, "a");
        // t = 1 000: a flush claims "a", then its waitUntil is cancelled: no ack, no release.
        assert_eq!(claimed_id(&mut outbox, 1_000).as_deref(), Some("a"));
        // t = 2 000: the next flush finds it claimed 1 s ago and posts nothing.
        assert_eq!(claimed_id(&mut outbox, 2_000), None);
        // t = 31 000: claimed 31 000 − 1 000 = 30 000 ms ago, not more than the TTL.
        assert_eq!(claimed_id(&mut outbox, 31_000), None);
        // t = 31 001: 30 001 ms > 30 000: claimable again, and delivered.
        assert_eq!(claimed_id(&mut outbox, 31_001).as_deref(), Some("a"));
        outbox.ack("a");
        assert_eq!(outbox.pending(), 0);
    }

    #[test]
    fn a_failed_post_leaves_the_batch_claimable_at_once() {
        let mut outbox = Outbox::default();
        record_and_seal(&mut outbox, 1, 0, "a");
        record_and_seal(&mut outbox, 1, 0, "b");
        assert_eq!(claimed_id(&mut outbox, 5_000).as_deref(), Some("a"));
        outbox.release("a");
        // Same instant: "a" again (oldest first), not "b", and not after a 30 s wait.
        assert_eq!(claimed_id(&mut outbox, 5_000).as_deref(), Some("a"));
        assert_eq!(outbox.pending(), 2);
        // Releasing an id that is gone changes nothing.
        outbox.release("gone");
        assert_eq!(claimed_id(&mut outbox, 5_000).as_deref(), Some("b"));
    }

    #[test]
    fn ack_removes_exactly_the_acknowledged_batch() {
        let mut outbox = Outbox::default();
        for id in ["a", "b", "c"] {
            record_and_seal(&mut outbox, 1, 0, id);
        }
        // Two concurrent flushes claim "a" and "b"; "b" is acknowledged first.
        assert_eq!(claimed_id(&mut outbox, 10).as_deref(), Some("a"));
        assert_eq!(claimed_id(&mut outbox, 10).as_deref(), Some("b"));
        outbox.ack("b");
        assert_eq!(outbox.pending(), 2);
        // "a" is still claimed, so "c" is next; an unknown id removes nothing.
        assert_eq!(claimed_id(&mut outbox, 10).as_deref(), Some("c"));
        outbox.ack("unknown");
        assert_eq!(outbox.pending(), 2);
        outbox.ack("a");
        outbox.ack("c");
        assert_eq!(outbox.pending(), 0);
    }

    #[test]
    fn a_batch_undelivered_for_more_than_50_minutes_is_dropped_and_counted() {
        let mut outbox = Outbox::default();
        // Sealed at t = 0 with 2 requests; sealed at t = 60 000 with 5.
        record_and_seal(&mut outbox, 2, 0, "old");
        record_and_seal(&mut outbox, 5, 60_000, "newer");
        // 50 min = 50 × 60 000 = 3 000 000 ms. At t = 3 000 000 "old" is exactly that old:
        // kept.
        assert_eq!(outbox.seal(3_000_000, "-".into()), Dropped::default());
        assert_eq!(outbox.pending(), 2);
        // At t = 3 000 001 it is 1 ms older than that: dropped, its 2 requests reported.
        let dropped = outbox.seal(3_000_001, "-".into());
        assert_eq!(
            dropped,
            Dropped {
                too_old: 2,
                too_many: 0
            }
        );
        assert_eq!(claimed_id(&mut outbox, 3_000_001).as_deref(), Some("newer"));
    }

    #[test]
    fn beyond_600_pending_the_oldest_is_dropped() {
        let mut outbox = Outbox::default();
        // Batches 0..=599, one request each, sealed a millisecond apart: 600 kept.
        for i in 0..600 {
            assert_eq!(
                record_and_seal(&mut outbox, 1, i, &i.to_string()),
                Dropped::default()
            );
        }
        // The 601st (3 requests) makes 601 > 600: batch "0", the oldest, goes (1 request).
        let dropped = record_and_seal(&mut outbox, 3, 600, "600");
        assert_eq!(
            dropped,
            Dropped {
                too_old: 0,
                too_many: 1
            }
        );
        assert_eq!(outbox.pending(), MAX_PENDING);
        assert_eq!(claimed_id(&mut outbox, 600).as_deref(), Some("1"));
    }

    #[test]
    fn a_flush_starts_posts_for_20_s() {
        // (flush started, now, may start a post): 20 000 ms after the start it may not.
        for (started, now, ok) in [
            (1_000, 1_000, true),
            (1_000, 20_999, true),
            (1_000, 21_000, false),
            (1_000, 500, true),
        ] {
            assert_eq!(within_budget(started, now), ok, "{started} {now}");
        }
    }
}
