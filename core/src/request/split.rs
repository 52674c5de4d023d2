//! Which environment serves a request.
//!
//! The split works in basis points: a request falls into a bucket in `0..10_000` and goes green
//! when its bucket is below green's share in whole buckets ([`green_buckets`]: `green_percent`
//! to the nearest 0.01%, so 0.07% is exactly 7 buckets). A sticky key's bucket comes from xxHash64
//! (seed 0), whose output is fixed by its specification, so the same user lands in the same
//! bucket on every isolate, build and deploy; and since the green range only ever grows with the
//! percentage, raising it moves users from blue to green and never back. Requests without a
//! sticky key use a bucket drawn at random by the shell.

use serde::Serialize;

use crate::environment::Environment;
use crate::request::routing::RoutingDoc;

/// Number of buckets: one per basis point of traffic.
pub const BUCKETS: u32 = 10_000;

/// Why a request went where it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// The client named the environment in `x-bluegreen-environment`.
    Forced,
    /// The sticky key's hash chose the bucket.
    Sticky,
    /// A random bucket (no sticky key, or stickiness off).
    Random,
    /// A follow-up of a response (the Responses API's `previous_response_id`): it goes to the
    /// environment that made that response, whatever the split.
    Conversation,
}

/// The outcome of [`select`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// The environment to try first.
    pub environment: Environment,
    /// What decided it.
    pub basis: Basis,
}

/// The bucket of a sticky key: xxHash64 (seed 0) of its UTF-8 bytes, modulo [`BUCKETS`].
pub fn sticky_bucket(key: &str) -> u32 {
    (xxhash_rust::xxh64::xxh64(key.as_bytes(), 0) % u64::from(BUCKETS)) as u32
}

/// Maps a uniformly random `u64` to a bucket. The modulo bias is below 1e-15.
pub fn random_bucket(draw: u64) -> u32 {
    (draw % u64::from(BUCKETS)) as u32
}

/// Green's share of the [`BUCKETS`] for `green_percent` (0–100): the nearest whole number of
/// basis points, half-way up. Comparing buckets with the float `green_percent * 100` instead
/// would give 0.07% eight buckets (`0.07 * 100.0` is `7.000000000000001`); every percentage
/// with at most two decimals lands here on its exact count, and more decimals round to the
/// nearest bucket. Monotonic in `green_percent` (a product by a constant and `round` both
/// are), so raising the share never takes a bucket from green. Total: below 0 or NaN is 0,
/// above 100 is every bucket.
pub fn green_buckets(green_percent: f64) -> u32 {
    // `as` saturates at 0 and `u32::MAX`, and turns NaN into 0.
    ((green_percent * 100.0).round() as u32).min(BUCKETS)
}

/// True when `bucket` falls in the green range for `green_percent` (0–100).
pub fn is_green(bucket: u32, green_percent: f64) -> bool {
    bucket < green_buckets(green_percent)
}

/// Chooses the environment for one request.
///
/// `forced` wins; then `continues`, the environment that made the response a follow-up
/// continues (its state lives with that environment's model); otherwise, when the document is
/// sticky and `sticky_key` is non-empty, the key's bucket decides; otherwise `random_bucket`
/// (drawn by the caller) does.
pub fn select(
    doc: &RoutingDoc,
    forced: Option<Environment>,
    continues: Option<Environment>,
    sticky_key: Option<&str>,
    random_bucket: u32,
) -> Selection {
    let pinned = match (forced, continues) {
        (Some(environment), _) => Some((environment, Basis::Forced)),
        (None, Some(environment)) => Some((environment, Basis::Conversation)),
        (None, None) => None,
    };
    if let Some((environment, basis)) = pinned {
        return Selection { environment, basis };
    }
    let (bucket, basis) = match sticky_key.filter(|k| doc.sticky && !k.is_empty()) {
        Some(key) => (sticky_bucket(key), Basis::Sticky),
        None => (random_bucket, Basis::Random),
    };
    let environment = if is_green(bucket, doc.green_percent) {
        Environment::Green
    } else {
        Environment::Blue
    };
    Selection { environment, basis }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(green_percent: f64, sticky: bool) -> RoutingDoc {
        RoutingDoc {
            blue_model: "b".into(),
            green_model: "g".into(),
            green_percent,
            shadow_percent: 0.0,
            sticky,
            version: 1,
            updated_at: None,
            judge: None,
        }
    }

    #[test]
    fn a_follow_up_goes_where_its_conversation_is_unless_the_client_forces_it() {
        let d = doc(0.0, true);
        let s = select(&d, None, Some(Environment::Green), Some("alice"), 0);
        assert_eq!(
            (s.environment, s.basis),
            (Environment::Green, Basis::Conversation)
        );
        let s = select(&doc(100.0, false), None, Some(Environment::Blue), None, 0);
        assert_eq!(
            (s.environment, s.basis),
            (Environment::Blue, Basis::Conversation)
        );
        let s = select(
            &d,
            Some(Environment::Blue),
            Some(Environment::Green),
            None,
            0,
        );
        assert_eq!((s.environment, s.basis), (Environment::Blue, Basis::Forced));
    }

    #[test]
    fn xxh64_matches_the_specification_vectors() {
        // Reference values of XXH64 with seed 0 (xxHash's own test vectors / `xxhsum -H1`).
        assert_eq!(xxhash_rust::xxh64::xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxhash_rust::xxh64::xxh64(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxhash_rust::xxh64::xxh64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
    }

    #[test]
    fn sticky_buckets_are_pinned_forever() {
        // If these change, every deployed user is reshuffled: never update them casually.
        // 0xD24EC4F1A98C6E5B % 10000 = 15154266338359012955 % 10000 = 2955
        assert_eq!(sticky_bucket("a"), 2955);
        // 0x44BC2CF5AD770999 % 10000 = 4952883123889572249 % 10000 = 2249
        assert_eq!(sticky_bucket("abc"), 2249);
    }

    #[test]
    fn boundaries_of_the_green_range() {
        assert!(!is_green(0, 0.0));
        assert!(is_green(0, 0.01));
        assert!(is_green(2999, 30.0));
        assert!(!is_green(3000, 30.0));
        assert!(is_green(9999, 100.0));
        // 0.07 * 100.0 is 7.000000000000001 in floats: 7 buckets (0..=6), not 8.
        assert!(is_green(6, 0.07));
        assert!(!is_green(7, 0.07));
        // 12.345 * 100.0 is 1234.5 in floats: half-way, up to 1235 buckets.
        assert!(is_green(1234, 12.345));
        assert!(!is_green(1235, 12.345));
    }

    #[test]
    fn every_two_decimal_percentage_is_its_exact_number_of_buckets() {
        // Parsed from text, as the vars, KV and the admin API give them: "0.07" -> 7 and so
        // on for all 10 001 of them, whatever error the float carries.
        for n in 0..=BUCKETS {
            let text = format!("{}.{:02}", n / 100, n % 100);
            let pct: f64 = text.parse().unwrap();
            assert_eq!(green_buckets(pct), n, "{text}%");
            if n > 0 {
                assert!(is_green(n - 1, pct) && !is_green(n, pct), "{text}%");
            }
        }
    }

    #[test]
    fn green_buckets_is_nearest_monotonic_and_bounded_for_any_input() {
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};
        // Half-way cases of a third decimal go up when the float product lands on the half
        // (12.345 -> 1234.5) and to the side it lands on otherwise (0.285 ->
        // 28.499999999999996): shares are meant to two decimals, and either neighbour is
        // within the documented resolution.
        let table: [(f64, u32); 16] = [
            (0.0, 0),
            (-0.0, 0),
            (5e-324, 0), // the smallest subnormal
            (f64::MIN_POSITIVE, 0),
            (0.004_999, 0),
            (0.005, 1), // 0.005 * 100.0 == 0.5 exactly, half-way up
            (0.125, 13),
            (0.285, 28), // stored as 0.28499999999999998
            (12.345, 1235),
            (33.333_333_333, 3333),
            (66.666_666_667, 6667),
            (99.994_999, 9999),
            (99.999_999_999, BUCKETS),
            (100.0, BUCKETS),
            (-1.0, 0), // out of range: never in a valid document, still total
            (1e300, BUCKETS),
        ];
        for (pct, want) in table {
            assert_eq!(green_buckets(pct), want, "{pct:e}%");
        }
        assert_eq!(green_buckets(f64::NAN), 0);
        assert_eq!(green_buckets(f64::INFINITY), BUCKETS);
        assert_eq!(green_buckets(f64::NEG_INFINITY), 0);

        // Random shares over 0–100, some with many decimals, some near the ends (fixed seed:
        // a failure replays): within half a bucket of the exact product (the float product's
        // own error is below 1e-11 of a bucket), and sorted shares give sorted bucket counts.
        let mut rng = SmallRng::seed_from_u64(11);
        let mut shares: Vec<f64> = (0..100_000)
            .map(|i| match i % 4 {
                0 => rng.random_range(0.0..=100.0),
                1 => f64::from(rng.random_range(0..=10_000u32)) / 100.0,
                2 => rng.random_range(0.0..1e-3),
                _ => 100.0 - rng.random_range(0.0..1e-3),
            })
            .collect();
        shares.sort_by(f64::total_cmp);
        let mut previous = 0;
        for pct in shares {
            let b = green_buckets(pct);
            assert!(b <= BUCKETS);
            assert!(
                (f64::from(b) - pct * 100.0).abs() <= 0.5 + 1e-9,
                "{pct}% -> {b}"
            );
            assert!(b >= previous, "{pct}% -> {b} after {previous}");
            previous = b;
        }
    }

    #[test]
    fn forced_beats_everything() {
        let d = doc(100.0, true);
        let s = select(&d, Some(Environment::Blue), None, Some("user"), 0);
        assert_eq!(s.environment, Environment::Blue);
        assert_eq!(s.basis, Basis::Forced);
        let s = select(&doc(0.0, true), Some(Environment::Green), None, None, 9999);
        assert_eq!(s.environment, Environment::Green);
    }

    #[test]
    fn sticky_key_ignores_the_random_draw() {
        let d = doc(50.0, true);
        let first = select(&d, None, None, Some("alice"), 0);
        for draw in [0, 4999, 5000, 9999] {
            let s = select(&d, None, None, Some("alice"), draw);
            assert_eq!(s, first);
            assert_eq!(s.basis, Basis::Sticky);
        }
    }

    #[test]
    fn without_stickiness_or_key_the_draw_decides() {
        for (sticky, key) in [(false, Some("alice")), (true, None), (true, Some(""))] {
            let d = doc(30.0, sticky);
            assert_eq!(
                select(&d, None, None, key, 2999).environment,
                Environment::Green
            );
            assert_eq!(
                select(&d, None, None, key, 3000).environment,
                Environment::Blue
            );
            assert_eq!(select(&d, None, None, key, 3000).basis, Basis::Random);
        }
    }

    #[test]
    fn raising_the_percentage_only_moves_users_blue_to_green() {
        let keys: Vec<String> = (0..5000).map(|i| format!("user-{i}")).collect();
        let mut previous: Vec<Environment> = vec![Environment::Blue; keys.len()];
        for pct in [0.0, 0.5, 10.0, 10.01, 30.0, 50.0, 70.0, 99.99, 100.0] {
            let d = doc(pct, true);
            for (key, prev) in keys.iter().zip(previous.iter_mut()) {
                let now = select(&d, None, None, Some(key), 0).environment;
                assert!(
                    !(*prev == Environment::Green && now == Environment::Blue),
                    "{key} moved green -> blue when raising to {pct}%"
                );
                *prev = now;
            }
        }
        assert!(previous.iter().all(|e| *e == Environment::Green));
    }

    #[test]
    fn sticky_buckets_are_uniform_enough() {
        // 100_000 sequential keys at 30%: expected 30_000 green, sd = sqrt(1e5*0.3*0.7) = 145;
        // 5 sd = 725 is a bound a uniform hash misses with probability below 1e-6.
        let green = (0..100_000)
            .filter(|i| is_green(sticky_bucket(&format!("user-{i}")), 30.0))
            .count() as i64;
        assert!((green - 30_000).abs() < 725, "green = {green}");
    }

    #[test]
    fn environment_header_parsing() {
        assert_eq!(Environment::parse("green"), Some(Environment::Green));
        assert_eq!(Environment::parse(" Blue "), Some(Environment::Blue));
        assert_eq!(Environment::parse("purple"), None);
        assert_eq!(Environment::parse(""), None);
    }
}
