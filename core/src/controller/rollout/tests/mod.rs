//! The rollout state machine's unit tests, by topic, as timelines on virtual time (`MIN` is a
//! minute of it). The helpers here start rollouts and build windows for every topic.

mod decide;
mod incident;
mod ladder;
mod operator;
mod sequential;
mod shadow;
mod spec;
mod split_check;
mod stored;

use super::*;
use crate::api::defects::Defect;
use crate::request::routing::RoutingDoc;
use crate::stats::{EnvStats, Pair};
use crate::verdict::health::{HealthPolicy, Method, VerdictStatus};

const MIN: u64 = 60_000;

fn routing() -> RoutingDoc {
    RoutingDoc {
        blue_model: "blue-m".into(),
        green_model: "old-green".into(),
        green_percent: 0.0,
        shadow_percent: 0.0,
        sticky: true,
        version: 7,
        updated_at: None,
        judge: None,
    }
}

/// A window with `n` requests per environment, `green_errors` of green's failed.
fn window(n: u64, green_errors: u64) -> Pair<EnvStats> {
    let mut w = Pair::<EnvStats>::default();
    w.blue.requests = n;
    w.green.requests = n;
    w.green.errors.server_error = green_errors;
    w
}

fn healthy() -> Pair<EnvStats> {
    window(100, 0)
}

fn bad() -> Pair<EnvStats> {
    window(100, 20)
}

fn spec(steps: &[(f64, u64)]) -> RolloutSpec {
    RolloutSpec {
        green_model: "green-m".into(),
        steps: steps
            .iter()
            .map(|&(green_percent, hold_seconds)| Step::live(green_percent, hold_seconds))
            .collect(),
        // These timelines are about the state machine; the threshold gates make their
        // windows easy to read. The sequential test has its own timelines below.
        health: HealthPolicy {
            method: Method::Threshold,
            ..HealthPolicy::default()
        },
    }
}

fn started(steps: &[(f64, u64)]) -> State {
    let t = apply(
        &State::initial(&routing()),
        Command::Start {
            spec: spec(steps),
            routing: routing(),
        },
        0,
    )
    .unwrap();
    assert_eq!(
        t.effects[..2],
        [Effect::ResetRollout, Effect::WriteSplit],
        "a start writes the first step's split"
    );
    t.state
}

fn tick(s: &State, w: Pair<EnvStats>, now: u64) -> Transition {
    apply(
        s,
        Command::Tick {
            judge_reasons: Vec::new(),
            window: Box::new(w),
            strata: Vec::new(),
            blue_p95_ms: None,
            step_cost: Pair::default(),
            shadow: Vec::new(),
        },
        now,
    )
    .unwrap()
}

/// The events a transition records.
fn events(t: &Transition) -> Vec<&Event> {
    t.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Record(ev) => Some(&**ev),
            _ => None,
        })
        .collect()
}

fn kinds(t: &Transition) -> Vec<EventKind> {
    events(t).into_iter().map(|ev| ev.kind).collect()
}

/// Puts a started rollout into `phase`.
fn in_phase(phase: Phase) -> State {
    let s = started(&[(10.0, 60), (50.0, 60)]);
    match phase {
        Phase::Idle => State::initial(&routing()),
        Phase::Progressing => s,
        Phase::Paused => apply(&s, Command::Pause, 1).unwrap().state,
        Phase::Completed => apply(&s, Command::Promote, 1).unwrap().state,
        Phase::RolledBack => apply(&s, Command::Rollback, 1).unwrap().state,
    }
}

/// A window of `n` requests per environment with the given errors, and latencies with a
/// slow tail (95 of each 100 at 100 ms, 5 at 1000 ms).
fn timed(n: u64, blue_errors: u64, green_errors: u64) -> Pair<EnvStats> {
    let mut w = Pair::<EnvStats>::default();
    for (s, e) in [(&mut w.blue, blue_errors), (&mut w.green, green_errors)] {
        s.requests = n;
        s.errors.server_error = e;
        s.total.record_n(100, n * 95 / 100);
        s.total.record_n(1000, n - n * 95 / 100);
    }
    w
}

fn started_sequential(steps: &[(f64, u64)], health: HealthPolicy) -> State {
    let t = apply(
        &State::initial(&routing()),
        Command::Start {
            spec: RolloutSpec {
                health,
                ..spec(steps)
            },
            routing: routing(),
        },
        0,
    )
    .unwrap();
    t.state
}

fn seq_tick(s: &State, w: Pair<EnvStats>, now: u64) -> Transition {
    let p95 = w.blue.total.quantile_ms(0.95);
    apply(
        s,
        Command::Tick {
            judge_reasons: Vec::new(),
            window: Box::new(w),
            strata: Vec::new(),
            blue_p95_ms: p95,
            step_cost: Pair::default(),
            shadow: Vec::new(),
        },
        now,
    )
    .unwrap()
}
