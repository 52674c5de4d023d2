//! The split check: is routing doing what the controller believes? Each tick's requests
//! routed under the step's split are tested against the split's green share with a sequential
//! test; a share beyond chance outside a tolerance band holds the rollout until the share is
//! back inside it.
//!
//! Under a correct split every routed request is green's with probability `w`, the step's
//! `green_percent / 100`, so green's count among a tick's `n` routed requests is Binomial(n, w).
//! Real traffic is lumpier: with sticky routing a heavy user moves many requests at once, so
//! the share wanders more than binomial chance. The test is therefore against a band, not the
//! point `w`: green's odds `o = share / (1 − share)` are allowed anywhere within a factor
//! `1 + δ` of the split's, `[o_w / (1 + δ), o_w · (1 + δ)]`, δ being the policy's
//! `split_tolerance`. Odds, not shares, so that the band treats green and blue alike and never
//! leaves (0, 1): at a 10% step and the default δ = 0.4 it is 7.4%–13.5%, at 50% 41.7%–58.3%,
//! at 70% 62.5%–76.6%.
//!
//! Two one-sided mixture likelihood-ratio tests: "green's odds ≤ the band's top" against odds
//! `m` times the top, and "≥ the band's bottom" against odds `1/m` times the bottom, for each
//! `m` in [`ALTERNATIVES`]. With `n` requests of which `g` green and odds `o₁ = m·o₀` against
//! `o₀`, a tick adds `g·ln m − n·ln((1 + m·o₀) / (1 + o₀))` to the log ratio. For any true share
//! inside the band each ratio (so their mean) is a non-negative supermartingale, so by Ville's
//! inequality it ever reaches [`SIDE_LEVEL`] with probability at most `1/SIDE_LEVEL`: with both
//! sides, at most [`ALPHA`] a step, however often it is looked at, if requests are routed
//! independently. The evidence restarts with each step (the share changes), on an operator's
//! resume or manual split, and when it reaches its level.
//!
//! What the hold means and how it ends is decided here too ([`observe`]); what a hold does to
//! the rollout (no step advances) is the tick's (`rollout/tick.rs`).

use serde::{Deserialize, Serialize};

use crate::sequential::{finite_log, log_mean_exp, odds, ratio_from_log};

/// The policy's `split_tolerance` when not given: green's odds may be 40% off the split's.
/// The simulation's SPLIT-MISMATCH (5% routed at a 10% step, 10 req/s in all) is held within
/// 10 ticks in 99.9% of runs at 0.4, 98.0% at 0.5 and 100% at 0.25: 0.4 is the widest band
/// (the most room for lumpy sticky traffic) that keeps a clear margin over the 95% target.
pub const DEFAULT_TOLERANCE: f64 = 0.4;
/// Alternatives of each side, as multiples of the band edge's odds (above the top, below the
/// bottom by their inverses). A share half the split's, the mismatch the simulation plants,
/// is at about 1/1.5 of the bottom's odds at 10%.
const ALTERNATIVES: [f64; 4] = [1.25, 1.5, 2.0, 3.0];
/// Chance, at most, that a step is held while its share is inside the band (both sides).
pub const ALPHA: f64 = 0.001;
/// Each side's level: a likelihood ratio of 2000:1.
pub const SIDE_LEVEL: f64 = 2.0 / ALPHA;

/// The split check's evidence over the current step, and the hold it caused (stored in the
/// rollout). Every number is finite: log ratios are clamped, counts saturate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SplitCheck {
    /// Log likelihood ratios that green's share is above the band, one per alternative.
    pub above: Vec<f64>,
    /// The same for below the band.
    pub below: Vec<f64>,
    /// Requests routed under the step's split since the evidence restarted.
    pub green_requests: u64,
    pub blue_requests: u64,
    /// Set while the rollout is held for a share outside the band.
    pub hold: Option<Hold>,
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
    /// Whether the check runs: the sequential method with a `split_tolerance` above 0.
    pub on: bool,
    /// Whether a split mismatch holds the rollout (no step advances).
    pub held: bool,
    /// When the hold began (RFC 3339), while held.
    pub held_since: Option<String>,
    /// The hold's sentence, while held.
    pub reason: Option<String>,
    /// Requests routed under the step's split since the evidence restarted.
    pub green_requests: u64,
    pub blue_requests: u64,
    /// Evidence that green's share is above the band, and below it (ratios, saturated at
    /// [`crate::sequential::SATURATED_RATIO`]); the hold begins at `hold_at`.
    pub evidence_above: f64,
    pub evidence_below: f64,
    pub hold_at: f64,
}

/// The band of green shares the test accepts around `percent` with tolerance `delta`, as
/// (bottom, top) odds; `None` when the split cannot be checked (0% or 100%: the routing sends
/// nobody to the other side by construction, a shadow step's 0% included).
fn band(percent: f64, delta: f64) -> Option<(f64, f64)> {
    // Written so that a NaN split or tolerance is refused too.
    let checkable = percent > 0.0 && percent < 100.0 && delta >= 0.0 && delta.is_finite();
    if !checkable {
        return None;
    }
    let odds = percent / (100.0 - percent);
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

    /// What the status shows; `on` says whether the rollout's policy runs the check.
    pub fn view(&self, on: bool) -> View {
        let (above, below) = self.log_evidence();
        View {
            on,
            held: self.holds(),
            held_since: self
                .hold
                .as_ref()
                .map(|h| crate::time::format_rfc3339_ms(h.since_ms)),
            reason: self.hold.as_ref().map(|h| h.reason.clone()),
            green_requests: self.green_requests,
            blue_requests: self.blue_requests,
            evidence_above: ratio_from_log(above),
            evidence_below: ratio_from_log(below),
            hold_at: SIDE_LEVEL,
        }
    }

    /// Starts the evidence and the counts again; a hold stays.
    fn restart_evidence(&mut self) {
        self.above.clear();
        self.below.clear();
        self.green_requests = 0;
        self.blue_requests = 0;
    }

    /// Green's share of the requests counted, `None` without any.
    fn observed(&self) -> Option<f64> {
        let n = self.green_requests as f64 + self.blue_requests as f64;
        (n > 0.0).then(|| self.green_requests as f64 / n)
    }

    /// "green got 5.1% of 3012 requests routed under the step's 10% split (154 green, 2858
    /// blue); the band is 8.2%–12.2%".
    fn figures(&self, percent: f64, (lo, hi): (f64, f64)) -> String {
        format!(
            "green got {} of {} requests routed under the step's {percent}% split ({} green, {} \
             blue); the band is {}–{}",
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

/// Adds `green` and `blue` requests routed under the step's split at `percent`, tested with
/// tolerance `delta` (0: the check is off), at `now_ms`. Returns what changed:
///
/// - the test reaches its level: the evidence restarts, and unless a hold is on one begins
///   ([`Change::Held`]); reaching it again while held only restarts the evidence;
/// - while held, once each environment has `min_requests` since the evidence last restarted,
///   with green's share inside the band and the level not reached: the hold ends
///   ([`Change::Cleared`]).
pub fn observe(
    check: &mut SplitCheck,
    percent: f64,
    delta: f64,
    counts: (u64, u64),
    min_requests: u64,
    now_ms: u64,
) -> Option<Change> {
    let (green, blue) = counts;
    if delta <= 0.0 {
        return None;
    }
    let (lo, hi) = band(percent, delta)?;
    if green == 0 && blue == 0 {
        return None;
    }
    for v in [&mut check.above, &mut check.below] {
        if v.len() != ALTERNATIVES.len() {
            *v = vec![0.0; ALTERNATIVES.len()];
        }
    }
    for (i, m) in ALTERNATIVES.into_iter().enumerate() {
        check.above[i] = finite_log(check.above[i] + increment(m, hi, green, blue));
        check.below[i] = finite_log(check.below[i] + increment(1.0 / m, lo, green, blue));
    }
    check.green_requests = check.green_requests.saturating_add(green);
    check.blue_requests = check.blue_requests.saturating_add(blue);
    let (above, below) = check.log_evidence();
    let level = SIDE_LEVEL.ln();
    if above >= level || below >= level {
        let (side, log) = if above >= below {
            ("above", above)
        } else {
            ("below", below)
        };
        let reason = format!(
            "Split mismatch: {}; evidence {} that green's share is {side} it, hold at {}. \
             Routing is not doing what the controller believes: no step advances until the \
             share is back inside the band or an operator resumes.",
            check.figures(percent, (lo, hi)),
            odds(ratio_from_log(log)),
            odds(SIDE_LEVEL),
        );
        check.restart_evidence();
        if check.hold.is_some() {
            return None;
        }
        check.hold = Some(Hold {
            since_ms: now_ms,
            reason: reason.clone(),
        });
        return Some(Change::Held(reason));
    }
    let enough = check.green_requests >= min_requests && check.blue_requests >= min_requests;
    let inside = check
        .observed()
        .is_some_and(|s| s >= share(lo) && s <= share(hi));
    if check.hold.is_some() && enough && inside {
        check.hold = None;
        return Some(Change::Cleared(format!(
            "Split matches again: {}. The rollout may advance.",
            check.figures(percent, (lo, hi))
        )));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 50;

    /// Feeds `ticks` ticks of (green, blue) at a 10% split, δ = 0.25; the changes in order.
    fn feed(check: &mut SplitCheck, counts: (u64, u64), ticks: u64) -> Vec<(u64, Change)> {
        (1..=ticks)
            .filter_map(|t| observe(check, 10.0, 0.25, counts, MIN, t * 60_000).map(|c| (t, c)))
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
        let held =
            (1..=10).find_map(|t| observe(&mut c, 10.0, 0.25, (30, 570), MIN, t).map(|c| (t, c)));
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
        // The evidence restarted at the hold. At 10% (60 of 600) the next tick has 60 ≥ 50
        // green and 540 blue inside the band, and one tick at the split cannot reach 2000:1.
        let changes = feed(&mut c, (60, 540), 1);
        assert!(
            matches!(&changes[..], [(1, Change::Cleared(s))] if s.contains("10.0% of 600")),
            "{changes:?}"
        );
        assert!(!c.holds());
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
        // Far below the level: the log ratio drifts down.
        let (a, b) = c.log_evidence();
        assert!(a < 0.0 && b < 0.0, "{a} {b}");
    }

    #[test]
    fn off_empty_or_uncheckable_splits_change_nothing() {
        let mut c = SplitCheck::default();
        assert_eq!(observe(&mut c, 10.0, 0.0, (0, 600), MIN, 1), None);
        assert_eq!(observe(&mut c, 10.0, 0.25, (0, 0), MIN, 1), None);
        assert_eq!(observe(&mut c, 0.0, 0.25, (5, 600), MIN, 1), None);
        assert_eq!(observe(&mut c, 100.0, 0.25, (600, 5), MIN, 1), None);
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
                    let _ = observe(&mut c, percent, 0.25, counts, MIN, t);
                    let (a, b) = c.log_evidence();
                    assert!(a.is_finite() && b.is_finite(), "{percent} {counts:?}");
                    assert!(c.above.iter().chain(&c.below).all(|x| x.is_finite()));
                }
            }
        }
        // All green at a 10% split: held at once; all blue too.
        let mut c = SplitCheck::default();
        assert!(matches!(
            observe(&mut c, 10.0, 0.25, (u64::MAX, 0), MIN, 0),
            Some(Change::Held(_))
        ));
        let mut c = SplitCheck::default();
        assert!(matches!(
            observe(&mut c, 10.0, 0.25, (0, 10_000), MIN, 0),
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
