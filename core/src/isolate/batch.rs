//! An isolate's stats batch: what it gathers between flushes ([`Accumulator`]) and what it
//! sends to the rollout controller ([`Batch`]): each minute's stats per routing version and
//! environment, and the shadow copies' figures ([`crate::shadow`]). A stored and wire format:
//! the controller keeps batch ids, and an isolate's batch may reach a controller of another
//! release during a deploy (see `tests/stored_formats.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::environment::Environment;
use crate::judge::losses::{Loss, Losses};
use crate::request::outcome::Outcome;
use crate::request::split::Basis;
use crate::shadow::{ShadowEnd, ShadowEntry, ShadowStats};
use crate::stats::judged::JudgedCounts;
use crate::stats::{routed_environment, BatchEntry, EnvStats, Prices};

/// Stats an isolate accumulated since its last flush. `id` is random, so that the controller
/// can drop a batch that a retry delivers twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub id: String,
    pub entries: Vec<BatchEntry>,
    /// Shadow copies paired with blue's answers ([`crate::shadow`]). Absent (empty) in batches
    /// of versions before shadow steps; a controller of such a version ignores it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shadow: Vec<ShadowEntry>,
    /// A batch merged from a queue's messages ([`super::queued`]): the ids of the isolates'
    /// batches it holds, each counted once by the controller. Empty for an isolate's own batch,
    /// which counts once by its `id`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    /// A merged batch's oldest part: when its isolate sent it (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_ms: Option<u64>,
    /// The newest pairs green lost to blue in the grader's verdicts, at most
    /// [`crate::judge::losses::KEEP`] (their counts are in the entries). Absent while none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub judge_losses: Vec<Loss>,
}

impl Batch {
    /// Requests in the batch.
    pub fn requests(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| e.stats.requests)
            .fold(0, u64::saturating_add)
    }
}

/// What an isolate keeps apart between flushes: minute, routing version, green or not, forced
/// or not.
type Key = (u64, u64, bool, bool);

/// Outcomes gathered in an isolate between flushes, keyed by minute, the routing version they
/// were routed under, environment and whether the client forced the environment.
#[derive(Debug, Default)]
pub struct Accumulator {
    by_minute: BTreeMap<Key, EnvStats>,
    /// Shadow figures by minute and routing version.
    shadow: BTreeMap<(u64, u64), ShadowStats>,
    /// The newest pairs green lost in the grader's verdicts.
    losses: Losses,
}

impl Accumulator {
    /// Adds an outcome.
    pub fn add(&mut self, o: &Outcome, prices: &Prices) {
        let env = routed_environment(o);
        let key = (
            o.at_ms / 60_000,
            o.routing_version,
            env == Environment::Green,
            o.basis == Basis::Forced,
        );
        self.slot(key).record(o, prices);
    }

    /// Adds an entry made elsewhere (a refused feedback score's): merged by addition, as
    /// outcomes are, under its minute, version, environment and forcing.
    pub fn add_entry(&mut self, entry: &BatchEntry) {
        let key = (
            entry.minute,
            entry.version.unwrap_or(0),
            entry.env == Environment::Green,
            entry.forced,
        );
        self.slot(key).merge(&entry.stats);
    }

    /// Adds a shadow entry made elsewhere (another batch's), merged by addition under its
    /// minute and routing version.
    pub fn add_shadow_entry(&mut self, entry: &ShadowEntry) {
        let key = (entry.minute, entry.version);
        self.shadow.entry(key).or_default().merge(&entry.stats);
    }

    /// Counts a pair the grader judged, `judged` holding its one verdict and the grader's usage
    /// and cost, under green's stats of the request's `minute` and routing `version`; a loss
    /// is kept for the controller as well.
    pub fn add_judged(
        &mut self,
        minute: u64,
        version: u64,
        judged: JudgedCounts,
        loss: Option<Loss>,
    ) {
        let stats = EnvStats {
            judged,
            ..EnvStats::default()
        };
        self.slot((minute, version, true, false)).merge(&stats);
        if let Some(loss) = loss {
            self.losses.add(std::slice::from_ref(&loss));
        }
    }

    /// Losses of another batch's (merged by the queue's consumer).
    pub fn add_losses(&mut self, losses: &[Loss]) {
        self.losses.add(losses);
    }

    /// The stats kept under `key`, new when there are none yet (one place for both kinds of
    /// entry, so the map's insertion code is in the wasm once).
    fn slot(&mut self, key: Key) -> &mut EnvStats {
        self.by_minute.entry(key).or_default()
    }

    /// Counts a shadow copy's end (or, with `None`, a request the cost bound kept from being
    /// copied) under blue's outcome `blue`: its minute and routing version.
    pub fn add_shadow(&mut self, green: Option<&ShadowEnd>, blue: &Outcome, prices: &Prices) {
        let key = (blue.at_ms / 60_000, blue.routing_version);
        let stats = self.shadow.entry(key).or_default();
        match green {
            Some(end) => stats.record(end, blue, prices),
            None => stats.record_capped(),
        }
    }

    /// Requests counted since the last `take`.
    pub fn requests(&self) -> u64 {
        self.by_minute
            .values()
            .map(|s| s.requests)
            .fold(0, u64::saturating_add)
    }

    /// True when nothing was added since the last `take`.
    pub fn is_empty(&self) -> bool {
        self.by_minute.is_empty() && self.shadow.is_empty() && self.losses.is_empty()
    }

    /// Empties the accumulator into a batch named `id`.
    pub fn take(&mut self, id: String) -> Batch {
        let entries = std::mem::take(&mut self.by_minute)
            .into_iter()
            .map(|((minute, version, green, forced), stats)| BatchEntry {
                minute,
                forced,
                version: Some(version),
                env: if green {
                    Environment::Green
                } else {
                    Environment::Blue
                },
                stats,
            })
            .collect();
        let shadow = std::mem::take(&mut self.shadow)
            .into_iter()
            .map(|((minute, version), stats)| ShadowEntry {
                minute,
                version,
                stats,
            })
            .collect();
        Batch {
            id,
            entries,
            shadow,
            parts: Vec::new(),
            sent_ms: None,
            judge_losses: std::mem::take(&mut self.losses).list().to_vec(),
        }
    }
}
