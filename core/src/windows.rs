//! The stats windows the rollout controller keeps, and how a transition changes them.
//!
//! Isolates' batches are added to every window at once. A transition's effects say which
//! windows restart ([`Scopes::after`]); a tick judges the evaluation window, with blue's p95
//! over the rollout so far as the sequential test's latency reference ([`Scopes::tick`]).
//! Stored as JSON in the controller's storage: a stored format (see `tests/stored_formats.rs`).

use serde::{Deserialize, Serialize};

use crate::environment::Environment;
use crate::rollout::{Command, Effect};
use crate::stats::{BatchEntry, EnvStats, Pair};

/// The stats windows the controller keeps, each per environment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scopes {
    /// Since the last conclusive verdict: what the next tick judges.
    pub window: Pair<EnvStats>,
    /// Since the current step began.
    pub step: Pair<EnvStats>,
    /// Since the current (or last) rollout began; before any rollout, since the controller
    /// first counted.
    pub rollout: Pair<EnvStats>,
    /// Requests a client forced to an environment, over the same span as `rollout`: counted
    /// apart so that no client can steer a verdict or a traffic share.
    #[serde(default)]
    pub forced: Pair<EnvStats>,
}

impl Scopes {
    /// Adds a batch entry: forced requests to `forced` alone, the others to every window.
    pub fn add_entry(&mut self, entry: &BatchEntry) {
        if entry.forced {
            self.forced.get_mut(entry.env).merge(&entry.stats);
        } else {
            self.add(entry.env, &entry.stats);
        }
    }

    /// Adds one environment's stats to every judged window.
    pub fn add(&mut self, env: Environment, stats: &EnvStats) {
        for pair in [&mut self.window, &mut self.step, &mut self.rollout] {
            pair.get_mut(env).merge(stats);
        }
    }

    /// The windows once `effects` have restarted the ones they name; called before a
    /// transition is stored, so that the new windows are stored with the new state.
    pub fn after(&self, effects: &[Effect]) -> Scopes {
        let mut next = self.clone();
        for effect in effects {
            match effect {
                Effect::ResetWindow => next.window = Pair::default(),
                Effect::ResetStep => {
                    next.window = Pair::default();
                    next.step = Pair::default();
                }
                Effect::ResetRollout => next = Scopes::default(),
                Effect::WriteSplit | Effect::Record(_) => {}
            }
        }
        next
    }

    /// The tick command for these windows: the evaluation window, and blue's p95 over the
    /// rollout so far as the latency reference.
    pub fn tick(&self) -> Command {
        Command::Tick {
            window: self.window.clone(),
            blue_p95_ms: self.rollout.blue.total.quantile_ms(0.95),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let s = filled().after(effects);
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
            stats: EnvStats {
                requests,
                ..EnvStats::default()
            },
        };
        s.add_entry(&entry(Environment::Green, true, 200));
        s.add_entry(&entry(Environment::Green, false, 3));
        s.add_entry(&entry(Environment::Blue, false, 30));
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
        assert_eq!(green(&s.after(&[Effect::ResetStep])), (0, 0, 3, 200));
        assert_eq!(green(&s.after(&[Effect::ResetRollout])), (0, 0, 0, 0));
    }

    #[test]
    fn a_tick_judges_the_window_against_blues_rollout_p95() {
        let mut s = filled();
        // The window restarts; blue's reference still covers the whole rollout (100 ms, then
        // nineteen more at 100 and one at 5000: p95 of 21 is the 20th, 100 ms).
        s = s.after(&[Effect::ResetWindow]);
        for _ in 0..19 {
            s.add(Environment::Blue, &one_request(100));
        }
        s.add(Environment::Blue, &one_request(5000));
        let Command::Tick {
            window,
            blue_p95_ms,
        } = s.tick()
        else {
            panic!("a tick")
        };
        assert_eq!((window.blue.requests, window.green.requests), (20, 0));
        assert_eq!(blue_p95_ms, Some(100));
        assert_eq!(
            Scopes::default().tick(),
            Command::Tick {
                window: Pair::default(),
                blue_p95_ms: None
            }
        );
    }
}
