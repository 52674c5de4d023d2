//! The sequential health test: evidence about green that may be checked on every tick, at any
//! traffic, without the false-rollback rate growing with the number of checks.
//!
//! Three tests share one set of per-tick counts ([`TickCounts`]):
//!
//! - **Relative test** (errors, and "slow" requests the same way). Given how many errors a
//!   tick saw and green's share `w` of that tick's requests, each error is green's with
//!   probability `ρw / (ρw + 1 − w)`, where `ρ` is green's error rate over blue's. That removes
//!   blue's unknown rate from the test. The null hypothesis is "green is at most
//!   `tolerance_ratio` (τ) times as bad as blue"; each alternative `ρ₁ = τ·k` adds
//!   `e_g·ln(ρ₁/τ) − (e_g + e_b)·ln((1 + (ρ₁ − 1)w) / (1 + (τ − 1)w))` to its log likelihood
//!   ratio per tick. The ratios are averaged over the alternatives (a mixture), and green is
//!   rolled back when the mixture reaches `1/alpha`. Under the null, each ratio (and so their
//!   average) is a non-negative supermartingale, so by Ville's inequality the chance that it
//!   *ever* reaches `1/alpha` is at most `alpha`, however often it is looked at. The evidence is
//!   carried across all steps of a rollout, so the bound holds for the whole rollout. Errors
//!   and slow requests also keep evidence over each step alone, so that a green that breaks
//!   late is not judged against hours of healthy evidence; `alpha` is shared between the two
//!   so that the bound over the whole rollout still holds (see [`budget`]). Defects and
//!   negative feedback are properties of the answers, which do not change with green's load,
//!   and keep the rollout-wide evidence alone.
//! - **Guard**: a one-sample test of "green's error rate ≤ `max_error_rate`" against much
//!   higher rates, on green alone, so that a plainly broken green is rolled back in a tick or
//!   two even with no blue errors to compare with. Its limit rises to τ × a lower bound on
//!   blue's rate that tick when that is higher, and in a tick where blue itself is shown
//!   failing above the limit, or while an incident it began lasts, it adds nothing: the
//!   relative tests judge green against blue then ([`crate::verdict::incident`]). A thin blue gives a low bound, and
//!   leaves the guard as it was. It is a CUSUM: its log ratio never goes
//!   below 0, so a green that breaks late in a long healthy rollout is still caught quickly
//!   (the price: its false-alarm rate is not bounded by Ville's inequality, only by how far a
//!   healthy green is below `max_error_rate`; the simulation measures it).
//! - **Clearly fine** (optional, per step): the relative test turned around, "green is at
//!   least τ times as bad as blue" against better ratios; when both errors and slow requests
//!   reject it, the step may advance before its hold time.
//!
//! - **Grader** (when the policy names one, [`crate::judge`]): among pairs of answers to the same
//!   prompt that the grader judged decisively, green loses with some probability `q`. The null
//!   hypothesis is "`q` ≤ the policy's tolerance `q₀`"; each alternative `q₁ > q₀` adds
//!   `ln(q₁/q₀)` per loss and `ln((1 − q₁)/(1 − q₀))` per win. Under the null each ratio is a
//!   non-negative supermartingale (its expected factor per pair is
//!   `q·q₁/q₀ + (1 − q)(1 − q₁)/(1 − q₀) ≤ 1` for `q ≤ q₀`), so their mixture reaches `1/alpha`
//!   with probability at most `alpha` ever. Ties judge nothing. Quality is a property of the
//!   answers, not of green's load, so the evidence is carried over the whole rollout.
//!
//! A tick with no requests adds no evidence (`w` is 0 or 1, and every term vanishes).

use serde::{Deserialize, Serialize};

pub mod budget;

pub use budget::Ladder;

/// Alternatives of the relative test, as multiples of the tolerance ratio.
const RELATIVE_ALTERNATIVES: [f64; 4] = [2.0, 3.0, 5.0, 8.0];
/// Alternatives of the negative-feedback test, as multiples of the tolerance ratio: closer in
/// than the error test's, because what users reject moves less than what breaks (the
/// simulation's FEEDBACK scenario, twice blue's rate, was caught within a step in 80% of runs
/// with the error test's 2/3/5/8 and 94% with these, 95.5% once at alpha/2).
const FEEDBACK_ALTERNATIVES: [f64; 4] = [1.25, 1.5, 2.0, 3.0];
/// Alternatives of the guard: `p₀ + (1 − p₀)·g` (for p₀ = 5%: ~10%, 19%, 38%, 76%).
const GUARD_ALTERNATIVES: [f64; 4] = [0.05, 0.15, 0.35, 0.75];
/// Alternatives of the grader test: `q₀ + (1 − q₀)·g` (for q₀ = 55%: ~59.5%, 64%, 71%, 82%),
/// close in, because a green that answers worse loses only a little more often than it wins.
const JUDGE_ALTERNATIVES: [f64; 4] = [0.1, 0.2, 0.35, 0.6];
/// Alternatives of the clearly-fine test, as fractions of the tolerance ratio.
const FINE_ALTERNATIVES: [f64; 3] = [0.8, 0.6, 0.4];
/// The clearly-fine test's level: advancing early is not a rollback, so 20:1 is enough.
const FINE_ALPHA: f64 = 0.05;

/// One tick's counts, as the controller computes them from the tick's window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickCounts {
    pub green_requests: u64,
    pub blue_requests: u64,
    pub green_errors: u64,
    pub blue_errors: u64,
    /// Requests slower than the latency reference.
    pub green_slow: u64,
    pub blue_slow: u64,
    /// Successful answers with a defect the policy judges (see [`crate::api::defects`]). Absent in
    /// counts stored before defects were judged.
    #[serde(default)]
    pub green_defects: u64,
    #[serde(default)]
    pub blue_defects: u64,
    /// Successful answers read whole: what defects are a share of (0 in counts stored before
    /// they were kept: the requests stand in).
    #[serde(default)]
    pub green_answers: u64,
    #[serde(default)]
    pub blue_answers: u64,
    /// Answers apps scored, and of them the negative ones. Absent in counts stored before
    /// feedback was judged.
    #[serde(default)]
    pub green_scored: u64,
    #[serde(default)]
    pub blue_scored: u64,
    #[serde(default)]
    pub green_negative: u64,
    #[serde(default)]
    pub blue_negative: u64,
    /// Pairs the grader judged: green's answer preferred, blue's preferred, a tie. Absent in
    /// counts stored before the grader judged, and not written while 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub judge_wins: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub judge_losses: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub judge_ties: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl TickCounts {
    fn add(&mut self, o: &TickCounts) {
        // Saturating: counts of a rollout can only be held at their maximum, never wrap.
        self.green_requests = self.green_requests.saturating_add(o.green_requests);
        self.blue_requests = self.blue_requests.saturating_add(o.blue_requests);
        self.green_errors = self.green_errors.saturating_add(o.green_errors);
        self.blue_errors = self.blue_errors.saturating_add(o.blue_errors);
        self.green_slow = self.green_slow.saturating_add(o.green_slow);
        self.blue_slow = self.blue_slow.saturating_add(o.blue_slow);
        self.green_defects = self.green_defects.saturating_add(o.green_defects);
        self.blue_defects = self.blue_defects.saturating_add(o.blue_defects);
        self.green_answers = self.green_answers.saturating_add(o.green_answers);
        self.blue_answers = self.blue_answers.saturating_add(o.blue_answers);
        self.green_scored = self.green_scored.saturating_add(o.green_scored);
        self.blue_scored = self.blue_scored.saturating_add(o.blue_scored);
        self.green_negative = self.green_negative.saturating_add(o.green_negative);
        self.blue_negative = self.blue_negative.saturating_add(o.blue_negative);
        self.judge_wins = self.judge_wins.saturating_add(o.judge_wins);
        self.judge_losses = self.judge_losses.saturating_add(o.judge_losses);
        self.judge_ties = self.judge_ties.saturating_add(o.judge_ties);
    }
}

/// The settings the sequential test reads from the health policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Rollback level of the relative error test: 1/alpha.
    pub alpha: f64,
    /// Rollback level of the relative latency test: 1/latency_alpha.
    pub latency_alpha: f64,
    /// Rollback level of the relative answer-defect test: 1/defect_alpha.
    pub defect_alpha: f64,
    /// Rollback level of the relative negative-feedback test: 1/feedback_alpha.
    pub feedback_alpha: f64,
    /// Green may be this many times as bad as blue without being rolled back.
    pub tolerance_ratio: f64,
    /// The guard's limit on green's error rate.
    pub max_error_rate: f64,
    /// The guard's level.
    pub guard_alpha: f64,
    /// Requests each environment needs in the step before a tick can pass.
    pub min_requests: u64,
    /// Whether clearly-fine evidence may end a step early.
    pub advance_early: bool,
    /// Where the rollout is in its ladder: how `alpha` and `latency_alpha` are shared between
    /// the rollout-wide and the per-step evidence.
    pub ladder: Ladder,
    /// A provider-wide incident is under way (see `crate::controller::rollout`): the guard stands aside
    /// until it ends, however blue's counts of a single tick fall.
    pub incident: bool,
    /// The grader test's settings, when the policy names a grader.
    pub judge: Option<JudgeSettings>,
}

/// What the grader test reads from the policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JudgeSettings {
    /// Rollback level: 1/alpha.
    pub alpha: f64,
    /// The share of decisive pairs green may lose, `q₀`.
    pub tolerance: f64,
}

impl Settings {
    /// These settings on step `step` (1-based) of a ladder of `steps`.
    pub fn on_step(self, step: usize, steps: usize) -> Settings {
        Settings {
            ladder: Ladder { step, steps },
            ..self
        }
    }

    /// These settings while a provider-wide incident is (or is not) under way.
    pub fn in_incident(self, incident: bool) -> Settings {
        Settings { incident, ..self }
    }
}

/// Evidence carried from tick to tick through a rollout (stored in the controller's state).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Evidence {
    /// Log likelihood ratios of the relative error test, one per alternative.
    pub errors: Vec<f64>,
    /// The same for slow requests.
    pub slow: Vec<f64>,
    /// The relative error test's log likelihood ratios over the current step alone: restarted
    /// when a step begins, never within one (absent in evidence stored before they were kept:
    /// they start when first judged).
    pub step_errors: Vec<f64>,
    /// The same for slow requests.
    pub step_slow: Vec<f64>,
    /// The same for answer defects.
    pub defects: Vec<f64>,
    /// The same for negative feedback, among the answers apps scored.
    pub feedback: Vec<f64>,
    /// The guard's log ratios (never below 0).
    pub guard: Vec<f64>,
    /// The grader test's log likelihood ratios, one per alternative (empty while nothing was
    /// judged, and in evidence stored before the grader judged; not written while empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub judge: Vec<f64>,
    /// Clearly-fine log ratios for errors and slow requests, this step only.
    pub fine_errors: Vec<f64>,
    pub fine_slow: Vec<f64>,
    /// The latency reference for the next tick: blue's p95 so far plus the margin.
    pub latency_reference_ms: Option<u64>,
    /// Counts over the whole rollout.
    pub rollout: TickCounts,
    /// Counts over the current step since it began or resumed (what `min_requests` needs).
    pub step: TickCounts,
    /// Counts behind the step's own evidence (`step_errors`, `step_slow`): restarted only when
    /// a step begins, as that evidence is (zero in evidence stored before they were kept).
    pub step_evidence: TickCounts,
    /// Ticks that carried traffic.
    pub ticks: u64,
}

/// `ln(mean(exp(x)))`, computed without overflow.
pub(crate) fn log_mean_exp(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max + (xs.iter().map(|x| (x - max).exp()).sum::<f64>() / xs.len() as f64).ln()
}

/// The log likelihood ratio added by one tick for the alternative `rho1` against `rho0`.
pub fn relative_increment(rho1: f64, rho0: f64, w: f64, e_g: u64, e_b: u64) -> f64 {
    if e_g + e_b == 0 || w <= 0.0 || w >= 1.0 {
        return 0.0;
    }
    e_g as f64 * (rho1 / rho0).ln()
        - (e_g + e_b) as f64 * ((1.0 + (rho1 - 1.0) * w) / (1.0 + (rho0 - 1.0) * w)).ln()
}

/// The log likelihood ratio added by `e` failures in `n` trials for rate `p1` against `p0`.
pub fn guard_increment(p1: f64, p0: f64, n: u64, e: u64) -> f64 {
    e as f64 * (p1 / p0).ln() + (n - e.min(n)) as f64 * ((1.0 - p1) / (1.0 - p0)).ln()
}

fn sized(v: &mut Vec<f64>, n: usize) {
    if v.len() != n {
        *v = vec![0.0; n];
    }
}

/// The outcome of one tick of the sequential test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// A rollback level was reached.
    Unhealthy,
    /// Too few requests in the step to let it advance.
    TooLittleData,
    /// Nothing against green, and enough data.
    Healthy,
    /// Healthy, and shown no worse than τ × blue (for `advance_early`).
    ClearlyFine,
}

/// Largest likelihood ratio stored or shown as a number. Evidence against a plainly broken
/// green grows past `f64::MAX` within a tick at volume; its log stays finite, and the ratio
/// shown saturates here (`odds` prints `>1e300:1`).
pub const SATURATED_RATIO: f64 = 1e300;

/// A likelihood ratio from its log: finite, at most [`SATURATED_RATIO`].
pub fn ratio_from_log(log: f64) -> f64 {
    if log.is_nan() {
        return 1.0;
    }
    if log >= SATURATED_RATIO.ln() {
        return SATURATED_RATIO;
    }
    log.exp().min(SATURATED_RATIO)
}

/// A log likelihood ratio as stored: finite whatever the arithmetic gave (a NaN, which no
/// count can produce, reads as no evidence).
pub(crate) fn finite_log(log: f64) -> f64 {
    if log.is_nan() {
        0.0
    } else {
        log.clamp(-f64::MAX, f64::MAX)
    }
}

/// How reports were stored: the first release kept only the ratios, and stored a ratio that
/// overflowed as `null`. Reading one gives the saturated log for `null`.
mod stored;

mod report;

use report::report;
pub use report::{odds, GuardAside, JudgeReport, RelativeReport, Report};

/// Adds one tick to the evidence and says what it now shows. `reference_ms` is the latency
/// reference the tick's slow counts were taken against; `next_reference_ms` (blue's p95 over
/// the rollout so far, plus the margin) becomes the reference for the next tick.
pub fn update(
    ev: &mut Evidence,
    s: &Settings,
    t: &TickCounts,
    reference_ms: Option<u64>,
    next_reference_ms: Option<u64>,
) -> Report {
    let stratum = Stratum {
        counts: *t,
        in_step: true,
        fine_errors: None,
    };
    update_strata(ev, s, &[stratum], reference_ms, next_reference_ms)
}

/// One tick's counts of the requests routed under one split. A tick that saw requests of
/// several splits (a step changed, and isolates or late batches still carried the old one)
/// adds each split's counts with its own share `w`: the sum of the strata's log likelihood
/// ratios is the likelihood ratio of the whole tick, so the guarantees hold as for one split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stratum {
    pub counts: TickCounts,
    /// Whether the split belongs to the current step: only those count towards the step's
    /// `min_requests` and its clearly-fine evidence; earlier steps' requests still add to the
    /// evidence carried through the rollout.
    pub in_step: bool,
    /// Green's and blue's errors the clearly-fine test reads, when they are not the counts'
    /// (a shadow step's pairs: [`crate::shadow`] says why).
    pub fine_errors: Option<(u64, u64)>,
}

/// [`update`] for a tick whose requests came under several splits.
pub fn update_strata(
    ev: &mut Evidence,
    s: &Settings,
    strata: &[Stratum],
    reference_ms: Option<u64>,
    next_reference_ms: Option<u64>,
) -> Report {
    sized(&mut ev.errors, RELATIVE_ALTERNATIVES.len());
    sized(&mut ev.slow, RELATIVE_ALTERNATIVES.len());
    sized(&mut ev.step_errors, RELATIVE_ALTERNATIVES.len());
    sized(&mut ev.step_slow, RELATIVE_ALTERNATIVES.len());
    sized(&mut ev.defects, RELATIVE_ALTERNATIVES.len());
    sized(&mut ev.feedback, FEEDBACK_ALTERNATIVES.len());
    sized(&mut ev.guard, GUARD_ALTERNATIVES.len());
    sized(&mut ev.fine_errors, FINE_ALTERNATIVES.len());
    sized(&mut ev.fine_slow, FINE_ALTERNATIVES.len());
    // The guard's null this tick: the limit, raised to τ × a lower bound on blue's error rate
    // this tick when that is higher; none when blue is shown failing above the limit (a
    // provider-wide incident is not green's fault: the relative tests judge that tick).
    let (blue_errors, blue_requests) = strata.iter().fold((0u64, 0u64), |(e, n), st| {
        (
            e.saturating_add(st.counts.blue_errors),
            n.saturating_add(st.counts.blue_requests),
        )
    });
    let limit = crate::verdict::incident::absolute_limit(
        s.max_error_rate,
        s.tolerance_ratio,
        blue_errors,
        blue_requests,
    );
    let aside = match limit {
        _ if s.incident => Some(GuardAside::Incident),
        None => Some(GuardAside::BlueAbove),
        Some(_) => None,
    };
    let p0 = limit
        .map(|p| p.clamp(1e-6, 1.0 - 1e-6))
        .filter(|_| !s.incident);
    let mut any = false;
    for stratum in strata {
        any |= accumulate(ev, s, stratum, p0);
    }
    // The guard's floor once per tick, after all its splits: its increments are linear in the
    // counts, so a tick that spans two splits moves it as one pooled tick would.
    for g in ev.guard.iter_mut() {
        *g = g.max(0.0);
    }
    if any {
        ev.ticks += 1;
    }
    if next_reference_ms.is_some() {
        ev.latency_reference_ms = next_reference_ms;
    }
    let mut report = report(ev, s, reference_ms);
    report.guard_limit = p0.unwrap_or(s.max_error_rate);
    report.guard_aside = aside;
    report
}

/// Adds one stratum's counts to every log-likelihood sum, the guard's against the null rate
/// `p0` unless the tick is an incident's (`None`); false when it had no requests (it adds
/// nothing then).
fn accumulate(ev: &mut Evidence, s: &Settings, stratum: &Stratum, p0: Option<f64>) -> bool {
    let tau = s.tolerance_ratio;
    let t = &stratum.counts;
    let judged = accumulate_judged(ev, s, t);
    let scored = t.green_scored.saturating_add(t.blue_scored);
    if scored > 0 {
        // Feedback's share is green's share of the scored answers, not of the requests: apps
        // score what they choose to.
        let wf = t.green_scored as f64 / scored as f64;
        for (k, mult) in FEEDBACK_ALTERNATIVES.iter().enumerate() {
            let rho1 = tau * mult;
            ev.feedback[k] += relative_increment(rho1, tau, wf, t.green_negative, t.blue_negative);
        }
    }
    let n = t.green_requests.saturating_add(t.blue_requests);
    if n == 0 {
        // Feedback alone (scores arriving after their requests' tick) is still evidence.
        ev.rollout.add(t);
        if stratum.in_step {
            ev.step.add(t);
            ev.step_evidence.add(t);
        }
        return scored > 0 || judged;
    }
    let w = t.green_requests as f64 / n as f64;
    // Defects are a share of the answers read whole, not of the requests: when blue fails more
    // often, green's answers are not made to look worse per request.
    let answers = t.green_answers.saturating_add(t.blue_answers);
    let wd = if answers > 0 {
        t.green_answers as f64 / answers as f64
    } else {
        w
    };
    for (k, mult) in RELATIVE_ALTERNATIVES.iter().enumerate() {
        let rho1 = tau * mult;
        let errors = relative_increment(rho1, tau, w, t.green_errors, t.blue_errors);
        let slow = relative_increment(rho1, tau, w, t.green_slow, t.blue_slow);
        ev.errors[k] += errors;
        ev.slow[k] += slow;
        if stratum.in_step {
            ev.step_errors[k] += errors;
            ev.step_slow[k] += slow;
        }
        ev.defects[k] += relative_increment(rho1, tau, wd, t.green_defects, t.blue_defects);
    }
    if let Some(p0) = p0 {
        for (k, g) in GUARD_ALTERNATIVES.iter().enumerate() {
            let p1 = p0 + (1.0 - p0) * g;
            ev.guard[k] += guard_increment(p1, p0, t.green_requests, t.green_errors);
        }
    }
    ev.rollout.add(t);
    if stratum.in_step {
        let (fine_g, fine_b) = stratum
            .fine_errors
            .unwrap_or((t.green_errors, t.blue_errors));
        for (k, frac) in FINE_ALTERNATIVES.iter().enumerate() {
            let rho1 = tau * frac;
            ev.fine_errors[k] += relative_increment(rho1, tau, w, fine_g, fine_b);
            ev.fine_slow[k] += relative_increment(rho1, tau, w, t.green_slow, t.blue_slow);
        }
        ev.step.add(t);
        ev.step_evidence.add(t);
    }
    true
}

/// After a resume: the step's requests are counted again from zero, so that the step needs
/// `min_requests` of each environment seen since before it may pass, and the clearly-fine
/// evidence restarts (a step may not end early on what it saw before the pause); the evidence
/// against green carries on.
/// Adds a stratum's judged pairs to the grader test (with a grader named); whether there were
/// any.
fn accumulate_judged(ev: &mut Evidence, s: &Settings, t: &TickCounts) -> bool {
    let (wins, losses) = (t.judge_wins, t.judge_losses);
    let Some(j) = s.judge.filter(|_| wins > 0 || losses > 0) else {
        return t.judge_ties > 0;
    };
    sized(&mut ev.judge, JUDGE_ALTERNATIVES.len());
    for (k, g) in JUDGE_ALTERNATIVES.iter().enumerate() {
        ev.judge[k] += judge_increment(
            j.tolerance + (1.0 - j.tolerance) * g,
            j.tolerance,
            wins,
            losses,
        );
    }
    true
}

/// The grader test's log likelihood ratio for `wins` and `losses` of green's, loss rate `q1`
/// against `q0`.
pub fn judge_increment(q1: f64, q0: f64, wins: u64, losses: u64) -> f64 {
    losses as f64 * (q1 / q0).ln() + wins as f64 * ((1.0 - q1) / (1.0 - q0)).ln()
}

pub fn restart_step_counts(ev: &mut Evidence) {
    ev.step = TickCounts::default();
    ev.fine_errors.iter_mut().for_each(|x| *x = 0.0);
    ev.fine_slow.iter_mut().for_each(|x| *x = 0.0);
}

/// Starts a new step: the per-step counts, the clearly-fine evidence and the step's own
/// evidence against green restart; the rollout-wide evidence carries on.
pub fn new_step(ev: &mut Evidence) {
    restart_step_counts(ev);
    ev.step_evidence = TickCounts::default();
    ev.step_errors.iter_mut().for_each(|x| *x = 0.0);
    ev.step_slow.iter_mut().for_each(|x| *x = 0.0);
}

#[cfg(test)]
mod tests {
    use super::report::whole;
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;
    use rand_distr::{Binomial, Distribution, Poisson};

    #[test]
    fn whole_odds_read_as_the_float_formatter_writes_them() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut values: Vec<f64> = vec![10.0, 10.5, 11.5, 12.5, 99.5, 1e12, 1e12 - 0.5, 33.333];
        for _ in 0..20_000 {
            let exp = rand::Rng::random_range(&mut rng, 1.0f64..12.0);
            values.push(10f64.powf(exp));
            values.push(10f64.powf(exp).trunc() + 0.5);
        }
        for v in values.into_iter().filter(|v| (10.0..=1e12).contains(v)) {
            assert_eq!(whole(v), format!("{v:.0}"), "{v}");
        }
    }

    fn settings() -> Settings {
        Settings {
            alpha: 0.03,
            latency_alpha: 0.01,
            defect_alpha: 0.01,
            feedback_alpha: 0.01,
            tolerance_ratio: 1.2,
            max_error_rate: 0.05,
            guard_alpha: 0.0075,
            min_requests: 50,
            advance_early: false,
            ladder: Ladder::default(),
            incident: false,
            judge: None,
        }
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }

    #[test]
    fn increments_by_hand() {
        // 3·ln 2 − 4·ln(1.5) = 2.07944 − 1.62186 = 0.45758.
        close(relative_increment(2.0, 1.0, 0.5, 3, 1), 0.45758);
        // With tolerance: ρ₁ = 2.4, ρ₀ = 1.2, w = 0.5, five green errors and no blue ones:
        // 5·ln 2 − 5·ln(1.7 / 1.1) = 3.46574 − 2.17662 = 1.28912.
        close(relative_increment(2.4, 1.2, 0.5, 5, 0), 1.28912);
        // No information: no errors, or one environment got all the traffic.
        assert_eq!(relative_increment(2.0, 1.0, 0.5, 0, 0), 0.0);
        assert_eq!(relative_increment(2.0, 1.0, 0.0, 0, 3), 0.0);
        assert_eq!(relative_increment(2.0, 1.0, 1.0, 3, 0), 0.0);
        // 2·ln 2 + 8·ln(0.9 / 0.95) = 1.38629 − 0.43253 = 0.95376.
        close(guard_increment(0.1, 0.05, 10, 2), 0.95376);
        // ln(mean(e^0, e^ln 3)) = ln 2.
        close(log_mean_exp(&[0.0, 3f64.ln()]), 2f64.ln());
    }

    #[test]
    fn odds_read_as_people_say_them() {
        assert_eq!(odds(62.3), "62:1");
        assert_eq!(odds(1.5), "1.5:1");
        assert_eq!(odds(0.025), "1:40");
        assert_eq!(odds(1.0 / 0.03), "33:1");
    }

    #[test]
    fn a_tick_without_traffic_adds_nothing() {
        let mut ev = Evidence::default();
        let before = update(&mut ev, &settings(), &TickCounts::default(), None, None);
        assert_eq!(ev.ticks, 0);
        assert_eq!(before.errors.evidence, 1.0);
        assert_eq!(before.finding, Finding::TooLittleData);
        // Traffic on one side only carries no relative evidence either.
        let t = TickCounts {
            green_requests: 30,
            green_errors: 1,
            ..TickCounts::default()
        };
        let r = update(&mut ev, &settings(), &t, None, None);
        assert_eq!(r.errors.evidence, 1.0);
        assert_eq!(ev.ticks, 1);
    }

    /// A tick whose requests came under two splits: 10% green while the provider was fine,
    /// then 50% green during a provider incident that failed 2% of both environments'
    /// requests (below the guard's limit). Green is exactly as good as blue in both. Pooled, green holds 30% of the
    /// requests but half of the errors, and looks 2.3 times as bad; split by the split they
    /// were routed under, each error is green's with its own split's share.
    #[test]
    fn strata_keep_a_change_of_split_from_looking_like_a_worse_green() {
        let calm = TickCounts {
            green_requests: 10_000,
            blue_requests: 90_000,
            ..TickCounts::default()
        };
        let incident = TickCounts {
            green_requests: 50_000,
            blue_requests: 50_000,
            green_errors: 1_000,
            blue_errors: 1_000,
            ..TickCounts::default()
        };
        let mut pooled = calm;
        pooled.add(&incident);
        let mut ev = Evidence::default();
        let r = update(&mut ev, &settings(), &pooled, None, None);
        assert_eq!(r.finding, Finding::Unhealthy, "pooled: {:?}", r.errors);
        let mut ev = Evidence::default();
        let strata = [calm, incident].map(|counts| Stratum {
            counts,
            in_step: true,
            fine_errors: None,
        });
        let r = update_strata(&mut ev, &settings(), &strata, None, None);
        assert_ne!(r.finding, Finding::Unhealthy);
        assert!(r.errors.log_evidence < 0.0, "{:?}", r.errors);
        assert_eq!(ev.ticks, 1, "one tick, however many splits");
        assert_eq!(ev.rollout.green_requests, 60_000);
    }

    /// Requests of an earlier step (a late batch, an isolate still on the old split) add to
    /// the rollout's evidence but not to the current step's counts or its clearly-fine test.
    #[test]
    fn an_earlier_steps_requests_are_evidence_but_not_the_steps() {
        let earlier = Stratum {
            counts: TickCounts {
                green_requests: 500,
                blue_requests: 500,
                green_errors: 60,
                blue_errors: 10,
                ..TickCounts::default()
            },
            in_step: false,
            fine_errors: None,
        };
        let mut ev = Evidence::default();
        let r = update_strata(&mut ev, &settings(), &[earlier], None, None);
        assert_eq!(ev.step, TickCounts::default());
        assert_eq!(ev.rollout, earlier.counts);
        assert!(ev.fine_errors.iter().all(|x| *x == 0.0));
        assert!(r.errors.log_evidence > 0.0);
        assert_eq!(r.finding, Finding::Unhealthy, "{:?}", r.errors);
    }

    /// Feedback is judged among the answers apps scored, with green's share of the scores:
    /// scores that arrive in a tick without requests still count, and a green that gets twice
    /// blue's thumbs-down is rolled back; one that gets as many is not.
    #[test]
    fn negative_feedback_is_judged_among_scored_answers() {
        let scores = |green_negative| TickCounts {
            green_scored: 200,
            blue_scored: 1800,
            green_negative,
            blue_negative: 180,
            ..TickCounts::default()
        };
        let mut ev = Evidence::default();
        let mut r = update(&mut ev, &settings(), &scores(40), None, None);
        for _ in 0..5 {
            r = update(&mut ev, &settings(), &scores(40), None, None);
        }
        let f = r.feedback.as_ref().unwrap();
        assert!(f.reached(), "{f:?}");
        assert_eq!(r.finding, Finding::Unhealthy);
        assert_eq!((f.green_events, f.green_requests), (240, 1200));
        assert!(
            r.reasons()[0].starts_with("green negative scores are 2.0× blue's"),
            "{:?}",
            r.reasons()
        );
        assert_eq!(ev.rollout.green_requests, 0, "scores are not requests");

        let mut ev = Evidence::default();
        for _ in 0..6 {
            r = update(&mut ev, &settings(), &scores(20), None, None);
        }
        assert!(r.feedback.as_ref().unwrap().log_evidence < 0.0);
        assert_ne!(r.finding, Finding::Unhealthy);
    }

    /// During a provider incident blue fails half its requests; green's answers have defects
    /// as often as blue's. Per request green would look twice as bad; per answer read whole,
    /// which is what the defect test weighs, it is not.
    #[test]
    fn defects_are_judged_per_answer_not_per_request() {
        let t = TickCounts {
            green_requests: 1_000,
            blue_requests: 9_000,
            green_answers: 995,
            blue_answers: 4_500,
            green_defects: 50,
            blue_defects: 225,
            ..TickCounts::default()
        };
        let mut ev = Evidence::default();
        let mut r = update(&mut ev, &settings(), &t, None, None);
        for _ in 0..9 {
            r = update(&mut ev, &settings(), &t, None, None);
        }
        let d = r.defects.as_ref().unwrap();
        assert!(d.log_evidence < 0.0, "{d:?}");
        assert_eq!(
            (d.green_requests, d.blue_requests),
            (9_950, 45_000),
            "trials are answers"
        );
        // The same counts without answers (stored before they were kept) fall back to requests.
        let old = TickCounts {
            green_answers: 0,
            blue_answers: 0,
            ..t
        };
        let mut ev = Evidence::default();
        for _ in 0..10 {
            r = update(&mut ev, &settings(), &old, None, None);
        }
        assert!(r.defects.as_ref().unwrap().log_evidence > 0.0);
    }

    /// The guard over a tick that spans two splits moves exactly as over the pooled tick: it
    /// judges green alone, whatever the shares.
    #[test]
    fn the_guard_over_two_splits_is_the_guard_over_their_sum() {
        let a = TickCounts {
            green_requests: 40,
            blue_requests: 360,
            ..TickCounts::default()
        };
        let b = TickCounts {
            green_requests: 100,
            blue_requests: 100,
            green_errors: 30,
            ..TickCounts::default()
        };
        let mut pooled = a;
        pooled.add(&b);
        let mut one = Evidence::default();
        update(&mut one, &settings(), &pooled, None, None);
        let mut two = Evidence::default();
        let strata = [a, b].map(|counts| Stratum {
            counts,
            in_step: true,
            fine_errors: None,
        });
        update_strata(&mut two, &settings(), &strata, None, None);
        for (x, y) in one.guard.iter().zip(&two.guard) {
            close(*x, *y);
        }
        assert!(
            one.guard.iter().any(|g| *g > 0.0),
            "evidence against green moved"
        );
    }

    #[test]
    fn first_alternative_matches_the_hand_computation() {
        let mut ev = Evidence::default();
        let t = TickCounts {
            green_requests: 100,
            blue_requests: 100,
            green_errors: 5,
            ..TickCounts::default()
        };
        let r = update(&mut ev, &settings(), &t, Some(900), Some(1000));
        // k = 2: ρ₁ = 2.4, as in `increments_by_hand`.
        close(ev.errors[0], 1.28912);
        assert_eq!(ev.latency_reference_ms, Some(1000));
        assert_eq!(r.latency_reference_ms, Some(900));
        assert_eq!(r.errors.ratio, None);
        let reasons = r.reasons();
        assert!(
            reasons[0].starts_with("green errors: seen on green only (5 of 100 vs 0 of 100)"),
            "{reasons:?}"
        );
        assert!(reasons[0].ends_with("rollback at 33:1"), "{reasons:?}");
        assert!(
            reasons[1].starts_with("green requests slower than 900 ms"),
            "{reasons:?}"
        );
    }

    /// Runs `runs` rollouts of `ticks` ticks with green's error rate `ratio` × blue's (0.5%)
    /// at 10 req/s and a 30% share; returns the share rolled back by the error test.
    fn crossing_rate(ratio: f64, runs: u64, ticks: u64) -> f64 {
        let s = settings();
        let mut rng = SmallRng::seed_from_u64(7);
        let mut crossed = 0;
        for _ in 0..runs {
            let mut ev = Evidence::default();
            for _ in 0..ticks {
                let g = Poisson::new(180.0).unwrap().sample(&mut rng) as u64;
                let b = Poisson::new(420.0).unwrap().sample(&mut rng) as u64;
                let t = TickCounts {
                    green_requests: g,
                    blue_requests: b,
                    green_errors: Binomial::new(g, 0.005 * ratio).unwrap().sample(&mut rng),
                    blue_errors: Binomial::new(b, 0.005).unwrap().sample(&mut rng),
                    ..TickCounts::default()
                };
                if update(&mut ev, &s, &t, None, None).errors.evidence >= 1.0 / s.alpha {
                    crossed += 1;
                    break;
                }
            }
        }
        crossed as f64 / runs as f64
    }

    #[test]
    fn false_rollbacks_stay_within_alpha_however_often_checked() {
        // At the edge of the null (green exactly τ = 1.2 × blue), checked every tick for 100
        // ticks, 1000 runs: Ville bounds the crossing rate by α = 3%. Allowing for sampling
        // (binomial sd at 3% and 1000 runs is 0.54%), assert below 4.5%.
        let edge = crossing_rate(1.2, 1000, 100);
        assert!(edge <= 0.045, "{edge}");
        // An equal green crosses far less often.
        let equal = crossing_rate(1.0, 1000, 100);
        assert!(equal <= 0.02, "{equal}");
        // And a green 6× as bad (BAD) is caught in nearly every run.
        let bad = crossing_rate(6.0, 200, 30);
        assert!(bad >= 0.99, "{bad}");
    }

    #[test]
    fn the_guard_catches_a_green_that_breaks_late() {
        let s = settings();
        let mut ev = Evidence::default();
        let healthy = TickCounts {
            green_requests: 60,
            blue_requests: 60,
            ..TickCounts::default()
        };
        for _ in 0..300 {
            assert_ne!(
                update(&mut ev, &s, &healthy, None, None).finding,
                Finding::Unhealthy
            );
        }
        // Five hours healthy, then half of green's requests fail: the CUSUM starts from 0,
        // not from five hours of evidence against, and crosses in one tick.
        let broken = TickCounts {
            green_errors: 30,
            ..healthy
        };
        let r = update(&mut ev, &s, &broken, None, None);
        assert_eq!(r.finding, Finding::Unhealthy);
        assert!(r.guard_evidence >= r.guard_rollback_at);
    }

    /// Steps 3 of a four-step ladder: five hours of an equal green drive the rollout-wide
    /// evidence far below 1; then green fails 3% against blue's 0.5% at 5 req/s each. The
    /// step's own evidence, restarted when the step began, reaches its level (1/(0.03 · 0.1/3)
    /// = 1000:1) while the rollout-wide evidence is still below 1.
    #[test]
    fn a_late_break_is_judged_on_the_step_alone() {
        let s = settings().on_step(3, 4);
        let mut ev = Evidence::default();
        let healthy = TickCounts {
            green_requests: 300,
            blue_requests: 300,
            green_errors: 2,
            blue_errors: 2,
            ..TickCounts::default()
        };
        for _ in 0..300 {
            assert_ne!(
                update(&mut ev, &s, &healthy, None, None).finding,
                Finding::Unhealthy
            );
        }
        assert!(ev.errors.iter().all(|x| *x < -10.0), "{:?}", ev.errors);
        new_step(&mut ev);
        let broken = TickCounts {
            green_errors: 9,
            blue_errors: 2,
            ..healthy
        };
        let mut ticks = 0;
        let r = loop {
            ticks += 1;
            let r = update(&mut ev, &s, &broken, None, None);
            if r.finding == Finding::Unhealthy {
                break r;
            }
            assert!(ticks < 10, "not caught in 10 ticks: {r:?}");
        };
        let step = r.step_errors.as_ref().unwrap();
        assert!(step.reached() && !r.errors.reached(), "{r:?}");
        assert!(r.errors.log_evidence < 0.0);
        close(step.rollback_at, 1000.0);
        close(r.errors.rollback_at, 1.0 / (0.03 * 0.9));
        assert_eq!(
            (step.green_events, step.green_requests),
            (9 * ticks, 300 * ticks)
        );
        assert!(
            r.reasons()[0].starts_with("this step: green errors are 4.5× blue's"),
            "{:?}",
            r.reasons()
        );
    }

    /// Step 1's own evidence is the rollout-wide one: it has no report and no budget; a
    /// one-step ladder keeps all of alpha for the rollout-wide test.
    #[test]
    fn the_first_step_and_a_one_step_ladder_have_no_step_evidence() {
        let t = TickCounts {
            green_requests: 100,
            blue_requests: 100,
            green_errors: 1,
            blue_errors: 1,
            ..TickCounts::default()
        };
        let mut ev = Evidence::default();
        let r = update(&mut ev, &settings().on_step(1, 4), &t, None, None);
        assert_eq!((r.step_errors, r.step_latency), (None, None));
        close(r.errors.rollback_at, 1.0 / 0.027);
        let r = update(&mut ev, &settings(), &t, None, None);
        close(r.errors.rollback_at, 1.0 / 0.03);
        assert!(r.reasons().iter().all(|l| !l.starts_with("this step")));
    }

    /// A resume restarts the step's counts but not its evidence against green: restarting it
    /// at a moment of one's choosing would break the bound. A new step restarts it.
    #[test]
    fn only_a_new_step_restarts_the_steps_evidence() {
        let t = TickCounts {
            green_requests: 100,
            blue_requests: 100,
            green_errors: 5,
            blue_errors: 1,
            ..TickCounts::default()
        };
        let mut ev = Evidence::default();
        update(&mut ev, &settings().on_step(2, 4), &t, None, None);
        let before = ev.step_errors.clone();
        assert!(before.iter().all(|x| *x > 0.0));
        restart_step_counts(&mut ev);
        assert_eq!(ev.step_errors, before);
        assert_eq!(ev.step, TickCounts::default());
        // The counts the step's evidence cites are its own: a resume does not restart them,
        // so a rollback after one cites the 5 of 100 behind the evidence, not what came since.
        update(&mut ev, &settings().on_step(2, 4), &t, None, None);
        let after = update(&mut ev, &settings().on_step(2, 4), &t, None, None);
        let step = after.step_errors.unwrap();
        assert_eq!((step.green_requests, step.green_events), (300, 15));
        assert_eq!(ev.step.green_requests, 200);
        new_step(&mut ev);
        assert_eq!(ev.step_evidence, TickCounts::default());
        assert!(ev.step_errors.iter().all(|x| *x == 0.0));
        assert!(
            ev.errors.iter().all(|x| *x > 0.0),
            "the rollout's carries on"
        );
    }

    #[test]
    fn clearly_fine_needs_both_signals_and_restarts_each_step() {
        let s = Settings {
            advance_early: true,
            min_requests: 10,
            ..settings()
        };
        let mut ev = Evidence::default();
        // Equal error and slow rates with plenty of events: evidence for "no worse than τ".
        let t = TickCounts {
            green_requests: 1000,
            blue_requests: 1000,
            green_errors: 20,
            blue_errors: 20,
            green_slow: 50,
            blue_slow: 50,
            ..TickCounts::default()
        };
        let mut finding = Finding::Healthy;
        for _ in 0..30 {
            finding = update(&mut ev, &s, &t, Some(1000), Some(1000)).finding;
            if finding == Finding::ClearlyFine {
                break;
            }
        }
        assert_eq!(finding, Finding::ClearlyFine);
        new_step(&mut ev);
        assert_eq!(ev.step, TickCounts::default());
        assert!(ev.fine_errors.iter().all(|x| *x == 0.0));
        // The rollout-wide evidence carried on.
        assert!(ev.errors.iter().any(|x| *x != 0.0));
    }

    fn judged(wins: u64, losses: u64, ties: u64) -> TickCounts {
        TickCounts {
            judge_wins: wins,
            judge_losses: losses,
            judge_ties: ties,
            ..TickCounts::default()
        }
    }

    fn with_judge() -> Settings {
        Settings {
            judge: Some(JudgeSettings {
                alpha: 0.015,
                tolerance: 0.55,
            }),
            ..settings()
        }
    }

    #[test]
    fn a_green_that_loses_most_pairs_is_rolled_back_with_the_graders_sentence() {
        let mut ev = Evidence::default();
        let mut r = update(&mut ev, &with_judge(), &judged(30, 70, 20), None, None);
        for _ in 0..2 {
            r = update(&mut ev, &with_judge(), &judged(30, 70, 20), None, None);
        }
        let j = r.judge.as_ref().unwrap();
        assert!(j.reached(), "{j:?}");
        assert_eq!(r.finding, Finding::Unhealthy);
        assert_eq!((j.wins, j.losses, j.ties), (90, 210, 60));
        assert!(
            r.reasons()[0].starts_with("the grader preferred blue's answer in 70% of 300 decisive pairs (210 lost, 90 won, 60 ties), tolerance 55%"),
            "{:?}",
            r.reasons()
        );
        assert_eq!(
            ev.ticks, 3,
            "a tick with judged pairs only is a tick with evidence"
        );
        assert_eq!(ev.rollout.green_requests, 0, "pairs are not requests");
    }

    #[test]
    fn pairs_within_the_tolerance_and_ties_are_no_evidence_against_green() {
        let mut ev = Evidence::default();
        let mut r = update(&mut ev, &with_judge(), &judged(0, 0, 500), None, None);
        assert_eq!(r.judge.as_ref().unwrap().log_evidence, 0.0);
        for _ in 0..20 {
            r = update(&mut ev, &with_judge(), &judged(50, 50, 10), None, None);
        }
        let j = r.judge.unwrap();
        assert!(j.log_evidence < 0.0, "{j:?}");
        assert_eq!(j.loss_share, Some(0.5));
    }

    #[test]
    fn without_a_grader_judged_pairs_are_neither_judged_nor_reported() {
        let mut ev = Evidence::default();
        let r = update(&mut ev, &settings(), &judged(0, 1000, 0), None, None);
        assert!(r.judge.is_none());
        assert!(ev.judge.is_empty());
        assert_ne!(r.finding, Finding::Unhealthy);
    }

    #[test]
    fn increments_of_the_grader_test_by_hand() {
        close(judge_increment(0.6, 0.5, 0, 1), (1.2f64).ln());
        close(judge_increment(0.6, 0.5, 1, 0), (0.8f64).ln());
        assert_eq!(judge_increment(0.6, 0.5, 0, 0), 0.0);
    }

    /// The test's level, by simulation with fixed seeds: a green that loses exactly the
    /// tolerated share of decisive pairs (the worst case of the null), judged a pair at a time
    /// for 5000 pairs, is rolled back in at most `alpha` of the runs.
    #[test]
    fn at_the_tolerance_the_false_rollback_rate_is_within_alpha() {
        let s = with_judge();
        let runs = 2000;
        let mut rolled = 0;
        for seed in 0..runs {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut ev = Evidence::default();
            for _ in 0..50 {
                let losses = Binomial::new(100, 0.55).unwrap().sample(&mut rng);
                let r = update(&mut ev, &s, &judged(100 - losses, losses, 0), None, None);
                if r.finding == Finding::Unhealthy {
                    rolled += 1;
                    break;
                }
            }
        }
        let rate = rolled as f64 / runs as f64;
        assert!(rate <= 0.015, "{rolled} of {runs}");
    }

    #[test]
    fn stored_evidence_and_reports_without_the_grader_read() {
        let ev: Evidence =
            crate::util::json::parse(r#"{"errors":[0.5,0.1,0.0,0.0],"ticks":3}"#).unwrap();
        assert!(ev.judge.is_empty());
        let mut ev2 = ev.clone();
        let r = update(&mut ev2, &with_judge(), &judged(1, 2, 0), None, None);
        let text = serde_json::to_string(&r).unwrap();
        let back: Report = crate::util::json::parse(&text).unwrap();
        assert_eq!(back, r);
        let plain = update(&mut ev2, &settings(), &TickCounts::default(), None, None);
        assert!(!serde_json::to_string(&plain).unwrap().contains("judge"));
    }
}
