//! A provider-wide incident: blue, which the rollout does not change, shown failing more than
//! the policy's `max_error_rate` in a tick. When that happens green failing as much is not
//! green's fault: the absolute checks of green alone (the sequential guard, the threshold
//! method's limit) stand aside for that tick, leaving green to the tests that compare it with
//! blue, and the rollout holds its step until blue recovers (`rollout/incident.rs`). Pure
//! arithmetic on one tick's counts; nothing here decides a move.
//!
//! Why stand aside rather than hold green to τ × blue's rate: the simulation's COMMON-OUTAGE
//! (both fail 30% for 5 ticks) with the guard's limit raised to 1.2 × a 99.5% lower bound on
//! blue's rate still rolled back 39.9% of rollouts at 0.1 req/s and 2.9% at 1 req/s: at low
//! traffic the bound is far below blue's true rate, and a green failing as much crosses it.
//! The relative tests judge green against blue with their own guarantees, and an incident that
//! hits both alike adds no evidence to them. Standing aside in ticks shown at 99.5% (and while
//! an incident lasts) left 1.05% at 0.1 req/s, nearly all on the outage's first tick when
//! blue's ~42 requests did not show it; standing aside at 95% ([`ASIDE`]) leaves 0.75%, the
//! same as GOOD-EQUAL without an outage (0.1 req/s: 0.75%).

/// How sure a lower bound is: its one-sided level, and the z of that level for Wilson's bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    delta: f64,
    z: f64,
}

/// 99.5%: what begins an incident, which holds the rollout and alerts; under this bar a
/// healthy blue almost never begins one by chance (at 2% errors and 54 requests a tick, about
/// once in four million ticks).
pub const INCIDENT: Level = Level {
    delta: 0.005,
    z: 2.576,
};

/// 95%: what sets the guard aside (or raises its limit) for one tick. Looser than
/// [`INCIDENT`]: the first tick of an outage, before an incident has begun, must not roll
/// green back when blue's sample is small (in COMMON-OUTAGE at 0.1 req/s blue has ~42 requests
/// a tick, 30% failing: a 99.5% bound misses about 1% of such ticks, a 95% one 0.55%), and a
/// healthy blue that crosses it by chance only spares green one tick's guard. A single blue
/// request that failed does not cross it (its bound is exactly 5%).
pub const ASIDE: Level = Level {
    delta: 0.05,
    z: 1.645,
};

/// Up to this many events the bound is exact (Clopper–Pearson, by bisection on the binomial
/// tail), whatever the number of trials; above, Wilson's, which is close with that many events
/// and costs no loop. Wilson's with few events is too generous: one error in 401 reads as a
/// 5.6e-4 floor at 99.5% against an exact 1.25e-5, and three in three as 10% at 95%.
const EXACT_UP_TO: u64 = 500;

/// A lower confidence bound at `level` on a rate from `events` of `trials`; 0 without events.
/// Few trials give a low bound, so a thin blue shows nothing.
pub fn lower_bound(events: u64, trials: u64, level: Level) -> f64 {
    if events == 0 || trials == 0 {
        return 0.0;
    }
    let e = events.min(trials);
    if e <= EXACT_UP_TO {
        clopper_pearson(e, trials, level.delta)
    } else {
        wilson(e, trials, level.z)
    }
}

/// The largest p (to 2⁻⁵⁰ of `e/n`, rounded down) with P(X ≥ e) ≤ `delta` for X ~ Bin(n, p).
fn clopper_pearson(e: u64, n: u64, delta: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, e as f64 / n as f64);
    for _ in 0..50 {
        let mid = 0.5 * (lo + hi);
        if upper_tail(e, n, mid) > delta {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    lo
}

/// P(X ≥ e) for X ~ Bin(n, p), e ≤ [`EXACT_UP_TO`], from the terms below e; (1 − p)ⁿ is
/// taken through logs, as n may be any u64. Terms that underflow make the tail larger, so the
/// bound only ever errs low.
fn upper_tail(e: u64, n: u64, p: f64) -> f64 {
    let q = 1.0 - p;
    let mut term = (n as f64 * (-p).ln_1p()).exp();
    let mut below = 0.0;
    for k in 0..e {
        below += term;
        term *= (n - k) as f64 / (k + 1) as f64 * p / q;
    }
    (1.0 - below).max(0.0)
}

/// Wilson's score bound.
fn wilson(e: u64, n: u64, z: f64) -> f64 {
    let n = n as f64;
    let p = e as f64 / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).clamp(0.0, 1.0)
}

/// The error rate green alone is held to in a tick where blue had `blue_errors` of
/// `blue_requests`: the policy's limit, or `tolerance_ratio` × the lower bound on blue's rate
/// when that is higher (blue near the limit raises it a little; a thin blue leaves it); `None`
/// when blue is shown failing above the limit (at [`ASIDE`]): judged by comparison with blue
/// only that tick.
pub fn absolute_limit(
    max_error_rate: f64,
    tolerance_ratio: f64,
    blue_errors: u64,
    blue_requests: u64,
) -> Option<f64> {
    // The bound is never above the observed rate: when τ × that rate is within the limit, so
    // is τ × the bound, and the answer is the limit without the bound's search (the common
    // case, a healthy blue, every tick).
    if tolerance_ratio >= 1.0
        && tolerance_ratio * observed(blue_errors, blue_requests) <= max_error_rate
    {
        return Some(max_error_rate);
    }
    let bound = lower_bound(blue_errors, blue_requests, ASIDE);
    (bound <= max_error_rate).then(|| max_error_rate.max(tolerance_ratio * bound))
}

/// The observed rate `events / trials` (events beyond the trials count as the trials), 0
/// without trials: what [`lower_bound`] never exceeds.
fn observed(events: u64, trials: u64) -> f64 {
    if trials == 0 {
        return 0.0;
    }
    events.min(trials) as f64 / trials as f64
}

/// Whether the lower bound at `level` on a rate from `events` of `trials` is above `limit`.
/// The bound never exceeds the observed rate, so a rate at or under the limit answers without
/// the bound's search.
pub fn bound_above(events: u64, trials: u64, level: Level, limit: f64) -> bool {
    observed(events, trials) > limit && lower_bound(events, trials, level) > limit
}

/// An upper confidence bound at `level` on a rate from `events` of `trials`: 1 without trials.
pub fn upper_bound(events: u64, trials: u64, level: Level) -> f64 {
    if trials == 0 {
        return 1.0;
    }
    1.0 - lower_bound(trials - events.min(trials), trials, level)
}

/// Whether blue's `errors` of `requests` (counted over the ticks since an incident last showed)
/// show it back at or under `max_error_rate`: the upper bound on its rate at [`ASIDE`] is at
/// or under the limit. At 0.5% errors that takes about 108 requests without an error or 150
/// with one (two or three ticks at 0.1 req/s); a blue that stays above the limit never does.
pub fn blue_back(max_error_rate: f64, errors: u64, requests: u64) -> bool {
    upper_bound(errors, requests, ASIDE) <= max_error_rate
}

/// Whether a tick shows blue failing above `max_error_rate` surely enough to begin an
/// incident: the lower bound on its rate at [`INCIDENT`] is above the limit.
pub fn blue_above(max_error_rate: f64, blue_errors: u64, blue_requests: u64) -> bool {
    bound_above(blue_errors, blue_requests, INCIDENT, max_error_rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }

    #[test]
    fn one_event_in_many_trials_is_bound_exactly() {
        // One in n: (1 − p)ⁿ = 1 − δ, p = −expm1(ln(1 − δ)/n); e.g. 1 in 401 at 99.5%:
        // 1.2500e-5 (Wilson's would say 5.6e-4).
        for n in [401u64, 1000, 54_000, 1 << 40, u64::MAX] {
            for level in [ASIDE, INCIDENT] {
                let exact = -((1.0 - level.delta).ln() / n as f64).exp_m1();
                let b = lower_bound(1, n, level);
                assert!((b - exact).abs() <= 1e-9 * exact, "1/{n}: {b} vs {exact}");
            }
        }
        // Two in n at 95% by the tail directly: P(X ≥ 2) = 1 − qⁿ − n·p·qⁿ⁻¹ = 0.05 at the
        // bound.
        for n in [1000u64, 1 << 30] {
            let p = lower_bound(2, n, ASIDE);
            let q = 1.0 - p;
            let nf = n as f64;
            let tail = 1.0 - (nf * q.ln()).exp() - nf * p * ((nf - 1.0) * q.ln()).exp();
            assert!((tail - 0.05).abs() < 1e-6, "2/{n}: tail {tail}");
        }
    }

    #[test]
    fn the_lower_bound_by_hand_and_at_the_extremes() {
        // Exact: three of three at 99.5%: p³ = 0.005, p = 0.17100; one of three at 95%:
        // 1 − (1 − p)³ = 0.05, p = 0.016952; two of three: 3p² − 2p³ = 0.05, p = 0.13535.
        close(lower_bound(3, 3, INCIDENT), 0.17100);
        close(lower_bound(1, 3, ASIDE), 0.016952);
        close(lower_bound(2, 3, ASIDE), 0.13535);
        // One of one at 95%: exactly 5%, not above the default limit.
        close(lower_bound(1, 1, ASIDE), 0.05);
        // Wilson, 300 of 1000 at 99.5%: z² = 6.635776; centre 0.3 + 0.0033179 = 0.3033179;
        // spread 2.576·√(0.00021 + 0.0000016589) = 2.576·0.014548 = 0.037476; (0.3033179 −
        // 0.037476) / 1.0066358 = 0.26409.
        close(wilson(300, 1000, INCIDENT.z), 0.26409);
        // The exact bound there (300 events, under the switch) is a little lower: 0.26321.
        close(lower_bound(300, 1000, INCIDENT), 0.26321);
        // Near the switch the two agree to within a tenth of a point.
        let (exact, wilson) = (lower_bound(500, 5000, ASIDE), wilson(501, 5000, 1.645));
        assert!((exact - wilson).abs() < 0.001, "{exact} vs {wilson}");
        assert_eq!(lower_bound(0, 0, ASIDE), 0.0);
        assert_eq!(lower_bound(0, 1000, INCIDENT), 0.0);
        assert!(lower_bound(u64::MAX, u64::MAX, ASIDE) <= 1.0);
        assert!(
            lower_bound(u64::MAX, 1, ASIDE) <= 1.0,
            "events above trials are capped"
        );
        for (e, n) in [(1, 1), (5, 7), (400, 400), (1 << 40, 1 << 41)] {
            for level in [ASIDE, INCIDENT] {
                let b = lower_bound(e, n, level);
                assert!(
                    b.is_finite() && (0.0..=e as f64 / n as f64).contains(&b),
                    "{e}/{n}: {b}"
                );
            }
        }
    }

    #[test]
    fn a_thin_or_healthy_blue_leaves_the_limit() {
        assert_eq!(absolute_limit(0.05, 1.2, 0, 0), Some(0.05));
        assert_eq!(absolute_limit(0.05, 1.2, 1, 3), Some(0.05));
        assert_eq!(absolute_limit(0.05, 1.2, 5, 1000), Some(0.05));
        assert!(!blue_above(0.05, 1, 3));
        assert!(
            !blue_above(0.05, 60, 1000),
            "6% of 1000 is not shown above 5%"
        );
        // Three of three is already strong evidence (5%³ = 1.25e-4): the bound is ~17%.
        assert!(blue_above(0.05, 3, 3));
        // 300 of 1000: an incident, no absolute limit.
        assert!(blue_above(0.05, 300, 1000));
        assert_eq!(absolute_limit(0.05, 1.2, 300, 1000), None);
        // 6 of 42 (14%): enough to set the guard aside for the tick (bound ~6.4%), not to begin
        // an incident (~3.8%); 5 of 42 is not (~4.8%).
        assert!(absolute_limit(0.05, 1.2, 5, 42).is_some());
        assert_eq!(absolute_limit(0.05, 1.2, 6, 42), None);
        assert!(!blue_above(0.05, 6, 42));
        // 61 of 1000: the exact bound at 95% is ~4.90%, just under the limit, which rises to
        // 1.2 × that.
        let limit = absolute_limit(0.05, 1.2, 61, 1000).unwrap();
        assert!((0.0587..0.0590).contains(&limit), "{limit}");
    }

    /// The shortcuts answer as the bound's search would, over counts from none to every trial
    /// failing, tiny to huge samples, and limits on both sides of the observed rate.
    #[test]
    fn the_shortcuts_agree_with_the_bounds() {
        let trials = [0u64, 1, 2, 7, 20, 54, 401, 1000, 54_000, 1 << 40, u64::MAX];
        let limits = [0.0, 1e-9, 0.001, 0.005, 0.02, 0.05, 0.0501, 0.3, 0.999, 1.0];
        for &n in &trials {
            let mut events: Vec<u64> = vec![0, 1, 2, 3, 50, 499, 500, 501, 5000, n / 100, n / 20];
            events.extend([
                n / 20 + 1,
                n / 2,
                n.saturating_sub(1),
                n,
                n.saturating_add(3),
            ]);
            for &e in &events {
                for &limit in &limits {
                    for level in [ASIDE, INCIDENT] {
                        assert_eq!(
                            bound_above(e, n, level, limit),
                            lower_bound(e, n, level) > limit,
                            "{e} of {n} against {limit}"
                        );
                    }
                    for tau in [1.0, 1.2, 3.0, 10.0] {
                        let bound = lower_bound(e, n, ASIDE);
                        let slow = (bound <= limit).then(|| limit.max(tau * bound));
                        assert_eq!(
                            absolute_limit(limit, tau, e, n),
                            slow,
                            "{e} of {n}, τ {tau}"
                        );
                    }
                }
            }
        }
    }
}
