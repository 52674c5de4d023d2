//! An isolate's cache of the routing document: whether the cached one is fresh, which request
//! refreshes it, which read's result stands, and what stays in force when a read fails.
//!
//! When the document goes stale, the first request to notice claims the refresh
//! ([`Poll::Refresh`]) and reads KV; requests arriving meanwhile keep using the document they
//! have. (They cannot wait for that read instead: the Workers runtime cancels a request that
//! waits on another request's I/O as hung.) So on a cold isolate, with nothing to keep using,
//! every request refreshes until the first read lands. Reads are numbered, and an older read
//! landing after a newer one is ignored. A read that fails, or finds an invalid document,
//! leaves the last good document (or the defaults) in force and reports the problem; a missing
//! key means the defaults.
//!
//! Time comes in as an argument and the read's result as a plain value: this module does no
//! I/O and reads no clock. Reading KV, logging and `/healthz` are the shell's (`src/kv.rs`).

use std::fmt;
use std::rc::Rc;

use serde::Serialize;

use crate::request::routing::RoutingDoc;

/// Where the document in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The `routing` key in KV.
    Kv,
    /// The BLUE_MODEL / GREEN_MODEL / GREEN_PERCENT vars (no document in KV).
    Defaults,
    /// The rollout controller's split, asked for because KV could not be read while the vars
    /// were all this isolate had (after a promotion they name the demoted model).
    Controller,
}

/// The document in force and what is known about the one in KV. The document is a route's
/// split ([`RoutingDoc`], the default) or the route table made from the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct InForce<D = RoutingDoc> {
    /// The document the request path obeys.
    pub doc: Rc<D>,
    /// Where `doc` came from.
    pub source: Source,
    /// Why the last read did not put KV's document in force; `None` when it did (or the key
    /// is absent).
    pub problem: Option<Rc<str>>,
}

/// A claimed refresh: the caller must read KV and hand the result to [`RoutingCache::land`].
/// Only [`RoutingCache::poll`] makes one, so reads are numbered in the order they started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// What a request does about the routing document.
#[derive(Debug, Clone, PartialEq)]
pub enum Poll<D = RoutingDoc> {
    /// Use this document: it is fresh, or another request is refreshing it.
    Use(InForce<D>),
    /// Read KV now, then [`RoutingCache::land`] the result with this ticket.
    Refresh(Ticket),
}

/// The outcome of a read, once it landed.
#[derive(Debug, Clone, PartialEq)]
pub struct Landed<D = RoutingDoc> {
    /// The document in force now: this read's, or a newer read's when this one was older.
    pub in_force: InForce<D>,
    /// The problem differs from the one before this read (new, different, or cleared): log it,
    /// so a broken document is logged once, not on every refresh.
    pub problem_changed: bool,
    /// The document in force differs from the one before this read: log the new split.
    pub doc_changed: bool,
}

#[derive(Debug, Clone)]
struct Cached<D> {
    in_force: InForce<D>,
    /// When the last read landed, or when a request claimed the refresh of a stale document.
    fetched_at_ms: u64,
}

/// The isolate's copy of a document in KV: one per route's routing document, and one of the
/// route registry, kept by the shell.
#[derive(Debug)]
pub struct RoutingCache<D = RoutingDoc> {
    cached: Option<Cached<D>>,
    /// Number of the last read started.
    started: u64,
    /// Number of the read whose result is in `cached`.
    landed: u64,
}

impl<D> Default for RoutingCache<D> {
    fn default() -> Self {
        RoutingCache {
            cached: None,
            started: 0,
            landed: 0,
        }
    }
}

impl<D: Clone + PartialEq> RoutingCache<D> {
    /// Called by every request that needs the split, at `now_ms`, with the cache time
    /// (`ROUTING_CACHE_SECONDS` in ms). A stale document is refreshed by the first request
    /// that notices: claiming the refresh stamps it fresh, so requests arriving meanwhile
    /// [`Poll::Use`] it. Without any document yet, every request must [`Poll::Refresh`].
    pub fn poll(&mut self, now_ms: u64, cache_ms: u64) -> Poll<D> {
        if let Some(cached) = self.cached.as_mut() {
            if now_ms.saturating_sub(cached.fetched_at_ms) < cache_ms {
                return Poll::Use(cached.in_force.clone());
            }
            cached.fetched_at_ms = now_ms;
        }
        self.started += 1;
        Poll::Refresh(Ticket(self.started))
    }

    /// Called when the read `ticket` claimed finishes at `now_ms`, with its result: the valid
    /// document, `Ok(None)` when the key is absent, or why it could not be read or used.
    /// `defaults` is the document from the vars. A read older than one that already landed
    /// changes nothing.
    pub fn land<E: fmt::Display>(
        &mut self,
        ticket: Ticket,
        read: Result<Option<D>, E>,
        now_ms: u64,
        defaults: &D,
    ) -> Landed<D> {
        self.land_with(ticket, now_ms, |current| resolve(read, current, defaults))
    }

    /// Whether a failed read should ask the controller for its split: the vars are all this
    /// isolate has (a cold isolate, or the defaults in force).
    pub fn wants_controller(&self) -> bool {
        self.cached
            .as_ref()
            .is_none_or(|c| c.in_force.source == Source::Defaults)
    }

    /// Called instead of [`RoutingCache::land`] when the read `ticket` claimed failed with
    /// `problem` and the controller answered with its split `doc`: that split is in force,
    /// with the problem still reported.
    pub fn land_from_controller<E: fmt::Display>(
        &mut self,
        ticket: Ticket,
        problem: E,
        doc: D,
        now_ms: u64,
    ) -> Landed<D> {
        self.land_with(ticket, now_ms, |_| InForce {
            doc: Rc::new(doc),
            source: Source::Controller,
            problem: Some(problem.to_string().into()),
        })
    }

    /// Puts what `resolve` makes of the document in force into the cache, unless a newer read
    /// already landed (then nothing changes).
    fn land_with(
        &mut self,
        ticket: Ticket,
        now_ms: u64,
        resolve: impl FnOnce(Option<&InForce<D>>) -> InForce<D>,
    ) -> Landed<D> {
        if ticket.0 < self.landed {
            if let Some(newer) = &self.cached {
                return Landed {
                    in_force: newer.in_force.clone(),
                    problem_changed: false,
                    doc_changed: false,
                };
            }
        }
        self.landed = ticket.0;
        let current = self.cached.take().map(|c| c.in_force);
        let in_force = resolve(current.as_ref());
        let landed = Landed {
            problem_changed: in_force.problem != current.as_ref().and_then(|c| c.problem.clone()),
            doc_changed: current.as_ref().is_none_or(|c| *c.doc != *in_force.doc),
            in_force: in_force.clone(),
        };
        self.cached = Some(Cached {
            in_force,
            fetched_at_ms: now_ms,
        });
        landed
    }
}

/// The document in force after `read`: KV's when valid, the defaults when the key is absent,
/// else the one in force before (or the defaults on a cold isolate) with the problem.
fn resolve<D: Clone, E: fmt::Display>(
    read: Result<Option<D>, E>,
    current: Option<&InForce<D>>,
    defaults: &D,
) -> InForce<D> {
    let from_defaults = || (Rc::new(defaults.clone()), Source::Defaults);
    let ((doc, source), problem) = match read {
        Ok(None) => (from_defaults(), None),
        Ok(Some(doc)) => ((Rc::new(doc), Source::Kv), None),
        Err(problem) => (
            current.map_or_else(from_defaults, |c| (c.doc.clone(), c.source)),
            Some(problem.to_string().into()),
        ),
    };
    InForce {
        doc,
        source,
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cache time in these timelines: 1 s.
    const CACHE_MS: u64 = 1000;

    fn doc(version: u64) -> RoutingDoc {
        RoutingDoc {
            blue_model: "b".into(),
            green_model: "g".into(),
            green_percent: version as f64,
            shadow_percent: 0.0,
            sticky: true,
            version,
            updated_at: None,
            judge: None,
        }
    }

    fn defaults() -> RoutingDoc {
        doc(0)
    }

    fn ticket(poll: Poll) -> Ticket {
        match poll {
            Poll::Refresh(t) => t,
            Poll::Use(d) => panic!("expected a refresh, got version {}", d.doc.version),
        }
    }

    /// The version a request would use, or `None` when it must refresh.
    fn used(cache: &mut RoutingCache, now: u64) -> Option<u64> {
        match cache.poll(now, CACHE_MS) {
            Poll::Use(d) => Some(d.doc.version),
            Poll::Refresh(_) => None,
        }
    }

    fn land_ok(cache: &mut RoutingCache, t: Ticket, version: u64, now: u64) -> Landed {
        cache.land(t, Ok::<_, &str>(Some(doc(version))), now, &defaults())
    }

    /// A cache holding version `version`, landed at `now`.
    fn warm(version: u64, now: u64) -> RoutingCache {
        let mut cache = RoutingCache::default();
        let t = ticket(cache.poll(now, CACHE_MS));
        land_ok(&mut cache, t, version, now);
        cache
    }

    #[test]
    fn a_document_is_fresh_within_the_cache_time() {
        // Landed at t = 10: fresh while now − 10 < 1 000, i.e. up to t = 1 009.
        let mut cache = warm(1, 10);
        assert_eq!(used(&mut cache, 10), Some(1));
        assert_eq!(used(&mut cache, 1_009), Some(1));
        // t = 1 010: 1 010 − 10 = 1 000 is not below the cache time: refresh.
        assert_eq!(used(&mut cache, 1_010), None);
    }

    #[test]
    fn the_first_request_after_expiry_refreshes_and_concurrent_ones_keep_the_old_doc() {
        let mut cache = warm(1, 0);
        // t = 1 000: stale; this request claims the refresh, stamping the document fresh.
        let t = ticket(cache.poll(1_000, CACHE_MS));
        // t = 1 001 … 1 999: requests arriving while the read is out keep version 1.
        assert_eq!(used(&mut cache, 1_001), Some(1));
        assert_eq!(used(&mut cache, 1_999), Some(1));
        // t = 1 050: the read lands version 2, fresh until 1 050 + 1 000 = 2 050.
        let landed = land_ok(&mut cache, t, 2, 1_050);
        assert_eq!(landed.in_force.doc.version, 2);
        assert_eq!((landed.doc_changed, landed.problem_changed), (true, false));
        assert_eq!(used(&mut cache, 2_049), Some(2));
        assert_eq!(used(&mut cache, 2_050), None);
    }

    #[test]
    fn a_cold_isolate_refreshes_on_every_request_until_a_read_lands() {
        let mut cache = RoutingCache::default();
        // t = 0, 1, 2: nothing to use, so each request reads KV itself.
        let tickets: Vec<Ticket> = (0..3).map(|t| ticket(cache.poll(t, CACHE_MS))).collect();
        // t = 20: the second read lands first; from then on requests use it.
        let landed = land_ok(&mut cache, tickets[1], 5, 20);
        assert_eq!(landed.in_force.source, Source::Kv);
        assert_eq!(used(&mut cache, 21), Some(5));
        // t = 30: the first read, older, lands late: ignored, nothing to log.
        let late = land_ok(&mut cache, tickets[0], 4, 30);
        assert_eq!(late.in_force.doc.version, 5);
        assert_eq!((late.doc_changed, late.problem_changed), (false, false));
        // t = 40: the third read, newer than the second, stands.
        assert_eq!(
            land_ok(&mut cache, tickets[2], 6, 40).in_force.doc.version,
            6
        );
        // Fresh from its landing: 40 + 999 still uses version 6.
        assert_eq!(used(&mut cache, 1_039), Some(6));
    }

    #[test]
    fn an_older_read_landing_after_a_newer_one_is_ignored() {
        // Cache time 0: every request refreshes, so two reads are out at once.
        let mut cache = warm(1, 0);
        let older = ticket(cache.poll(100, 0));
        let newer = ticket(cache.poll(100, 0));
        land_ok(&mut cache, newer, 3, 110);
        let late = cache.land(older, Err("KV timed out"), 120, &defaults());
        // Neither the older document nor its failure replaces the newer read.
        assert_eq!(late.in_force.doc.version, 3);
        assert_eq!(late.in_force.problem, None);
        assert_eq!(used(&mut cache, 121), Some(3));
        // Nor does its landing restamp the document: it stays fresh from the newer landing.
        let mut cache_1s = warm(1, 0);
        let older = ticket(cache_1s.poll(1_000, CACHE_MS));
        let newer = ticket(cache_1s.poll(2_000, CACHE_MS));
        land_ok(&mut cache_1s, newer, 3, 2_010);
        land_ok(&mut cache_1s, older, 2, 2_500);
        // Landed at 2 010: stale at 2 010 + 1 000 = 3 010, whatever landed late at 2 500.
        assert_eq!(used(&mut cache_1s, 3_009), Some(3));
        assert_eq!(used(&mut cache_1s, 3_010), None);
    }

    #[test]
    fn a_failed_or_invalid_read_keeps_the_last_good_doc_and_reports_the_problem_once() {
        let mut cache = warm(7, 0);
        // (landed at, read, in force, source, problem, problem_changed, doc_changed), each
        // read claimed as the cache expires (every 1 000 ms).
        let bad = "`green_percent` must be between 0 and 100";
        let down = "reading KV key `routing` failed";
        let steps = [
            // The first invalid document: the problem is new, version 7 stays.
            (1_000, Err(bad), 7, Source::Kv, Some(bad), true, false),
            // The same problem again: not logged again.
            (2_000, Err(bad), 7, Source::Kv, Some(bad), false, false),
            // A different problem (KV unreachable): logged.
            (3_000, Err(down), 7, Source::Kv, Some(down), true, false),
            // The good document again: the problem clears (logged), the split did not move.
            (4_000, Ok(Some(7)), 7, Source::Kv, None, true, false),
            // A new good version: the split changed.
            (5_000, Ok(Some(8)), 8, Source::Kv, None, false, true),
        ];
        for (at, read, version, source, problem, problem_changed, doc_changed) in steps {
            let t = ticket(cache.poll(at, CACHE_MS));
            let landed = cache.land(t, read.map(|r| r.map(doc)), at, &defaults());
            let got = &landed.in_force;
            assert_eq!(got.doc.version, version, "at {at}");
            assert_eq!(
                (got.source, got.problem.as_deref()),
                (source, problem),
                "at {at}"
            );
            assert_eq!(
                (landed.problem_changed, landed.doc_changed),
                (problem_changed, doc_changed),
                "at {at}"
            );
        }
    }

    #[test]
    fn a_cold_isolate_whose_read_fails_serves_the_defaults_with_the_problem() {
        let mut cache = RoutingCache::default();
        let t = ticket(cache.poll(0, CACHE_MS));
        let landed = cache.land(t, Err("not a valid routing document"), 5, &defaults());
        assert_eq!(*landed.in_force.doc, defaults());
        assert_eq!(landed.in_force.source, Source::Defaults);
        assert_eq!(
            landed.in_force.problem.as_deref(),
            Some("not a valid routing document")
        );
        assert_eq!((landed.problem_changed, landed.doc_changed), (true, true));
        // The defaults are cached like a document: fresh until 5 + 1 000.
        assert_eq!(used(&mut cache, 1_004), Some(0));
    }

    #[test]
    fn a_deleted_key_returns_to_the_defaults_and_clears_the_problem() {
        let mut cache = warm(3, 0);
        let t = ticket(cache.poll(1_000, CACHE_MS));
        cache.land(t, Err("invalid"), 1_000, &defaults());
        let t = ticket(cache.poll(2_000, CACHE_MS));
        let landed = cache.land(t, Ok::<_, &str>(None), 2_000, &defaults());
        let got = &landed.in_force;
        assert_eq!(
            (*got.doc == defaults(), got.source),
            (true, Source::Defaults)
        );
        assert_eq!(got.problem, None);
        assert_eq!((landed.problem_changed, landed.doc_changed), (true, true));
    }

    #[test]
    fn a_failed_read_asks_the_controller_only_while_the_vars_are_all_there_is() {
        let mut cache = RoutingCache::default();
        assert!(cache.wants_controller(), "a cold isolate");
        let t = ticket(cache.poll(0, CACHE_MS));
        let l = cache.land_from_controller(t, "KV unreachable", doc(9), 5);
        assert_eq!(l.in_force.source, Source::Controller);
        assert_eq!(l.in_force.doc.version, 9);
        assert_eq!(l.in_force.problem.as_deref(), Some("KV unreachable"));
        assert!(l.doc_changed && l.problem_changed);
        assert!(
            !cache.wants_controller(),
            "the controller's split is kept like KV's"
        );
        // KV answers again: its document replaces the controller's, the problem clears.
        let t = ticket(cache.poll(2000, CACHE_MS));
        let l = land_ok(&mut cache, t, 10, 2001);
        assert_eq!((l.in_force.source, l.in_force.problem), (Source::Kv, None));
        assert!(!cache.wants_controller());
        // The key is deleted: the vars again, and a later failed read may ask.
        let t = ticket(cache.poll(4000, CACHE_MS));
        cache.land(t, Ok::<_, &str>(None), 4001, &defaults());
        assert!(cache.wants_controller());
        // An older read that asked the controller lands after a newer one: ignored.
        let older = ticket(cache.poll(6000, CACHE_MS));
        let newer = ticket(cache.poll(7000, CACHE_MS));
        land_ok(&mut cache, newer, 11, 7001);
        let l = cache.land_from_controller(older, "slow", doc(3), 7002);
        assert_eq!(l.in_force.doc.version, 11);
        assert!(!l.doc_changed);
    }
}
