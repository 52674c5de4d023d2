//! The controller's lifetime counters: every request it has counted since this version first
//! ran, by the environment it was routed to and that environment's model, never restarted (not
//! by a new rollout, a completion or a rollback). The metrics endpoint exposes them as
//! Prometheus counters, which must only grow; the stats windows ([`crate::controller::windows`]) restart
//! with each rollout and so cannot serve as counters.
//!
//! The number of (environment, model) series is bounded by [`MAX_SERIES`]: past it the one
//! counted least recently is dropped (its counters leave the exposition, which Prometheus takes
//! as a series ending, not as a counter going down). With two series in force at any time that
//! keeps the last few rollouts' models. Stored inside the stats windows, a stored format.

use serde::{Deserialize, Serialize};

use crate::environment::Environment;
use crate::shadow::ShadowStats;
use crate::stats::{EnvStats, Pair};

/// Most (environment, model) series kept: the two in force and the last three rollouts' others.
pub const MAX_SERIES: usize = 8;

/// One environment and model's requests over the controller's life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// The environment the requests were routed to.
    pub environment: Environment,
    /// The model that environment had in the split they were routed under.
    pub model: String,
    /// Their stats, merged since the series began.
    pub stats: EnvStats,
}

/// The counters that only grow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lifetime {
    /// Routed requests by environment and model, the one counted least recently first.
    pub series: Vec<Series>,
    /// Requests a client forced to an environment (never judged), by environment.
    pub forced: Pair<u64>,
    /// Shadow copies green answered (or that were given up part way), by green's model: the
    /// copies' own stats, bounded as `series` is. Absent in counters stored before copies were
    /// counted here, and left out of what is written while there are none (as are the two
    /// counts below).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shadow: Vec<Series>,
    /// Copies given up unfinished, and requests drawn for a copy but not copied (capped).
    #[serde(skip_serializing_if = "is_zero")]
    pub shadow_unfinished: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub shadow_capped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Lifetime {
    /// Adds routed requests of `env` on `model`.
    pub fn add(&mut self, env: Environment, model: &str, stats: &EnvStats) {
        add_to(&mut self.series, env, model, stats);
    }

    /// Adds an isolate's shadow figures, the copies of green on `model`: their counts, not their
    /// latency histograms (which nothing exposes, and which would grow what each stats post
    /// stores).
    pub fn add_shadow(&mut self, model: &str, stats: &ShadowStats) {
        if stats.green.requests > 0 {
            let mut copies = stats.green.clone();
            copies.first_byte = Default::default();
            copies.total = Default::default();
            add_to(&mut self.shadow, Environment::Green, model, &copies);
        }
        self.shadow_unfinished = self.shadow_unfinished.saturating_add(stats.unfinished);
        self.shadow_capped = self.shadow_capped.saturating_add(stats.capped);
    }

    /// Adds `requests` a client forced to `env`.
    pub fn add_forced(&mut self, env: Environment, requests: u64) {
        let n = self.forced.get_mut(env);
        *n = n.saturating_add(requests);
    }

    /// Routed requests over every series kept.
    pub fn requests(&self) -> u64 {
        self.series
            .iter()
            .map(|s| s.stats.requests)
            .fold(0, u64::saturating_add)
    }
}

/// Merges `stats` into the series of `env` and `model` in `list`, which then comes last (the
/// most recently counted); past [`MAX_SERIES`] the first is dropped.
fn add_to(list: &mut Vec<Series>, env: Environment, model: &str, stats: &EnvStats) {
    let found = list
        .iter()
        .position(|s| s.environment == env && s.model == model);
    let mut series = match found {
        Some(i) => list.remove(i),
        None => Series {
            environment: env,
            model: model.to_string(),
            stats: EnvStats::default(),
        },
    };
    series.stats.merge(stats);
    list.push(series);
    if list.len() > MAX_SERIES {
        list.remove(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Environment::{Blue, Green};

    fn requests(n: u64) -> EnvStats {
        EnvStats {
            requests: n,
            ..EnvStats::default()
        }
    }

    #[test]
    fn series_merge_by_environment_and_model() {
        let mut l = Lifetime::default();
        l.add(Blue, "b", &requests(3));
        l.add(Green, "g", &requests(1));
        l.add(Blue, "b", &requests(4));
        l.add(Blue, "g", &requests(2));
        l.add_forced(Green, 5);
        let seen: Vec<(Environment, &str, u64)> = l
            .series
            .iter()
            .map(|s| (s.environment, s.model.as_str(), s.stats.requests))
            .collect();
        // Most recently counted last.
        assert_eq!(seen, [(Green, "g", 1), (Blue, "b", 7), (Blue, "g", 2)]);
        assert_eq!((l.requests(), l.forced.green, l.forced.blue), (10, 5, 0));
    }

    #[test]
    fn shadow_copies_count_apart_by_green_model() {
        let mut l = Lifetime::default();
        let mut copies = ShadowStats::default();
        copies.green.requests = 3;
        copies.green.total.record_n(800, 3);
        copies.green.first_byte.record_n(300, 3);
        copies.unfinished = 1;
        copies.capped = 2;
        l.add_shadow("g", &copies);
        l.add_shadow("g", &copies);
        // Only capped or unfinished copies: no series, the counts still grow.
        l.add_shadow(
            "h",
            &ShadowStats {
                capped: 5,
                ..ShadowStats::default()
            },
        );
        let seen: Vec<(Environment, &str, u64)> = l
            .shadow
            .iter()
            .map(|s| (s.environment, s.model.as_str(), s.stats.requests))
            .collect();
        assert_eq!(seen, [(Green, "g", 6)]);
        // Counts only: the copies' latency is not kept here.
        assert_eq!(l.shadow[0].stats.total.count(), 0);
        assert_eq!(l.shadow[0].stats.first_byte.count(), 0);
        assert_eq!((l.shadow_unfinished, l.shadow_capped), (2, 9));
        // Copies are not routed requests.
        assert_eq!(l.requests(), 0);
        for i in 0..=MAX_SERIES {
            l.add_shadow(&format!("m{i}"), &copies);
        }
        assert_eq!(l.shadow.len(), MAX_SERIES);
    }

    #[test]
    fn the_series_counted_least_recently_goes_first() {
        let mut l = Lifetime::default();
        l.add(Blue, "in-force", &requests(1));
        for i in 0..MAX_SERIES {
            l.add(Green, &format!("m{i}"), &requests(1));
            // The model in force keeps counting, so it is never the one dropped.
            l.add(Blue, "in-force", &requests(1));
        }
        assert_eq!(l.series.len(), MAX_SERIES);
        assert!(l.series.iter().all(|s| s.model != "m0"));
        let kept = l.series.iter().find(|s| s.model == "in-force").unwrap();
        assert_eq!(kept.stats.requests, 1 + MAX_SERIES as u64);
    }
}
