//! Which environment serves a request.
//!
//! The split works in basis points: a request falls into a bucket in `0..10_000` and goes green
//! when its bucket is below `green_percent * 100`. A sticky key's bucket comes from xxHash64
//! (seed 0), whose output is fixed by its specification, so the same user lands in the same
//! bucket on every isolate, build and deploy; and since the green range only ever grows with the
//! percentage, raising it moves users from blue to green and never back. Requests without a
//! sticky key use a bucket drawn at random by the shell.

use serde::Serialize;

use crate::environment::Environment;
use crate::routing::RoutingDoc;

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

/// True when `bucket` falls in the green range for `green_percent` (0–100).
pub fn is_green(bucket: u32, green_percent: f64) -> bool {
    f64::from(bucket) < green_percent * 100.0
}

/// Chooses the environment for one request.
///
/// `forced` wins; otherwise, when the document is sticky and `sticky_key` is non-empty, the
/// key's bucket decides; otherwise `random_bucket` (drawn by the caller) does.
pub fn select(
    doc: &RoutingDoc,
    forced: Option<Environment>,
    sticky_key: Option<&str>,
    random_bucket: u32,
) -> Selection {
    if let Some(environment) = forced {
        return Selection {
            environment,
            basis: Basis::Forced,
        };
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
            sticky,
            version: 1,
            updated_at: None,
        }
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
        // 12.345% -> threshold 1234.5: bucket 1234 green, 1235 blue.
        assert!(is_green(1234, 12.345));
        assert!(!is_green(1235, 12.345));
    }

    #[test]
    fn forced_beats_everything() {
        let d = doc(100.0, true);
        let s = select(&d, Some(Environment::Blue), Some("user"), 0);
        assert_eq!(s.environment, Environment::Blue);
        assert_eq!(s.basis, Basis::Forced);
        let s = select(&doc(0.0, true), Some(Environment::Green), None, 9999);
        assert_eq!(s.environment, Environment::Green);
    }

    #[test]
    fn sticky_key_ignores_the_random_draw() {
        let d = doc(50.0, true);
        let first = select(&d, None, Some("alice"), 0);
        for draw in [0, 4999, 5000, 9999] {
            let s = select(&d, None, Some("alice"), draw);
            assert_eq!(s, first);
            assert_eq!(s.basis, Basis::Sticky);
        }
    }

    #[test]
    fn without_stickiness_or_key_the_draw_decides() {
        for (sticky, key) in [(false, Some("alice")), (true, None), (true, Some(""))] {
            let d = doc(30.0, sticky);
            assert_eq!(select(&d, None, key, 2999).environment, Environment::Green);
            assert_eq!(select(&d, None, key, 3000).environment, Environment::Blue);
            assert_eq!(select(&d, None, key, 3000).basis, Basis::Random);
        }
    }

    #[test]
    fn raising_the_percentage_only_moves_users_blue_to_green() {
        let keys: Vec<String> = (0..5000).map(|i| format!("user-{i}")).collect();
        let mut previous: Vec<Environment> = vec![Environment::Blue; keys.len()];
        for pct in [0.0, 0.5, 10.0, 10.01, 30.0, 50.0, 70.0, 99.99, 100.0] {
            let d = doc(pct, true);
            for (key, prev) in keys.iter().zip(previous.iter_mut()) {
                let now = select(&d, None, Some(key), 0).environment;
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
