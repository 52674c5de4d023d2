//! The stats windows the rollout controller keeps, and how a transition changes them.
//!
//! Isolates' batches are added to the windows of the split they were **routed under**: each
//! batch entry carries the routing version its requests followed. Requests of the current
//! step's splits count in the evaluation window and the step; requests an isolate still routed
//! by an earlier step's split (its cached document was a minute old, or its batch arrived after
//! the step changed) count in the rollout and in the evidence, with their own split's share,
//! but not in the step; requests routed before the rollout began count in no judged window.
//! A transition's effects say which windows restart ([`Scopes::after`]); a tick judges the
//! evaluation window, split by routing version, with blue's p95 over the rollout so far as the
//! sequential test's latency reference ([`Scopes::tick`]). Beside the windows, the lifetime
//! counters ([`Lifetime`]) count every batch entry and are never restarted.
//! Stored as JSON in the controller's storage: a stored format (see `tests/stored_formats.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::controller::lifetime::Lifetime;
use crate::controller::rollout::{Command, CostSample, Effect, State, Stratum};
use crate::environment::Environment;
use crate::judge::losses::Losses;
use crate::shadow::{ShadowEntry, ShadowScope};
use crate::stats::{BatchEntry, EnvStats, Pair};

/// Most routing versions one evaluation window keeps apart; beyond it the two oldest are
/// merged (a version is a split the controller wrote, so this takes more transitions between
/// two ticks than any operator makes).
pub const MAX_VERSIONS: usize = 16;

/// The stats windows the controller keeps, each per environment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scopes {
    /// Since the last conclusive verdict, requests of the current step: what the threshold
    /// gates judge.
    pub window: Pair<EnvStats>,
    /// Since the current step began, requests routed under its splits.
    pub step: Pair<EnvStats>,
    /// Since the current (or last) rollout began, requests routed under its splits; before any
    /// rollout, since the controller first counted.
    pub rollout: Pair<EnvStats>,
    /// Requests a client forced to an environment, over the same span as `rollout`: counted
    /// apart so that no client can steer a verdict or a traffic share.
    #[serde(default)]
    pub forced: Pair<EnvStats>,
    /// The evaluation window's requests by the routing version they were routed under, earlier
    /// steps' included: what the sequential test judges, each version with its own share.
    /// Absent in windows stored before versions were kept (see [`Scopes::versioned`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_version: BTreeMap<u64, Pair<EnvStats>>,
    /// The routing version the current step began with: requests routed under an earlier one
    /// are not the step's.
    #[serde(default)]
    pub step_version: u64,
    /// The routing version the current rollout began with: requests routed under an earlier
    /// one are not the rollout's and count in the minutes (history) only.
    #[serde(default)]
    pub rollout_version: u64,
    /// Requests that arrived after their rollout ended or before it began (routed under a
    /// split older than `rollout_version`): in the history, in no judged window.
    #[serde(default)]
    pub earlier_requests: u64,
    /// Every request since this version first counted, by environment and model, never
    /// restarted: what the metrics endpoint serves. Absent in windows stored before it was
    /// kept, which then start it at zero.
    #[serde(default)]
    pub lifetime: Lifetime,
    /// Shadow copies paired with blue's answers ([`crate::shadow`]): the tick's pairs, the
    /// step's and the rollout's figures. Absent in windows stored before shadow steps.
    #[serde(default, skip_serializing_if = "no_shadow")]
    pub shadow: ShadowScope,
    /// The rollout's last pairs green lost, as the grader judged them ([`crate::judge::losses`]).
    /// Absent while there are none, and in windows stored before the grader judged.
    #[serde(default, skip_serializing_if = "Losses::is_empty")]
    pub judge_losses: Losses,
}

/// No shadow figures at all: every window's figures are also the rollout's, so an empty
/// rollout means empty windows (and a cheap check, not a comparison of every histogram).
fn no_shadow(s: &ShadowScope) -> bool {
    s.rollout.is_empty()
}

impl Scopes {
    /// Windows loaded from storage, made ready for the split `current` in force: windows stored
    /// before versions were kept hold the window's requests as the current version's.
    pub fn versioned(mut self, current: u64) -> Scopes {
        let window_requests = self
            .window
            .blue
            .requests
            .saturating_add(self.window.green.requests);
        if self.by_version.is_empty() && window_requests > 0 {
            self.by_version.insert(current, self.window.clone());
        }
        // Stored before versions were kept (both 0): the current split begins the step, so that
        // a late batch of the step before counts as that step's from now on.
        if self.step_version == 0 && self.rollout_version == 0 {
            self.step_version = current;
        }
        self
    }

    /// Adds a batch entry: forced requests to `forced` alone; the others by the version they
    /// were routed under, `state` being the one in force. An entry without a version (an
    /// isolate of an earlier release) or with one the controller has not written yet counts as
    /// routed under the current one. Every entry counts in the lifetime counters too, routed
    /// ones under the model their environment had in that version's split.
    ///
    /// Returns whether the entry landed in the windows a verdict judges (not forced, not
    /// routed before the rollout).
    pub fn add_entry(&mut self, entry: &BatchEntry, state: &State) -> bool {
        if entry.forced {
            self.forced.get_mut(entry.env).merge(&entry.stats);
            self.lifetime.add_forced(entry.env, entry.stats.requests);
            return false;
        }
        let current = state.version();
        let version = if current < self.rollout_version {
            // The state in force is older than these windows' rollout (replaced while it could
            // not be read): versions cannot be told apart, so everything is the step's.
            self.step_version
        } else {
            entry.version.filter(|v| *v <= current).unwrap_or(current)
        };
        let model = state.model_under(entry.env, version);
        self.lifetime.add(entry.env, model, &entry.stats);
        self.add_routed(entry.env, &entry.stats, version)
    }

    /// Adds an isolate's shadow figures, routed under `entry.version` (`state` being the one in
    /// force), to the shadow windows: those routed before the rollout began count in none of
    /// them. Every entry counts in the lifetime counters, under green's model in that version's
    /// split.
    pub fn add_shadow(&mut self, entry: &ShadowEntry, state: &State) {
        let version = entry.version.min(state.version());
        let model = state.model_under(Environment::Green, version);
        self.lifetime.add_shadow(model, &entry.stats);
        if version < self.rollout_version {
            return;
        }
        self.shadow
            .add(&entry.stats, version >= self.step_version, version);
    }

    /// Adds a batch's last lost pairs, those of the current rollout only (a late batch of the
    /// last rollout's isolates may still carry its losses).
    pub fn add_losses(&mut self, losses: &[crate::judge::losses::Loss]) {
        self.judge_losses.add_since(losses, self.rollout_version);
    }

    /// Adds one environment's stats routed under `version` to the windows it belongs to;
    /// false when that is none (routed before the rollout began).
    pub fn add_routed(&mut self, env: Environment, stats: &EnvStats, version: u64) -> bool {
        if version < self.rollout_version {
            self.earlier_requests = self.earlier_requests.saturating_add(stats.requests);
            return false;
        }
        self.rollout.get_mut(env).merge(stats);
        if version >= self.step_version {
            self.window.get_mut(env).merge(stats);
            self.step.get_mut(env).merge(stats);
        }
        self.by_version
            .entry(version)
            .or_default()
            .get_mut(env)
            .merge(stats);
        if self.by_version.len() > MAX_VERSIONS {
            let oldest = self.by_version.pop_first().map(|(_, p)| p);
            if let (Some(oldest), Some(mut next)) = (oldest, self.by_version.first_entry()) {
                next.get_mut().merge(&oldest);
            }
        }
        true
    }

    /// Adds one environment's stats to every judged window, as routed under the split that
    /// began the step.
    pub fn add(&mut self, env: Environment, stats: &EnvStats) {
        self.add_routed(env, stats, self.step_version);
    }

    /// The windows once `effects` have restarted the ones they name, `version` being the new
    /// state's routing version; called before a transition is stored, so that the new windows
    /// are stored with the new state.
    pub fn after(&self, effects: &[Effect], version: u64) -> Scopes {
        let mut next = self.clone();
        next.restart(effects, version);
        next
    }

    /// [`Scopes::after`] in place: restarts the windows `effects` name.
    pub fn restart(&mut self, effects: &[Effect], version: u64) {
        for effect in effects {
            match effect {
                Effect::ResetWindow => {
                    self.shadow.restart_window();
                    self.window = Pair::default();
                    self.by_version.clear();
                }
                Effect::ResetStep => {
                    self.shadow.restart_step();
                    self.window = Pair::default();
                    self.by_version.clear();
                    self.step = Pair::default();
                    self.step_version = version;
                    // A state replaced by an older one (recovered) must not leave the step
                    // before its rollout: every request would count as earlier.
                    self.rollout_version = self.rollout_version.min(version);
                }
                Effect::ResetRollout => {
                    *self = Scopes {
                        step_version: version,
                        rollout_version: version,
                        // The lifetime counters outlive every rollout.
                        lifetime: std::mem::take(&mut self.lifetime),
                        ..Scopes::default()
                    }
                }
                Effect::WriteSplit | Effect::Record(_) => {}
            }
        }
    }

    /// Each side's cost over the step, for `max_cost_ratio`: on a shadow step (copies paired in
    /// it) green's copies against the blue answers they were paired with, the same prompts;
    /// else the step's requests of each environment.
    fn step_cost(&self) -> Pair<CostSample> {
        let sh = &self.shadow.step;
        if sh.pairs.pairs == 0 {
            return self.step.map(CostSample::of);
        }
        Pair {
            green: CostSample::of(&sh.green),
            blue: CostSample::of(&sh.blue),
        }
    }

    /// The tick command for these windows: the evaluation window, its requests by the split
    /// they were routed under, and blue's p95 over the rollout so far as the latency reference.
    pub fn tick(&self) -> Command {
        Command::Tick {
            window: Box::new(self.window.clone()),
            strata: self
                .by_version
                .iter()
                .map(|(version, stats)| Stratum {
                    stats: stats.clone(),
                    in_step: *version >= self.step_version,
                    version: Some(*version),
                })
                .collect(),
            blue_p95_ms: self.rollout.blue.total.quantile_ms(0.95),
            step_cost: self.step_cost(),
            shadow: self.shadow.strata(),
            judge_reasons: self.judge_losses.reasons(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::routing::RoutingDoc;

    /// An idle controller on blue model `b` and green model `g`, at routing version `version`.
    fn at(version: u64) -> State {
        State::initial(&RoutingDoc {
            blue_model: "b".into(),
            green_model: "g".into(),
            green_percent: 0.0,
            shadow_percent: 0.0,
            sticky: true,
            version,
            updated_at: None,
            judge: None,
        })
    }

    fn one_request(ms: u64) -> EnvStats {
        let mut s = EnvStats {
            requests: 1,
            ..EnvStats::default()
        };
        s.total.record(ms);
        s
    }

    fn filled() -> Scopes {
        let mut s = Scopes::default();
        s.add(Environment::Blue, &one_request(100));
        s.add(Environment::Green, &one_request(200));
        s
    }

    #[test]
    fn each_effect_restarts_its_windows() {
        // (effects, window requests left, step requests left, rollout requests left), per env.
        let cases: [(&[Effect], u64, u64, u64); 5] = [
            (&[], 1, 1, 1),
            (&[Effect::WriteSplit], 1, 1, 1),
            (&[Effect::ResetWindow], 0, 1, 1),
            (&[Effect::ResetStep], 0, 0, 1),
            (&[Effect::ResetWindow, Effect::ResetRollout], 0, 0, 0),
        ];
        for (effects, window, step, rollout) in cases {
            let s = filled().after(effects, 1);
            for env in [Environment::Blue, Environment::Green] {
                let left = (
                    s.window.get(env).requests,
                    s.step.get(env).requests,
                    s.rollout.get(env).requests,
                );
                assert_eq!(left, (window, step, rollout), "{effects:?} {env:?}");
            }
        }
    }

    #[test]
    fn forced_requests_are_counted_apart_and_never_judged() {
        let mut s = Scopes::default();
        let entry = |env, forced, requests| BatchEntry {
            minute: 1,
            env,
            forced,
            version: Some(0),
            stats: EnvStats {
                requests,
                ..EnvStats::default()
            },
        };
        s.add_entry(&entry(Environment::Green, true, 200), &at(0));
        s.add_entry(&entry(Environment::Green, false, 3), &at(0));
        s.add_entry(&entry(Environment::Blue, false, 30), &at(0));
        // (window, step, rollout, forced) requests of green
        let green = |s: &Scopes| {
            (
                s.window.green.requests,
                s.step.green.requests,
                s.rollout.green.requests,
                s.forced.green.requests,
            )
        };
        assert_eq!(green(&s), (3, 3, 3, 200));
        let Command::Tick { window, .. } = s.tick() else {
            panic!("a tick")
        };
        assert_eq!((window.green.requests, window.blue.requests), (3, 30));
        // A new step keeps them; a new rollout restarts them with the rest.
        assert_eq!(green(&s.after(&[Effect::ResetStep], 1)), (0, 0, 3, 200));
        assert_eq!(green(&s.after(&[Effect::ResetRollout], 1)), (0, 0, 0, 0));
    }

    #[test]
    fn a_tick_judges_the_window_against_blues_rollout_p95() {
        let mut s = filled();
        // The window restarts; blue's reference still covers the whole rollout (100 ms, then
        // nineteen more at 100 and one at 5000: p95 of 21 is the 20th, 100 ms).
        s = s.after(&[Effect::ResetWindow], 0);
        for _ in 0..19 {
            s.add(Environment::Blue, &one_request(100));
        }
        s.add(Environment::Blue, &one_request(5000));
        let Command::Tick {
            window,
            blue_p95_ms,
            ..
        } = s.tick()
        else {
            panic!("a tick")
        };
        assert_eq!((window.blue.requests, window.green.requests), (20, 0));
        assert_eq!(blue_p95_ms, Some(100));
        assert_eq!(
            Scopes::default().tick(),
            Command::Tick {
                judge_reasons: Vec::new(),
                window: Box::default(),
                strata: Vec::new(),
                blue_p95_ms: None,
                step_cost: Pair::default(),
                shadow: Vec::new(),
            }
        );
    }

    /// `n` requests with `errors` failures.
    fn requests(n: u64, errors: u64) -> EnvStats {
        let mut s = EnvStats {
            requests: n,
            ..EnvStats::default()
        };
        s.errors.server_error = errors;
        s
    }

    fn routed(env: Environment, n: u64, version: Option<u64>) -> BatchEntry {
        BatchEntry {
            minute: 1,
            env,
            forced: false,
            version,
            stats: requests(n, 0),
        }
    }

    fn strata(s: &Scopes) -> Vec<(u64, u64, bool)> {
        let Command::Tick { strata, .. } = s.tick() else {
            panic!("a tick")
        };
        strata
            .iter()
            .map(|st| (st.stats.blue.requests, st.stats.green.requests, st.in_step))
            .collect()
    }

    #[test]
    fn requests_count_in_the_step_of_the_split_they_were_routed_under() {
        use Environment::{Blue, Green};
        // A rollout starts at version 5 (step 1, 10%); version 4 was the idle 0% split.
        let mut s = Scopes::default().after(&[Effect::ResetRollout], 5);
        s.add_entry(&routed(Blue, 90, Some(5)), &at(5));
        s.add_entry(&routed(Green, 10, Some(5)), &at(5));
        // An isolate a minute behind still routes by the idle split: not the rollout's.
        s.add_entry(&routed(Blue, 40, Some(4)), &at(5));
        assert_eq!(s.earlier_requests, 40);
        assert_eq!((s.rollout.blue.requests, s.step.blue.requests), (90, 90));
        assert_eq!(strata(&s), [(90, 10, true)]);
        // The tick judges it, and advances: step 2, 50%, version 6.
        s = s.after(&[Effect::ResetStep], 6);
        // Step 1's late batch, and step 2's first requests.
        s.add_entry(&routed(Blue, 9, Some(5)), &at(6));
        s.add_entry(&routed(Green, 1, Some(5)), &at(6));
        s.add_entry(&routed(Blue, 50, Some(6)), &at(6));
        s.add_entry(&routed(Green, 50, Some(6)), &at(6));
        // Step 1's requests are the rollout's, not step 2's, and are judged with their share.
        assert_eq!((s.step.blue.requests, s.step.green.requests), (50, 50));
        assert_eq!((s.window.blue.requests, s.window.green.requests), (50, 50));
        assert_eq!(
            (s.rollout.blue.requests, s.rollout.green.requests),
            (149, 61)
        );
        assert_eq!(strata(&s), [(9, 1, false), (50, 50, true)]);
        // Without a version (an isolate of an earlier release) or ahead of the controller:
        // taken as the split in force.
        s.add_entry(&routed(Green, 7, None), &at(6));
        s.add_entry(&routed(Green, 3, Some(99)), &at(6));
        assert_eq!(strata(&s), [(9, 1, false), (50, 60, true)]);
        // The window's verdict closes all of them.
        assert!(strata(&s.after(&[Effect::ResetWindow], 6)).is_empty());
    }

    #[test]
    fn shadow_figures_count_in_the_step_of_the_split_they_were_routed_under() {
        use crate::shadow::{ShadowEntry, ShadowStats};
        let entry = |version, pairs| ShadowEntry {
            minute: 1,
            version,
            stats: ShadowStats {
                pairs: crate::shadow::PairCounts {
                    pairs,
                    ..Default::default()
                },
                ..ShadowStats::default()
            },
        };
        // The rollout began at version 5, its step at 6.
        let mut s = Scopes::default().after(&[Effect::ResetRollout], 5);
        s = s.after(&[Effect::ResetStep], 6);
        s.add_shadow(&entry(4, 1), &at(6)); // before the rollout: nowhere
        s.add_shadow(&entry(5, 10), &at(6)); // the step before: the rollout's
        s.add_shadow(&entry(6, 100), &at(6)); // the step's
        s.add_shadow(&entry(9, 1000), &at(6)); // ahead of the controller: the one in force
        let sh = &s.shadow;
        assert_eq!(
            (
                sh.rollout.pairs.pairs,
                sh.step.pairs.pairs,
                sh.earlier.pairs.pairs
            ),
            (1110, 1100, 10)
        );
        let Command::Tick { shadow, .. } = s.tick() else {
            panic!("a tick")
        };
        let judged: Vec<(u64, bool)> = shadow
            .iter()
            .map(|st| (st.stats.pairs.pairs, st.in_step))
            .collect();
        assert_eq!(judged, [(1100, true), (10, false)]);
        // The tick's verdict spends them; the step and rollout keep them.
        let s = s.after(&[Effect::ResetWindow], 6);
        assert!(s.shadow.strata().is_empty());
        assert_eq!(s.shadow.step.pairs.pairs, 1100);
    }

    /// On a shadow step `max_cost_ratio` compares the copies' cost with their blue answers':
    /// green has no live request there. Off it, the live requests'.
    #[test]
    fn a_shadow_steps_cost_is_its_copies_against_their_blue_answers() {
        use crate::shadow::{ShadowEntry, ShadowStats};
        let cost = |requests, cost_usd| EnvStats {
            requests,
            cost_usd,
            ..EnvStats::default()
        };
        let mut s = Scopes::default().after(&[Effect::ResetRollout], 5);
        s.add_routed(Environment::Blue, &cost(100, 1.0), 5);
        let live = s.step_cost();
        assert_eq!((live.green.requests, live.blue.requests), (0, 100));
        let mut stats = ShadowStats {
            green: cost(20, 0.6),
            blue: cost(20, 0.2),
            ..ShadowStats::default()
        };
        stats.pairs.pairs = 20;
        s.add_shadow(
            &ShadowEntry {
                minute: 1,
                version: 5,
                stats,
            },
            &at(5),
        );
        let c = s.step_cost();
        // $0.03 against $0.01 a request: 3× blue's.
        assert_eq!((c.green.requests, c.blue.requests), (20, 20));
        assert_eq!((c.green.cost_usd, c.blue.cost_usd), (0.6, 0.2));
    }

    #[test]
    fn versions_kept_apart_are_bounded() {
        let mut s = Scopes::default();
        for v in 0..100u64 {
            s.add_routed(Environment::Green, &requests(1, 0), v);
        }
        assert_eq!(s.by_version.len(), MAX_VERSIONS);
        let total: u64 = s.by_version.values().map(|p| p.green.requests).sum();
        assert_eq!(total, 100, "merged, never dropped");
    }

    #[test]
    fn windows_stored_before_versions_are_the_current_splits() {
        let mut old = Scopes::default();
        old.window = Pair {
            blue: requests(20, 1),
            green: requests(5, 2),
        };
        old.step = old.window.clone();
        let json = serde_json::to_string(&old).unwrap();
        assert!(!json.contains("by_version"));
        let loaded: Scopes = serde_json::from_str(&json).unwrap();
        let s = loaded.versioned(7);
        assert_eq!(strata(&s), [(20, 5, true)]);
        assert_eq!(s.by_version[&7].green.errors(), 2);
        // Nothing to adopt: nothing invented.
        assert!(Scopes::default().versioned(7).by_version.is_empty());
    }

    #[test]
    fn lifetime_counters_count_every_entry_and_outlive_rollouts() {
        use Environment::{Blue, Green};
        let mut s = Scopes::default();
        s.add_entry(&routed(Blue, 90, Some(3)), &at(3));
        s.add_entry(&routed(Green, 10, Some(3)), &at(3));
        let mut forced = routed(Green, 4, Some(3));
        forced.forced = true;
        s.add_entry(&forced, &at(3));
        // A rollout starts at version 4; an isolate still on version 3 is not the rollout's,
        // but it is the lifetime's.
        s = s.after(&[Effect::ResetRollout, Effect::WriteSplit], 4);
        s.add_entry(&routed(Blue, 5, Some(3)), &at(4));
        s.add_entry(&routed(Blue, 20, Some(4)), &at(4));
        assert_eq!((s.rollout.blue.requests, s.earlier_requests), (20, 5));
        let series: Vec<(Environment, &str, u64)> = s
            .lifetime
            .series
            .iter()
            .map(|x| (x.environment, x.model.as_str(), x.stats.requests))
            .collect();
        assert_eq!(series, [(Green, "g", 10), (Blue, "b", 115)]);
        assert_eq!(s.lifetime.forced.green, 4);
        // Every restart keeps them.
        let effects = [Effect::ResetWindow, Effect::ResetStep, Effect::ResetRollout];
        assert_eq!(s.after(&effects, 5).lifetime, s.lifetime);
    }
}
