//! The shadow step: green judged on copies of blue's requests, with no user served by green.
//!
//! On a shadow step the routing document carries `shadow_percent`: that share of the requests
//! routed to blue (not forced) is also sent to green in the background, its answer read to the
//! end with the live path's classification (status class, time, defects) and discarded. Each
//! copy is **paired** with blue's outcome on the same request, and a tick judges the copies as
//! a live step's green requests, against all of blue's requests of the step (with the copies
//! alone, pairs from an earlier step, against the pairs' blue answers): given a failure, it is
//! green's with probability `ρw / (ρw + 1 − w)` at green's share `w` of the requests, for
//! green's failure rate `ρ` times blue's. Latency is judged as in a live step (green's copies
//! against blue's requests slower than the reference), which needs no pairing.
//!
//! **Failures both sides share** (a prompt no model can answer, a provider outage) say nothing
//! about green, and taking them out sharpens the test; but how many may be taken out of each
//! side is bounded. With `c` copies, `n` blue requests, blue failing at `b`, green at `g`, both
//! at `s` on a pair, take `S` shared failures out of green's count with weight `α` and out of
//! blue's with weight `β`. Green's count is Poisson with mean `c(g − αs)`, blue's `nb − βcs`
//! (small rates, as the live test), and the relative test's ratio for `ρ₁` against `τ` is a
//! supermartingale exactly when green's mean is at most `τ·(c/n)` times blue's (its expected
//! factor is `exp(λ_g(rq − 1) + λ_b(q − 1))`, `r = ρ₁/τ`, `q` the factor of a failure, and that
//! is ≤ 1 iff `λ_g/λ_b ≤ τw/(1 − w)`). Under the null `g ≤ τb` that holds for every `s` iff
//! `αn ≥ τβc`; the clearly-fine test (null `g ≥ τb`) needs `αn ≤ τβc`. Taking shared failures
//! out of both sides (`α = β = 1`) therefore breaks the rollback test when `τc > n` (a shadow
//! share above 100/τ, and always for pairs alone, `c = n`: blue 5%, green 6%, 4.5% shared
//! drifts upward by 0.0017 a pair at τ = 1.2), and the clearly-fine test when `τc < n`. So:
//!
//! - the rollback tests (errors, defects) take every shared failure out of green's count
//!   (`α = 1`) and `⌊S·min(1, n/(τc))⌋` out of blue's (`β ≤ n/(τc)`, rounded towards blue's
//!   count): `αn ≥ τβc` always, so they keep their level at any shadow share, and at a share
//!   above 100/τ or for pairs alone they are exact (`αn = τβc`) up to the rounding; a
//!   fractional count left on blue's side only lowers the ratio (`x^a − 1 ≤ a(x − 1)`);
//! - the clearly-fine test keeps every shared failure on both sides (`α = β = 0`), which is
//!   valid at any share ([`ShadowStratum::fine_errors`]).
//!
//! Answer defects are judged the same way among the answers read whole (`c`, `n` the answers).
//!
//! This module decides which requests are copied ([`shadowed`]), bounds how many per route and
//! isolate ([`Rate`]) and at once per isolate ([`Budget`]), says when a copy must give up before the runtime cancels it ([`look`]),
//! counts the pairs ([`ShadowStats`]), keeps the controller's shadow windows ([`ShadowScope`])
//! and turns a tick's pairs into the sequential test's counts ([`ShadowStratum::counts`]). It
//! sends nothing and reads no clock: the shell (`src/proxy/shadow.rs`) does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::defects::Defect;
use crate::environment::Environment;
use crate::request::outcome::{Outcome, StatusClass};
use crate::request::split::{green_buckets, random_bucket, Basis, Selection};
use crate::stats::{EnvStats, ErrorClass, Prices, Summary};
use crate::util::rate::TokenBucket;
use crate::verdict::health::HealthPolicy;
use crate::verdict::sequential::TickCounts;

/// Most routing versions a shadow window keeps apart, as the live windows do (the windows
/// module's bound; not imported from it, which imports this one).
pub const MAX_VERSIONS: usize = 16;

/// How long after blue's answer ended a copy may still run: the Workers runtime cancels a
/// request's `waitUntil` work 30 s after its response is done, and the pair still has to be
/// recorded and its batch posted.
pub const BACKGROUND_GRACE_MS: u64 = 25_000;
/// How often a copy looks whether blue's answer has ended, while it has not.
pub const LOOK_EVERY_MS: u64 = 5_000;

/// Whether the request `selection` sent to blue is also sent to green, for a document's
/// `shadow_percent` and a random `draw` of the shell's (not the split's draw: a request's
/// bucket already says it is blue's). Forced requests are never copied, nor follow-ups of a
/// conversation blue holds (green cannot continue a response it did not make).
pub fn shadowed(shadow_percent: f64, selection: Selection, draw: u64) -> bool {
    selection.environment == Environment::Blue
        && !matches!(selection.basis, Basis::Forced | Basis::Conversation)
        && random_bucket(draw) < green_buckets(shadow_percent)
}

/// Most copies one isolate runs at once: each holds its request's body until it is sent and a
/// stream's relay state while it is read (up to about 2 MiB together at the body bound below),
/// so 16 keep the copies under a quarter of an isolate's 128 MB whatever green does.
pub const MAX_IN_FLIGHT: u32 = 16;
/// Largest request body copied (1 MiB): a larger one is not copied and counts as `capped`.
pub const MAX_COPY_BODY_BYTES: usize = 1 << 20;

/// How long a copy's place may be held before it is taken to be lost and reused: the runtime
/// may cancel a request's background work (at its limit, or when the isolate is torn down)
/// without running the copy's end, and the place would otherwise never come back. A copy runs
/// at most as long as blue's answer plus [`BACKGROUND_GRACE_MS`]; a blue answer longer than
/// this (a stream of over ten minutes) lets one more copy start beside it, which is harmless.
pub const STALE_MS: u64 = 10 * 60_000;

/// A copy's place in the [`Budget`], handed back with [`Budget::finished`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    place: usize,
    serial: u64,
}

/// A route's rate of copies in one isolate, its cost bound: a token bucket that starts copies
/// at `max_per_minute` a minute on average (`SHADOW_MAX_PER_MINUTE`) and holds at most a
/// minute's worth, so that under steady overload the copies are spread evenly over the minute
/// (a sample of the requests in time, not the first of each minute). Each route has its own,
/// so one route's shadow step never spends another's copies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate(TokenBucket);

/// The isolate's places for running copies, its memory bound: at most [`MAX_IN_FLIGHT`]
/// copies at once over every route, none of a body above [`MAX_COPY_BODY_BYTES`], each
/// started only when its route's [`Rate`] allows. The others are skipped and counted as
/// `capped`. A place held longer than [`STALE_MS`] is reused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// The copies running: each place's ticket serial (0: free) and when it was taken.
    places: [(u64, u64); MAX_IN_FLIGHT as usize],
    /// The last ticket's serial.
    serial: u64,
}

impl Budget {
    /// Takes one copy's place at `now_ms` for a body of `body_bytes`, and a copy from its
    /// route's `rate`; `None` when it must not be copied. A place taken must be handed back
    /// with [`Self::finished`].
    pub fn take(
        &mut self,
        rate: &mut Rate,
        now_ms: u64,
        max_per_minute: u32,
        body_bytes: usize,
    ) -> Option<Ticket> {
        self.reclaim(now_ms);
        let place = self.places.iter().position(|&(serial, _)| serial == 0)?;
        // A minute's worth at most, refilled at max_per_minute per 60 000 ms.
        if body_bytes > MAX_COPY_BODY_BYTES || !rate.0.take(now_ms, max_per_minute, max_per_minute)
        {
            return None;
        }
        self.serial += 1;
        self.places[place] = (self.serial, now_ms);
        Some(Ticket {
            place,
            serial: self.serial,
        })
    }

    /// Frees the places held since [`STALE_MS`] before `now_ms` or longer (copies the runtime
    /// cancelled without their end); how many.
    pub fn reclaim(&mut self, now_ms: u64) -> usize {
        let mut freed = 0;
        for p in self.places.iter_mut() {
            if p.0 != 0 && now_ms.saturating_sub(p.1) >= STALE_MS {
                *p = (0, 0);
                freed += 1;
            }
        }
        freed
    }

    /// The copy holding `ticket` ended (or was given up). A place already reused after being
    /// reclaimed stays with its new copy.
    pub fn finished(&mut self, ticket: Ticket) {
        if let Some(p) = self.places.get_mut(ticket.place) {
            if p.0 == ticket.serial {
                *p = (0, 0);
            }
        }
    }

    /// How many copies hold a place.
    pub fn in_flight(&self) -> usize {
        self.places
            .iter()
            .filter(|&&(serial, _)| serial != 0)
            .count()
    }
}

/// What a copy waiting on green does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// Keep waiting, and look again after this many ms at the latest.
    WaitMs(u64),
    /// Give up: the runtime would soon cancel it. The copy is judged as far as it got
    /// ([`given_up`]) and counts as `unfinished`.
    GiveUp,
}

/// When a copy must give up, at `now_ms`, blue's answer having ended at `blue_done_ms` (if it
/// has): [`BACKGROUND_GRACE_MS`] after it. While blue's answer runs, the request is alive and
/// the copy may wait; it looks again every [`LOOK_EVERY_MS`].
pub fn look(now_ms: u64, blue_done_ms: Option<u64>) -> Look {
    match blue_done_ms {
        None => Look::WaitMs(LOOK_EVERY_MS),
        Some(done) => {
            let at = done.saturating_add(BACKGROUND_GRACE_MS);
            if now_ms >= at {
                Look::GiveUp
            } else {
                Look::WaitMs(at - now_ms)
            }
        }
    }
}

/// How a copy ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ShadowEnd {
    /// Green answered (or failed) before the limit: its outcome, built as the live path builds
    /// a request's.
    Finished(Outcome),
    /// Still running [`BACKGROUND_GRACE_MS`] after blue's answer ended: given up, and judged
    /// as far as it got, as [`given_up`] built it.
    GivenUp(Outcome),
    /// Not sent (a body that does not parse; it did on the request path, so never): not judged.
    Unfinished,
}

/// Green's outcome for a copy given up at `now_ms`, from the record `partial` as the copy had
/// it (`at_ms` when it was sent) and whether green's response headers had come. Without them
/// green did not answer where blue did: a timeout, an error of the pair (blue's side is
/// whatever blue's answer was). With them the answer was still coming: slow (its time so far
/// counts against the latency reference), but not read whole, so neither an error nor an
/// answer judged for defects (marked as a reader gone, the way the live path marks a client
/// that stopped reading). Either way a green that hangs is seen, not dropped.
pub fn given_up(mut partial: Outcome, headers: bool, now_ms: u64) -> Outcome {
    partial.total_ms = now_ms.saturating_sub(partial.at_ms);
    partial.interrupted = false;
    partial.defect = None;
    partial.usage = None;
    if headers {
        partial.client_gone = true;
    } else {
        partial.class = StatusClass::Timeout;
        partial.status = 504;
        partial.first_byte_ms = None;
    }
    partial
}

/// Largest share of a shadow step's copies that may be given up while the step still advances.
/// A copy given up after green's headers counts as slow, but whether its answer would have
/// failed or had a defect is unknown: 1% unknown is under the failure rates the relative test
/// tells apart at its alternatives (2× of blue's at τ), for blues failing 0.5% of requests or
/// more, and a step with more waits for a live step's judgement instead of passing blind.
pub const MAX_UNFINISHED_SHARE: f64 = 0.01;

/// The pairs' joint counts: what the paired test reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PairCounts {
    /// Copies that finished, paired with blue's outcome on the same request.
    pub pairs: u64,
    /// Pairs where green failed and blue did not.
    pub green_only_errors: u64,
    /// Pairs where blue failed and green did not.
    pub blue_only_errors: u64,
    /// Pairs where both failed: no evidence about green.
    pub both_errors: u64,
    /// Pairs both sides answered whole: what defects and latency are compared on.
    pub answered: u64,
    /// Among `answered`, pairs by (green's defect, blue's defect) as `"green/blue"`, `none` for
    /// no defect; only pairs with a defect on some side. At most 48 keys.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub defects: BTreeMap<String, u64>,
}

/// Whether an outcome is an upstream failure.
fn failed(o: &Outcome) -> bool {
    ErrorClass::of(o.class, o.interrupted).is_some()
}

/// Whether an outcome is an answer read whole (as `EnvStats::answers` counts them).
fn whole(o: &Outcome) -> bool {
    o.class == StatusClass::Ok && !o.interrupted && !o.client_gone && o.fallback.is_none()
}

fn defect_name(d: Option<Defect>) -> &'static str {
    d.map_or("none", Defect::name)
}

fn add(slot: &mut u64, n: u64) {
    *slot = slot.saturating_add(n);
}

impl PairCounts {
    /// Counts one pair: green's copy and blue's answer to the same request.
    pub fn record(&mut self, green: &Outcome, blue: &Outcome) {
        add(&mut self.pairs, 1);
        match (failed(green), failed(blue)) {
            (true, false) => add(&mut self.green_only_errors, 1),
            (false, true) => add(&mut self.blue_only_errors, 1),
            (true, true) => add(&mut self.both_errors, 1),
            (false, false) => {}
        }
        if !(whole(green) && whole(blue)) {
            return;
        }
        add(&mut self.answered, 1);
        if green.defect.is_some() || blue.defect.is_some() {
            let key = format!("{}/{}", defect_name(green.defect), defect_name(blue.defect));
            add(self.defects.entry(key).or_default(), 1);
        }
    }

    /// Adds `o` into this.
    pub fn merge(&mut self, o: &PairCounts) {
        add(&mut self.pairs, o.pairs);
        add(&mut self.green_only_errors, o.green_only_errors);
        add(&mut self.blue_only_errors, o.blue_only_errors);
        add(&mut self.both_errors, o.both_errors);
        add(&mut self.answered, o.answered);
        for (k, n) in &o.defects {
            add(self.defects.entry(k.clone()).or_default(), *n);
        }
    }

    /// Among the pairs both answered whole, those where (green's answer, blue's answer, both)
    /// had a defect the policy judges, the other side none it judges (or, for both, one each).
    /// Keys that name no class (written by a later version) count as no defect.
    pub fn defect_pairs(&self, ignored: &[Defect]) -> (u64, u64, u64) {
        let judged = |name: &str| Defect::parse(name).is_some_and(|d| !ignored.contains(&d));
        let (mut green, mut blue, mut both) = (0u64, 0u64, 0u64);
        for (key, n) in &self.defects {
            let (g, b) = key.split_once('/').unwrap_or((key, "none"));
            match (judged(g), judged(b)) {
                (true, false) => add(&mut green, *n),
                (false, true) => add(&mut blue, *n),
                (true, true) => add(&mut both, *n),
                (false, false) => {}
            }
        }
        (green, blue, both)
    }
}

/// Shadow figures over some span: green's copies, blue's answers they were paired with, the
/// pairs' joint counts, and the copies not judged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShadowStats {
    /// Green's copies that finished: errors, latency, defects, tokens and cost.
    pub green: EnvStats,
    /// Blue's outcomes on the same requests.
    pub blue: EnvStats,
    /// The pairs' joint counts.
    pub pairs: PairCounts,
    /// Copies given up [`BACKGROUND_GRACE_MS`] after blue's answer ended (each also a pair,
    /// judged as far as it got: [`given_up`]).
    pub unfinished: u64,
    /// Requests drawn for a copy but not copied: the isolate's `SHADOW_MAX_PER_MINUTE` was
    /// spent, [`MAX_IN_FLIGHT`] copies were running, or the body was above
    /// [`MAX_COPY_BODY_BYTES`].
    pub capped: u64,
}

impl ShadowStats {
    /// Counts one copy's end, paired with blue's outcome on the same request.
    pub fn record(&mut self, green: &ShadowEnd, blue: &Outcome, prices: &Prices) {
        match green {
            ShadowEnd::Finished(g) => {
                self.green.record(g, prices);
                self.blue.record(blue, prices);
                self.pairs.record(g, blue);
            }
            ShadowEnd::GivenUp(g) => {
                self.record(&ShadowEnd::Finished(g.clone()), blue, prices);
                add(&mut self.unfinished, 1);
            }
            ShadowEnd::Unfinished => add(&mut self.unfinished, 1),
        }
    }

    /// Counts a request not copied for the cost bound.
    pub fn record_capped(&mut self) {
        add(&mut self.capped, 1);
    }

    /// Adds `o` into this.
    pub fn merge(&mut self, o: &ShadowStats) {
        self.green.merge(&o.green);
        self.blue.merge(&o.blue);
        self.pairs.merge(&o.pairs);
        add(&mut self.unfinished, o.unfinished);
        add(&mut self.capped, o.capped);
    }

    /// The reason a shadow step must not advance yet, when more than [`MAX_UNFINISHED_SHARE`]
    /// of these copies were given up.
    pub fn too_many_unfinished(&self) -> Option<String> {
        let copies = self.pairs.pairs.max(self.unfinished);
        (self.unfinished as f64 > MAX_UNFINISHED_SHARE * copies as f64).then(|| {
            format!(
                "shadow step held: {} of its {} copies were given up unfinished (more than {}%): green's answers to them are not known",
                self.unfinished,
                copies,
                MAX_UNFINISHED_SHARE * 100.0
            )
        })
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.pairs.pairs == 0 && self.unfinished == 0 && self.capped == 0
    }

    /// What the status shows.
    pub fn summary(&self) -> ShadowSummary {
        let p = &self.pairs;
        ShadowSummary {
            pairs: p.pairs,
            green_only_errors: p.green_only_errors,
            blue_only_errors: p.blue_only_errors,
            both_errors: p.both_errors,
            answered: p.answered,
            defect_pairs: p.defects.clone(),
            unfinished: self.unfinished,
            capped: self.capped,
            green: self.green.summary(),
            blue: self.blue.summary(),
        }
    }
}

/// One minute's shadow figures, as an isolate sends them in its stats batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowEntry {
    /// Unix minute (ms / 60 000) blue's requests arrived in.
    pub minute: u64,
    /// The routing document version they were routed under.
    pub version: u64,
    pub stats: ShadowStats,
}

/// The shadow figures `/admin/status` shows for a span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowSummary {
    pub pairs: u64,
    pub green_only_errors: u64,
    pub blue_only_errors: u64,
    pub both_errors: u64,
    pub answered: u64,
    pub defect_pairs: BTreeMap<String, u64>,
    pub unfinished: u64,
    pub capped: u64,
    /// Green's copies.
    pub green: Summary,
    /// Blue's answers they were paired with.
    pub blue: Summary,
}

/// The controller's shadow windows. Stored with the other windows (serde default: windows
/// stored before shadow steps load with these empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShadowScope {
    /// Since the last tick, routed under the current step's splits.
    pub window: ShadowStats,
    /// The same, by the routing version the requests were routed under: each version's copies
    /// are joined with blue's requests of that version (a pause and resume within a tick, or
    /// an isolate on an older document, would otherwise join them with another share's). At
    /// most [`MAX_VERSIONS`], the oldest merged into the next. Absent in windows stored before:
    /// `window` is then judged as the latest version's.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_version: BTreeMap<u64, ShadowStats>,
    /// Since the last tick, routed under an earlier step's split (a late batch): evidence for
    /// the rollout, not the step's.
    pub earlier: ShadowStats,
    /// Since the current step began.
    pub step: ShadowStats,
    /// Since the current rollout began.
    pub rollout: ShadowStats,
}

impl ShadowScope {
    /// Adds an isolate's shadow figures; `in_step` when they were routed under the current
    /// step's split.
    pub fn add(&mut self, stats: &ShadowStats, in_step: bool, version: u64) {
        self.rollout.merge(stats);
        if in_step {
            self.step.merge(stats);
            self.window.merge(stats);
            self.by_version.entry(version).or_default().merge(stats);
            if self.by_version.len() > MAX_VERSIONS {
                let oldest = self.by_version.pop_first().map(|(_, s)| s);
                if let (Some(oldest), Some(mut next)) = (oldest, self.by_version.first_entry()) {
                    next.get_mut().merge(&oldest);
                }
            }
        } else {
            self.earlier.merge(stats);
        }
    }

    /// A verdict spent the window: the next tick judges new copies only.
    pub fn restart_window(&mut self) {
        self.window = ShadowStats::default();
        self.by_version.clear();
        self.earlier = ShadowStats::default();
    }

    /// A new step: its window and its figures restart; the rollout's go on.
    pub fn restart_step(&mut self) {
        self.restart_window();
        self.step = ShadowStats::default();
    }

    /// The pairs a tick judges: the step's, then any earlier step's.
    pub fn strata(&self) -> Vec<ShadowStratum> {
        let step: Vec<(Option<u64>, &ShadowStats)> = if self.by_version.is_empty() {
            vec![(None, &self.window)]
        } else {
            self.by_version.iter().map(|(v, s)| (Some(*v), s)).collect()
        };
        let mut held = self.step.too_many_unfinished();
        let mut failed = self.step.green.mixed_lengths();
        let mut out: Vec<ShadowStratum> = step
            .into_iter()
            .filter(|(_, s)| s.pairs.pairs > 0)
            .map(|(version, s)| ShadowStratum {
                stats: s.clone(),
                in_step: true,
                step_held: held.take(),
                step_failed: failed.take(),
                version,
            })
            .collect();
        if self.earlier.pairs.pairs > 0 {
            out.push(ShadowStratum {
                stats: self.earlier.clone(),
                in_step: false,
                step_held: None,
                step_failed: None,
                version: None,
            });
        }
        out
    }
}

/// A tick's copies and pairs routed under one step's split.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShadowStratum {
    pub stats: ShadowStats,
    /// Whether they are the current step's (they count towards its `min_requests`).
    pub in_step: bool,
    /// On the step's (first) stratum: why the step may not advance (too many of its copies
    /// given up).
    pub step_held: Option<String>,
    /// On the step's (first) stratum: why green fails whatever the counts say (its embeddings
    /// answers over the step came in more than one vector length).
    pub step_failed: Option<String>,
    /// The routing version they were routed under, when known (the step's, kept by version).
    pub version: Option<u64>,
}

/// How many of the `both` failures both sides shared come out of blue's count, for `copies`
/// of green judged against `blue` requests of blue at tolerance `tau`: all of them while
/// `tau · copies ≤ blue`, else `⌊both · blue / (tau · copies)⌋` (the module doc says why).
pub fn shared_off_blue(both: u64, copies: u64, blue: u64, tau: f64) -> u64 {
    if copies == 0 {
        return both;
    }
    // `min` keeps 1 for a NaN ratio; the cast saturates and the last `min` keeps it ≤ both.
    let keep = (blue as f64 / (tau * copies as f64)).min(1.0);
    ((both as f64 * keep).floor() as u64).min(both)
}

impl ShadowStratum {
    /// The sequential test's counts for these copies. With `blue`, the tick's requests of blue
    /// under the same split (every copy's blue answer among them): green's copies against
    /// them, as in a live step at green's share `pairs / (pairs + blue requests)`. Without (no
    /// blue requests of that split in the tick): the pairs alone, one request of each side, so
    /// green's share is exactly 1/2. Either way the failures (defects) both sides shared are
    /// taken out of green's count, and as many of them out of blue's as keeps the test's level
    /// ([`shared_off_blue`], the module doc says why); latency against `reference_ms` as in a
    /// live step. The guard sees green's failures where blue answered; `min_requests` counts
    /// pairs.
    pub fn counts(
        &self,
        blue: Option<&EnvStats>,
        reference_ms: Option<u64>,
        health: &HealthPolicy,
    ) -> TickCounts {
        let p = &self.stats.pairs;
        let copies = &self.stats.green;
        let tau = health.tolerance_ratio;
        let (green_defects, blue_defects, both_defects) = p.defect_pairs(&health.ignore_defects);
        let paired = TickCounts {
            green_requests: p.pairs,
            blue_requests: p.pairs,
            green_errors: p.green_only_errors,
            blue_errors: p.blue_only_errors.saturating_add(
                p.both_errors - shared_off_blue(p.both_errors, p.pairs, p.pairs, tau),
            ),
            green_defects,
            blue_defects: blue_defects.saturating_add(
                both_defects - shared_off_blue(both_defects, p.answered, p.answered, tau),
            ),
            green_answers: p.answered,
            blue_answers: p.answered,
            ..TickCounts::default()
        };
        let Some(blue) = blue.filter(|b| b.requests > 0) else {
            return paired;
        };
        let slow = |s: &EnvStats| reference_ms.map_or(0, |ms| s.total.count_above(ms));
        let errors_off = shared_off_blue(p.both_errors, p.pairs, blue.requests, tau);
        let defects_off = shared_off_blue(both_defects, copies.answers, blue.answers, tau);
        TickCounts {
            blue_requests: blue.requests,
            blue_errors: blue.errors().saturating_sub(errors_off),
            green_slow: slow(copies),
            blue_slow: slow(blue),
            green_defects: health.judged_defects(copies).saturating_sub(both_defects),
            blue_defects: health.judged_defects(blue).saturating_sub(defects_off),
            green_answers: copies.answers,
            blue_answers: blue.answers,
            ..paired
        }
    }

    /// Green's and blue's errors for the clearly-fine test, with the same `blue` as
    /// [`Self::counts`]: every failure of each side, shared ones included (taking them out of
    /// both would let a green that is not fine advance early whenever the shadow share is below
    /// 100/τ: the module doc).
    pub fn fine_errors(&self, blue: Option<&EnvStats>) -> (u64, u64) {
        let p = &self.stats.pairs;
        let green = p.green_only_errors.saturating_add(p.both_errors);
        match blue.filter(|b| b.requests > 0) {
            Some(b) => (green, b.errors()),
            None => (green, p.blue_only_errors.saturating_add(p.both_errors)),
        }
    }

    /// "shadow pairs this tick: 62; green failed alone in 2, blue alone in 0, both in 0".
    pub fn reason(strata: &[ShadowStratum]) -> Option<String> {
        let mut all = ShadowStats::default();
        for s in strata {
            all.merge(&s.stats);
        }
        let p = &all.pairs;
        (p.pairs > 0 || all.unfinished > 0).then(|| {
            format!(
                "shadow pairs this tick: {}; green failed alone in {}, blue alone in {}, both in {}; {} copies unfinished",
                p.pairs, p.green_only_errors, p.blue_only_errors, p.both_errors, all.unfinished
            )
        })
    }
}

#[cfg(test)]
mod tests;
