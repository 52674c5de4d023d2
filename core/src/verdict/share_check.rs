//! The split check: is routing doing what the controller believes? Each tick's requests
//! routed at random under the step's split are tested against the share the split routes with
//! a sequential test; a share beyond chance outside a tolerance band holds the rollout until
//! there is evidence that the share is back inside it.
//!
//! Only requests routed by a random draw are counted (`split::Basis::Random`, the stats'
//! `random_requests`): each is green's with probability `w` independently of the others, so
//! green's count among a tick's `n` of them is Binomial(n, w). Requests with a sticky key are
//! not: their environment is fixed by which users hashed into green, so green's share of them
//! is that of a few users' volumes, not a binomial draw (with 100 users at a 10% step the
//! share the hashes give is outside the band about a third of the time, and stays there), and
//! forced requests are the client's choice. `w` is what the router sends, the split's whole
//! buckets (`split::green_buckets`, 0.01% each), not `green_percent` (a step at 0.0149% routes
//! 0.01%).
//!
//! The test is against a band, not the point `w`: green's odds `o = share / (1 − share)` are
//! allowed anywhere within a factor `1 + δ` of the split's, `[o_w / (1 + δ), o_w · (1 + δ)]`,
//! δ being the policy's `split_tolerance`. Odds, not shares, so that the band treats green and
//! blue alike and never leaves (0, 1): at a 10% step and the default δ = 0.4 it is
//! 7.4%–13.5%, at 50% 41.7%–58.3%, at 70% 62.5%–76.6%.
//!
//! Holding: two one-sided mixture likelihood-ratio tests, "green's odds ≤ the band's top"
//! against odds `m` times the top, and "≥ the band's bottom" against odds `1/m` times the
//! bottom, for each `m` in [`ALTERNATIVES`]. With `n` requests of which `g` green and odds
//! `o₁ = m·o₀` against `o₀`, a tick adds `g·ln m − n·ln((1 + m·o₀) / (1 + o₀))` to the log
//! ratio. Each alternative's log ratio is floored at 0 after every tick (a CUSUM, as the
//! guard in `sequential`): a share that breaks in the middle of a long good step is caught
//! as fast as one that is off from the start, instead of first paying back the evidence the
//! good ticks piled up. The price: the chance of a hold at a share inside the band is no
//! longer bounded by Ville's inequality, only by how far the share is inside; the simulation
//! measures it (none in the whole good rollouts, see docs/verdicts.md).
//!
//! Clearing: while held, two more likelihood-ratio tests, started when the hold begins and
//! again whenever the holding test reaches its level while held: "green's share is at or below
//! the band's bottom" against the split's own share, and "at or above the top" against it.
//! For any share on its null's side each ratio is a non-negative supermartingale (never
//! floored), so by Ville's inequality it ever reaches [`CLEAR_LEVEL`] with probability at most
//! `1/CLEAR_LEVEL`; the hold ends once both have, so a share outside the band ends a hold in
//! at most 1% of these periods. A point estimate inside the band would not do: a share held
//! at 6.5% for a 10% step has an observed share inside the 7.4%–13.5% band often enough to
//! clear about half the holds.
//!
//! What the hold means and how it ends is decided here too ([`observe`]); what a hold does to
//! the rollout (no step advances) is the tick's (`rollout/tick.rs`).

use serde::{Deserialize, Serialize};

use crate::request::split::{green_buckets, BUCKETS};
use crate::verdict::sequential::{finite_log, log_mean_exp, odds, ratio_from_log};

/// The policy's `split_tolerance` when not given: green's odds may be 40% off the split's.
/// The simulation's SPLIT-MISMATCH (5% routed at a 10% step, 10 req/s in all) is held within
/// 10 ticks in 99.9% of runs at 0.4, 98.0% at 0.5 and 100% at 0.25: 0.4 is the widest band
/// (the most room for lumpy sticky traffic) that keeps a clear margin over the 95% target.
pub const DEFAULT_TOLERANCE: f64 = 0.4;
/// Alternatives of each side, as multiples of the band edge's odds (above the top, below the
/// bottom by their inverses). A share half the split's, the mismatch the simulation plants,
/// is at about 1/1.5 of the bottom's odds at 10%.
const ALTERNATIVES: [f64; 4] = [1.25, 1.5, 2.0, 3.0];
/// Each side's level for holding: a likelihood ratio of 2000:1 (the level a single test with
/// both sides at 0.1% would have; with the floor it is a threshold, not a bound).
pub const SIDE_LEVEL: f64 = 2000.0;
/// Each side's level for clearing: 100:1, so a share outside the band ends a hold in at most
/// 1% of the periods the clearing evidence runs. Lower would clear sooner but let more wrong
/// clears advance a step; a wrong clear is not the end, since the holding test, a CUSUM, holds
/// again within a few ticks if the share is still off. At 100:1 a share at the split clears
/// after about 1000 requests at a 10% step.
pub const CLEAR_LEVEL: f64 = 100.0;

/// The split check's evidence over the current step, and the hold it caused (stored in the
/// rollout). Every number is finite: log ratios are clamped, counts saturate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SplitCheck {
    /// Log likelihood ratios that green's share is above the band, one per alternative.
    pub above: Vec<f64>,
    /// The same for below the band.
    pub below: Vec<f64>,
    /// Requests routed at random under the step's split since the evidence restarted.
    pub green_requests: u64,
    pub blue_requests: u64,
    /// Set while the rollout is held for a share outside the band.
    pub hold: Option<Hold>,
    /// While held: the log likelihood ratio that green's share is above the band's bottom
    /// (the split's share against the bottom), and below its top. 0 when not held, and in
    /// what the version before them stored.
    pub clear_bottom: f64,
    pub clear_top: f64,
}

/// A hold for a mismatched split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    /// When the test first reached its level.
    pub since_ms: u64,
    /// The sentence of the event that began it: observed and expected share, counts, evidence.
    pub reason: String,
}

/// What a tick's requests did to the check.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The test reached its level: the rollout holds. The sentence gives the figures.
    Held(String),
    /// A hold ended: the share since it began is inside the band.
    Cleared(String),
}

/// The split check as `GET /admin/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct View {
    /// Whether the check runs now: the sequential method with a `split_tolerance` above 0, the
    /// split in force being the step's, and the step at a share both sides get.
    pub on: bool,
    /// Whether a split mismatch holds the rollout (no step advances).
    pub held: bool,
    /// When the hold began (RFC 3339), while held.
    pub held_since: Option<String>,
    /// The hold's sentence, while held.
    pub reason: Option<String>,
    /// Requests routed at random under the step's split since the evidence restarted.
    pub green_requests: u64,
    pub blue_requests: u64,
    /// Evidence that green's share is above the band, and below it (ratios, saturated at
    /// [`crate::verdict::sequential::SATURATED_RATIO`]); the hold begins at `hold_at`.
    pub evidence_above: f64,
    pub evidence_below: f64,
    pub hold_at: f64,
    /// While held, evidence that the share is above the band's bottom and below its top; the
    /// hold ends once both reach `clear_at`.
    pub evidence_inside: [f64; 2],
    pub clear_at: f64,
}

/// The share of requests a split at `percent` routes to green: its whole buckets.
fn routed_share(percent: f64) -> f64 {
    f64::from(green_buckets(percent)) / f64::from(BUCKETS)
}

/// Whether a split at `percent` can be checked: it routes some requests to each side (not
/// 0%, a shadow step's included, nor 100%, nor a share that rounds to either).
pub fn checkable(percent: f64) -> bool {
    (1..BUCKETS).contains(&green_buckets(percent))
}

/// The band of green shares the test accepts around what a split at `percent` routes, with
/// tolerance `delta`, as (bottom, top) odds; `None` when the split cannot be checked.
fn band(percent: f64, delta: f64) -> Option<(f64, f64)> {
    // Written so that a NaN tolerance is refused too (a NaN split routes nothing to green).
    if !(checkable(percent) && delta >= 0.0 && delta.is_finite()) {
        return None;
    }
    let w = routed_share(percent);
    let odds = w / (1.0 - w);
    Some((odds / (1.0 + delta), odds * (1.0 + delta)))
}

/// A share from its odds.
fn share(odds: f64) -> f64 {
    odds / (1.0 + odds)
}

/// The log likelihood ratio `green` of `green + blue` requests add for odds `m·o0` against
/// `o0`: `g·ln m − n·ln((1 + m·o0)/(1 + o0))`, finite for any counts and odds.
pub fn increment(m: f64, o0: f64, green: u64, blue: u64) -> f64 {
    let n = green as f64 + blue as f64;
    let x = green as f64 * m.ln() - n * ((m * o0).ln_1p() - o0.ln_1p());
    finite_log(x)
}

/// "1.2%", "0.05%": enough digits for small splits.
fn pct(x: f64) -> String {
    let p = 100.0 * x;
    if p >= 1.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.2}%")
    }
}

impl SplitCheck {
    /// Whether the rollout is held for a mismatched split.
    pub fn holds(&self) -> bool {
        self.hold.is_some()
    }

    /// The mixture's log ratio that green's share is above the band, and below it.
    pub fn log_evidence(&self) -> (f64, f64) {
        (log_mean_exp(&self.above), log_mean_exp(&self.below))
    }

    /// What the status shows; `on` says whether the check runs now.
    pub fn view(&self, on: bool) -> View {
        let (above, below) = self.log_evidence();
        View {
            on,
            held: self.holds(),
            held_since: self
                .hold
                .as_ref()
                .map(|h| crate::util::time::format_rfc3339_ms(h.since_ms)),
            reason: self.hold.as_ref().map(|h| h.reason.clone()),
            green_requests: self.green_requests,
            blue_requests: self.blue_requests,
            evidence_above: ratio_from_log(above),
            evidence_below: ratio_from_log(below),
            hold_at: SIDE_LEVEL,
            evidence_inside: [self.clear_bottom, self.clear_top].map(ratio_from_log),
            clear_at: CLEAR_LEVEL,
        }
    }

    /// Starts the evidence (holding and clearing) and the counts again; a hold stays.
    fn restart_evidence(&mut self) {
        self.above.clear();
        self.below.clear();
        self.green_requests = 0;
        self.blue_requests = 0;
        self.clear_bottom = 0.0;
        self.clear_top = 0.0;
    }

    /// Green's share of the requests counted, `None` without any.
    fn observed(&self) -> Option<f64> {
        let n = self.green_requests as f64 + self.blue_requests as f64;
        (n > 0.0).then(|| self.green_requests as f64 / n)
    }

    /// "green got 5.1% of 3012 requests routed at random under the step's 10% split (154
    /// green, 2858 blue); the band is 8.2%–12.2%".
    fn figures(&self, percent: f64, (lo, hi): (f64, f64)) -> String {
        format!(
            "green got {} of {} requests routed at random under the step's {percent}% split ({} \
             green, {} blue); the band is {}–{}",
            pct(self.observed().unwrap_or(0.0)),
            self.green_requests.saturating_add(self.blue_requests),
            self.green_requests,
            self.blue_requests,
            pct(share(lo)),
            pct(share(hi)),
        )
    }
}

/// A new step, or an operator's resume or manual split: the evidence starts again and any
/// hold ends (the operator has looked; a new step is only reached once no hold is on).
pub fn restart(check: &mut SplitCheck) {
    *check = SplitCheck::default();
}

/// Adds `green` and `blue` requests routed at random under the step's split at `percent`,
/// tested with tolerance `delta` (0: the check is off), at `now_ms`. Returns what changed:
///
/// - the holding test reaches its level: its evidence, the clearing evidence and the counts
///   restart, and unless a hold is on one begins ([`Change::Held`]);
/// - while held, once both clearing tests reach [`CLEAR_LEVEL`] (the share is inside the band):
///   the hold ends ([`Change::Cleared`]).
pub fn observe(
    check: &mut SplitCheck,
    percent: f64,
    delta: f64,
    counts: (u64, u64),
    now_ms: u64,
) -> Option<Change> {
    let (green, blue) = counts;
    if delta <= 0.0 {
        return None;
    }
    let band = band(percent, delta)?;
    if green == 0 && blue == 0 {
        return None;
    }
    check.add_to_sides(band, counts);
    let (above, below) = check.log_evidence();
    if above >= SIDE_LEVEL.ln() || below >= SIDE_LEVEL.ln() {
        return check.hold_for(percent, band, (above, below), now_ms);
    }
    check.hold.as_ref()?;
    check.clear_if_back(percent, delta, band, counts)
}

impl SplitCheck {
    /// Adds a tick's randomly routed `(green, blue)` to the two one-sided tests against the
    /// band `(lo, hi)`, each floored at 0: a CUSUM (see the module's header).
    fn add_to_sides(&mut self, (lo, hi): (f64, f64), (green, blue): (u64, u64)) {
        for v in [&mut self.above, &mut self.below] {
            if v.len() != ALTERNATIVES.len() {
                *v = vec![0.0; ALTERNATIVES.len()];
            }
        }
        for (i, m) in ALTERNATIVES.into_iter().enumerate() {
            self.above[i] = finite_log(self.above[i] + increment(m, hi, green, blue)).max(0.0);
            self.below[i] =
                finite_log(self.below[i] + increment(1.0 / m, lo, green, blue)).max(0.0);
        }
        self.green_requests = self.green_requests.saturating_add(green);
        self.blue_requests = self.blue_requests.saturating_add(blue);
    }

    /// A side reached its level: the evidence restarts, and the step holds unless it already
    /// does (then there is nothing new to say).
    fn hold_for(
        &mut self,
        percent: f64,
        band: (f64, f64),
        (above, below): (f64, f64),
        now_ms: u64,
    ) -> Option<Change> {
        let (side, log) = if above >= below {
            ("above", above)
        } else {
            ("below", below)
        };
        let reason = format!(
            "Split mismatch: {}; evidence {} that green's share is {side} it, hold at {}. \
             Routing is not doing what the controller believes: no step advances until the \
             share is shown to be back inside the band or an operator resumes.",
            self.figures(percent, band),
            odds(ratio_from_log(log)),
            odds(SIDE_LEVEL),
        );
        self.restart_evidence();
        if self.hold.is_some() {
            return None;
        }
        self.hold = Some(Hold {
            since_ms: now_ms,
            reason: reason.clone(),
        });
        Some(Change::Held(reason))
    }

    /// While held: adds the tick to the two tests that end the hold, and ends it when both
    /// show the share back inside the band.
    fn clear_if_back(
        &mut self,
        percent: f64,
        delta: f64,
        (lo, hi): (f64, f64),
        (green, blue): (u64, u64),
    ) -> Option<Change> {
        // The split's own odds are the bottom's times 1 + δ, and the top's over it.
        let widen = 1.0 + delta;
        self.clear_bottom = finite_log(self.clear_bottom + increment(widen, lo, green, blue));
        self.clear_top = finite_log(self.clear_top + increment(1.0 / widen, hi, green, blue));
        let level = CLEAR_LEVEL.ln();
        if self.clear_bottom < level || self.clear_top < level {
            return None;
        }
        let message = format!(
            "Split matches again: {}; evidence {} that green's share is above the bottom and \
             {} that it is below the top, clear at {}. The rollout may advance.",
            self.figures(percent, (lo, hi)),
            odds(ratio_from_log(self.clear_bottom)),
            odds(ratio_from_log(self.clear_top)),
            odds(CLEAR_LEVEL),
        );
        self.hold = None;
        self.clear_bottom = 0.0;
        self.clear_top = 0.0;
        Some(Change::Cleared(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `ticks` ticks of (green, blue) at a 10% split, δ = 0.25; the changes in order.
    fn feed(check: &mut SplitCheck, counts: (u64, u64), ticks: u64) -> Vec<(u64, Change)> {
        (1..=ticks)
            .filter_map(|t| observe(check, 10.0, 0.25, counts, t * 60_000).map(|c| (t, c)))
            .collect()
    }

    #[test]
    fn the_band_is_in_odds() {
        let (lo, hi) = band(10.0, 0.25).unwrap();
        // Odds 1/9 = 0.1111; /1.25 = 0.0889 → 8.16%; ×1.25 = 0.1389 → 12.20%.
        assert!((share(lo) - 0.0816).abs() < 1e-4, "{}", share(lo));
        assert!((share(hi) - 0.1220).abs() < 1e-4, "{}", share(hi));
        let (lo, hi) = band(50.0, 0.25).unwrap();
        assert!((share(lo) - 0.4444).abs() < 1e-4 && (share(hi) - 0.5556).abs() < 1e-4);
        assert_eq!(band(0.0, 0.25), None);
        assert_eq!(band(100.0, 0.25), None);
        assert_eq!(band(f64::NAN, 0.25), None);
        assert_eq!(band(10.0, f64::NAN), None);
        // Centred on what the router sends: 0.0149% is 1 bucket, 0.01%; 0.004% is none.
        let (lo, hi) = band(0.0149, 0.0).unwrap();
        assert!((share(lo) - 0.0001).abs() < 1e-12 && (share(hi) - 0.0001).abs() < 1e-12);
        assert_eq!(band(0.004, 0.25), None);
        assert_eq!(band(99.996, 0.25), None);
    }

    #[test]
    fn the_increment_is_the_binomial_log_ratio() {
        // 3 green of 10 at odds 0.2 (p0 = 1/6) against 0.4 (p1 = 2/7):
        // 3·ln(p1/p0) + 7·ln((1 − p1)/(1 − p0)) = 3·ln(12/7) + 7·ln(6/7) = 1.6170 − 1.0791.
        let direct = 3.0 * (12.0f64 / 7.0).ln() + 7.0 * (6.0f64 / 7.0).ln();
        assert!((increment(2.0, 0.2, 3, 7) - direct).abs() < 1e-12);
        assert_eq!(increment(2.0, 0.2, 0, 0), 0.0);
    }

    #[test]
    fn half_the_share_holds_within_a_few_ticks_then_clears_at_the_right_share() {
        let mut c = SplitCheck::default();
        // 600 requests a tick, 30 green (5%) instead of 60 (10%): each tick adds about
        // 600·0.0065 = 3.9 to the best alternative's log ratio (below the band's 8.2%), so the
        // mixture reaches ln 2000 + ln 4 = 9.0 in about 3 ticks.
        let held = (1..=10).find_map(|t| observe(&mut c, 10.0, 0.25, (30, 570), t).map(|c| (t, c)));
        let Some((t, Change::Held(why))) = held else {
            panic!("{held:?}")
        };
        assert!(t <= 5, "held at tick {t}");
        assert!(
            why.contains("the step's 10% split") && why.contains("below it"),
            "{why}"
        );
        assert!(why.contains("8.2%–12.2%"), "{why}");
        assert!(c.holds());
        // The evidence restarted at the hold. At 10% (60 of 600) each tick adds to the clearing
        // ratios 600·KL(10% ‖ 8.16%) = 600·0.00212 = 1.27 (above the bottom) and
        // 600·KL(10% ‖ 12.20%) = 600·0.00239 = 1.43 (below the top): both pass ln 100 = 4.61
        // on the 4th tick (5.08 and 5.73), not before (3.81).
        let changes = feed(&mut c, (60, 540), 4);
        assert!(
            matches!(&changes[..], [(4, Change::Cleared(s))] if s.contains("10.0% of 2400")),
            "{changes:?}"
        );
        assert!(!c.holds());
        assert_eq!((c.clear_bottom, c.clear_top), (0.0, 0.0));
    }

    #[test]
    fn shares_just_outside_the_band_are_held_and_never_cleared() {
        // 6.5% and 15% at a 10% step with δ = 0.25 (band 8.16%–12.20%; odds 1.28 times beyond
        // its edges): one hold, no clear in 300 ticks of 6000 requests.
        for counts in [(390, 5610), (900, 5100)] {
            let mut c = SplitCheck::default();
            let changes = feed(&mut c, counts, 300);
            assert!(
                matches!(&changes[..], [(_, Change::Held(_))]),
                "{counts:?}: {changes:?}"
            );
            assert!(c.holds());
        }
    }

    #[test]
    fn a_break_in_the_middle_of_a_step_holds_as_fast_as_one_from_the_start() {
        // 600 ticks at the split leave every log ratio at its floor, 0, not hundreds below.
        let mut c = SplitCheck::default();
        assert!(feed(&mut c, (60, 540), 600).is_empty());
        assert!(c.above.iter().chain(&c.below).all(|&x| x == 0.0));
        let mut fresh = SplitCheck::default();
        let at = |c: &mut SplitCheck| {
            (1..=10)
                .find(|&t| matches!(observe(c, 10.0, 0.25, (30, 570), t), Some(Change::Held(_))))
        };
        let (late, early) = (at(&mut c), at(&mut fresh));
        assert!(late.is_some() && late == early, "{late:?} {early:?}");
    }

    #[test]
    fn a_share_that_stays_off_is_held_once_and_never_cleared() {
        let mut c = SplitCheck::default();
        let changes = feed(&mut c, (30, 570), 30);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(c.holds());
    }

    #[test]
    fn a_held_check_stays_held_while_the_share_is_off_and_says_so_once() {
        let mut c = SplitCheck::default();
        let changes = feed(&mut c, (120, 480), 30);
        assert_eq!(changes.len(), 1);
        assert!(matches!(&changes[0].1, Change::Held(s) if s.contains("above it")));
        assert!(c.holds());
    }

    #[test]
    fn a_share_at_the_split_never_holds() {
        let mut c = SplitCheck::default();
        assert!(feed(&mut c, (60, 540), 1000).is_empty());
        // Floored: the log ratios stay at 0 (every tick's increment is negative).
        assert_eq!(c.log_evidence(), (0.0, 0.0));
    }

    #[test]
    fn off_empty_or_uncheckable_splits_change_nothing() {
        let mut c = SplitCheck::default();
        assert_eq!(observe(&mut c, 10.0, 0.0, (0, 600), 1), None);
        assert_eq!(observe(&mut c, 10.0, 0.25, (0, 0), 1), None);
        assert_eq!(observe(&mut c, 0.0, 0.25, (5, 600), 1), None);
        assert_eq!(observe(&mut c, 100.0, 0.25, (600, 5), 1), None);
        assert_eq!(c, SplitCheck::default());
    }

    #[test]
    fn extreme_counts_and_splits_stay_finite_log() {
        for percent in [0.01, 0.5, 10.0, 50.0, 99.5, 99.99] {
            for counts in [
                (u64::MAX, 0),
                (0, u64::MAX),
                (u64::MAX, u64::MAX),
                (1, 0),
                (0, 1),
            ] {
                let mut c = SplitCheck::default();
                for t in 0..3 {
                    let _ = observe(&mut c, percent, 0.25, counts, t);
                    let (a, b) = c.log_evidence();
                    assert!(a.is_finite() && b.is_finite(), "{percent} {counts:?}");
                    assert!(c.above.iter().chain(&c.below).all(|x| x.is_finite()));
                }
            }
        }
        // All green at a 10% split: held at once; all blue too.
        let mut c = SplitCheck::default();
        assert!(matches!(
            observe(&mut c, 10.0, 0.25, (u64::MAX, 0), 0),
            Some(Change::Held(_))
        ));
        let mut c = SplitCheck::default();
        assert!(matches!(
            observe(&mut c, 10.0, 0.25, (0, 10_000), 0),
            Some(Change::Held(_))
        ));
    }

    #[test]
    fn restart_ends_a_hold() {
        let mut c = SplitCheck::default();
        feed(&mut c, (0, 600), 2);
        assert!(c.holds());
        restart(&mut c);
        assert_eq!(c, SplitCheck::default());
    }

    #[test]
    fn stored_checks_round_trip_and_load_from_nothing() {
        let mut c = SplitCheck::default();
        feed(&mut c, (0, 600), 2);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<SplitCheck>(&json).unwrap(), c);
        assert_eq!(
            serde_json::from_str::<SplitCheck>("{}").unwrap(),
            SplitCheck::default()
        );
    }
}
