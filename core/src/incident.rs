//! A provider-wide incident: blue, which the rollout does not change, shown failing more than
//! the policy's `max_error_rate` in a tick. When that happens green failing as much is not
//! green's fault: the absolute checks of green alone (the sequential guard, the threshold
//! method's limit) stand aside for that tick, leaving green to the tests that compare it with
//! blue, and the rollout holds its step until blue recovers (`rollout/incident.rs`). Pure
//! arithmetic on one tick's counts; nothing here decides a move.
//!
//! Why stand aside rather than hold green to τ × blue's rate: the simulation's COMMON-OUTAGE
//! (both fail 30% for 5 ticks) with the guard's limit raised to 1.2 × a lower bound on blue's
//! rate still rolled back 39.9% of rollouts at 0.1 req/s and 2.9% at 1 req/s: at low traffic
//! the bound is far below blue's true rate, and a green failing as much crosses it. The
//! relative tests judge green against blue with their own guarantees, and an incident that
//! hits both alike adds no evidence to them.

/// z of the one-sided 99.5% lower bound on blue's error rate.
const Z: f64 = 2.576;

/// Wilson's lower confidence bound (one-sided, 99.5%) on a rate from `events` of `trials`;
/// 0 without trials. Few trials give a low bound, so a thin blue shows nothing.
pub fn lower_bound(events: u64, trials: u64) -> f64 {
    if events == 0 || trials == 0 {
        return 0.0;
    }
    let n = trials as f64;
    let p = events.min(trials) as f64 / n;
    let z2 = Z * Z;
    let centre = p + z2 / (2.0 * n);
    let spread = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).clamp(0.0, 1.0)
}

/// The error rate green alone is held to in a tick where blue had `blue_errors` of
/// `blue_requests`: the policy's limit, or `tolerance_ratio` × the lower bound on blue's rate
/// when that is higher (blue near the limit raises it a little; a thin blue leaves it); `None`
/// when blue is shown failing above the limit: an incident, judged by comparison with blue only.
pub fn absolute_limit(
    max_error_rate: f64,
    tolerance_ratio: f64,
    blue_errors: u64,
    blue_requests: u64,
) -> Option<f64> {
    let bound = lower_bound(blue_errors, blue_requests);
    (bound <= max_error_rate).then(|| max_error_rate.max(tolerance_ratio * bound))
}

/// Whether a tick shows blue failing above `max_error_rate`: the lower bound on its rate is
/// above the limit.
pub fn blue_above(max_error_rate: f64, blue_errors: u64, blue_requests: u64) -> bool {
    lower_bound(blue_errors, blue_requests) > max_error_rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lower_bound_by_hand_and_at_the_extremes() {
        // 30 of 100: p = 0.3, z² = 6.6358; centre 0.3 + 0.033179 = 0.333179; spread
        // 2.576·√(0.0021 + 0.00016590) = 2.576·0.047602 = 0.122622; (0.333179 − 0.122622) /
        // 1.066358 = 0.19746.
        assert!((lower_bound(30, 100) - 0.19746).abs() < 1e-4);
        assert_eq!(lower_bound(0, 0), 0.0);
        assert_eq!(lower_bound(0, 1000), 0.0);
        assert!(lower_bound(u64::MAX, u64::MAX) <= 1.0);
        assert!(
            lower_bound(u64::MAX, 1) <= 1.0,
            "events above trials are capped"
        );
        for (e, n) in [(0, 1), (1, 1), (5, 7), (1 << 40, 1 << 41)] {
            let b = lower_bound(e, n);
            assert!(
                b.is_finite() && (0.0..=e as f64 / n as f64).contains(&b),
                "{e}/{n}: {b}"
            );
        }
    }

    #[test]
    fn a_thin_or_healthy_blue_leaves_the_limit() {
        assert_eq!(absolute_limit(0.05, 1.2, 0, 0), Some(0.05));
        assert_eq!(absolute_limit(0.05, 1.2, 1, 3), Some(0.05));
        assert_eq!(absolute_limit(0.05, 1.2, 5, 1000), Some(0.05));
        assert!(!blue_above(0.05, 1, 3));
        // Three of three is already strong evidence (5%³ = 1.25e-4): the bound is ~31%.
        assert!(blue_above(0.05, 3, 3));
        assert!(
            !blue_above(0.05, 60, 1000),
            "6% of 1000 is not shown above 5%"
        );
        // 300 of 1000: the bound is ~26.4%: an incident, no absolute limit.
        assert!(blue_above(0.05, 300, 1000));
        assert_eq!(absolute_limit(0.05, 1.2, 300, 1000), None);
        // 67 of 1000: the bound is ~4.94%, just under the limit, which rises to 1.2 × that.
        let limit = absolute_limit(0.05, 1.2, 67, 1000).unwrap();
        assert!((0.059..0.0595).contains(&limit), "{limit}");
        assert!(!blue_above(0.05, 67, 1000));
    }
}
