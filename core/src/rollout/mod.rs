//! The rollout state machine: phases, the step ladder, and what each command or tick does.
//!
//! [`apply`] is a pure function of (state, command, now): it returns the next state and the
//! effects the shell must perform (write the split to KV, restart a stats window, store an
//! event, send an alert), or a refusal. The Durable Object loads the state, calls it, persists
//! the result and performs the effects. Nothing here reads a clock, storage or the network.
//!
//! A tick judges the *evaluation window*: the requests since the last conclusive verdict in
//! the current step. An inconclusive verdict (too little data) holds and lets the window grow;
//! a conclusive one (pass or fail) closes it, so consecutive failures are failures of disjoint
//! windows, never the same requests judged twice. That is also what makes ticks idempotent: a
//! duplicate tick finds an empty window, which is inconclusive and changes nothing, and a late
//! tick judges what accumulated and advances at most one step.
//!
//! A step advances when its hold time has passed and its latest conclusive verdict passed; the
//! last step passing completes the rollout (green becomes blue at 100%, the split returns to 0).
//! `failure_limit` consecutive failing verdicts roll back to 0% green.

mod events;
mod spec;
mod transition;

use serde::{Deserialize, Serialize};

use events::{by_operator, event};
pub use events::{Actor, Event, EventKind};
pub use spec::{default_steps, RolloutSpec, Step};
pub use transition::{Effect, Refusal, Transition};

use crate::fields::FieldError;
use crate::health::{judge, HealthPolicy, Method, Verdict, VerdictStatus};
use crate::routing::RoutingDoc;
use crate::sequential::{self, Evidence, Finding, TickCounts};
use crate::stats::{EnvStats, Pair};
use crate::time::format_rfc3339_ms;

/// Where the rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// No rollout: blue serves (or whatever split KV held when the controller started).
    Idle,
    /// Walking the step ladder on cron ticks.
    Progressing,
    /// Stopped on a step, or on a manual split, until resumed.
    Paused,
    /// Green became the new blue.
    Completed,
    /// Back to 0% green after failing verdicts or an operator's rollback.
    RolledBack,
}

impl Phase {
    /// The name used in JSON and messages.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Progressing => "progressing",
            Phase::Paused => "paused",
            Phase::Completed => "completed",
            Phase::RolledBack => "rolled_back",
        }
    }

    /// True while a rollout is under way (progressing or paused).
    pub fn is_active(self) -> bool {
        matches!(self, Phase::Progressing | Phase::Paused)
    }
}

/// The rollout under way, or the last one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// 1 for the first rollout, then counting.
    pub id: u64,
    pub green_model: String,
    /// The blue model when the rollout began.
    pub blue_model: String,
    pub steps: Vec<Step>,
    pub health: HealthPolicy,
    pub started_at_ms: u64,
    /// Index into `steps`.
    pub step_index: usize,
    /// When the current step began, shifted forward by time spent paused.
    pub step_started_at_ms: u64,
    /// Set while paused.
    pub paused_at_ms: Option<u64>,
    /// Failing verdicts in a row.
    pub consecutive_failures: u32,
    /// Whether the current step's latest conclusive verdict passed.
    pub step_passed: bool,
    /// When it completed or rolled back.
    pub ended_at_ms: Option<u64>,
    /// The sequential test's evidence, carried through every step of this rollout (not reset
    /// by a pause, a manual split or a resume).
    #[serde(default)]
    pub evidence: Evidence,
}

impl Rollout {
    /// The current step.
    pub fn step(&self) -> Step {
        self.steps[self.step_index]
    }

    /// Milliseconds spent on the current step, not counting time paused.
    pub fn step_elapsed_ms(&self, now_ms: u64) -> u64 {
        self.paused_at_ms
            .unwrap_or(now_ms)
            .saturating_sub(self.step_started_at_ms)
    }
}

/// The latest verdict, as shown in the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictRecord {
    #[serde(flatten)]
    pub verdict: Verdict,
    pub at_ms: u64,
    /// Failing verdicts in a row when it was given.
    pub consecutive_failures: u32,
    /// The step (1-based) it judged.
    pub step: usize,
}

/// The controller's whole state. Stored as JSON; every field has a meaning in the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub phase: Phase,
    pub blue_model: String,
    pub green_model: String,
    pub green_percent: f64,
    /// Carried into the routing document.
    pub sticky: bool,
    /// Bumped on every split the controller writes; the routing document's `version`.
    pub version: u64,
    pub rollout: Option<Rollout>,
    pub verdict: Option<VerdictRecord>,
}

impl State {
    /// A controller that has never run: idle, on the routing the request path is using.
    pub fn initial(routing: &RoutingDoc) -> State {
        State {
            phase: Phase::Idle,
            blue_model: routing.blue_model.clone(),
            green_model: routing.green_model.clone(),
            green_percent: routing.green_percent,
            sticky: routing.sticky,
            version: routing.version,
            rollout: None,
            verdict: None,
        }
    }

    /// Where the rollout is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The routing document version the state's split has (bumped on every split change).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Green's share of traffic now.
    pub fn green_percent(&self) -> f64 {
        self.green_percent
    }

    /// The latest verdict's status, once a tick has judged.
    pub fn verdict_status(&self) -> Option<VerdictStatus> {
        self.verdict.as_ref().map(|v| v.verdict.status)
    }

    /// The current (or last) rollout's id; `None` before the first rollout.
    pub fn rollout_id(&self) -> Option<u64> {
        self.rollout.as_ref().map(|r| r.id)
    }

    /// The current step (1-based) while a rollout is active.
    pub fn step_number(&self) -> Option<usize> {
        self.rollout
            .as_ref()
            .filter(|_| self.phase.is_active())
            .map(|r| r.step_index + 1)
    }

    /// The routing document that puts this state into force.
    pub fn routing_doc(&self, now_ms: u64) -> RoutingDoc {
        RoutingDoc {
            blue_model: self.blue_model.clone(),
            green_model: self.green_model.clone(),
            green_percent: self.green_percent,
            sticky: self.sticky,
            version: self.version,
            updated_at: Some(format_rfc3339_ms(now_ms)),
        }
    }
}

/// What an operator or the cron asks of the controller.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start a rollout. `routing` is the split in force, whose blue model stays blue.
    Start {
        spec: RolloutSpec,
        routing: RoutingDoc,
    },
    /// Straight to completion.
    Promote,
    /// Back to 0% green.
    Rollback,
    Pause,
    /// Back to the current step's split, with the hold timer running again.
    Resume,
    /// A manual split; pauses the rollout.
    SetSplit {
        green_percent: f64,
    },
    /// A cron tick, with the evaluation window's stats and blue's p95 over the rollout so far
    /// (the sequential test's latency reference).
    Tick {
        window: Pair<EnvStats>,
        blue_p95_ms: Option<u64>,
    },
}

fn conflict(s: &State, action: &str) -> Refusal {
    Refusal::Conflict(format!(
        "Cannot {action}: the rollout is {}{}.",
        s.phase.name(),
        match s.phase {
            Phase::Idle | Phase::Completed | Phase::RolledBack =>
                "; start one with POST /admin/rollouts",
            _ => "",
        }
    ))
}

/// Applies `cmd` to `state` at `now_ms`.
pub fn apply(state: &State, cmd: Command, now_ms: u64) -> Result<Transition, Refusal> {
    let mut s = state.clone();
    let mut fx = Vec::new();
    match cmd {
        Command::Start { spec, routing } => {
            if s.phase.is_active() {
                return Err(Refusal::Conflict(format!(
                    "A rollout of {} is already {}; promote, roll back or wait for it first.",
                    s.green_model,
                    s.phase.name()
                )));
            }
            if spec.green_model == routing.blue_model {
                return Err(Refusal::Invalid(FieldError::new(
                    "green_model",
                    format!("must differ from the blue model ({})", routing.blue_model),
                )));
            }
            let id = s.rollout.as_ref().map_or(1, |r| r.id + 1);
            let first = spec.steps[0];
            s.phase = Phase::Progressing;
            s.blue_model = routing.blue_model;
            s.green_model = spec.green_model.clone();
            s.sticky = routing.sticky;
            s.green_percent = first.green_percent;
            s.version = s.version.max(routing.version) + 1;
            s.verdict = None;
            s.rollout = Some(Rollout {
                id,
                green_model: spec.green_model,
                blue_model: s.blue_model.clone(),
                steps: spec.steps,
                health: spec.health,
                started_at_ms: now_ms,
                step_index: 0,
                step_started_at_ms: now_ms,
                paused_at_ms: None,
                consecutive_failures: 0,
                step_passed: false,
                ended_at_ms: None,
                evidence: Evidence::default(),
            });
            let msg = format!(
                "Rollout {id} of {} over {} started at {}% green.",
                s.green_model, s.blue_model, s.green_percent
            );
            fx.extend([
                Effect::ResetRollout,
                Effect::WriteSplit,
                by_operator(&s, now_ms, EventKind::Started, msg),
            ]);
        }
        Command::Promote => {
            if !s.phase.is_active() {
                return Err(conflict(&s, "promote"));
            }
            complete(&mut s, now_ms);
            let msg = format!(
                "Promoted by an operator: {} is the new blue at 100%.",
                s.blue_model
            );
            fx.extend([
                Effect::WriteSplit,
                by_operator(&s, now_ms, EventKind::Completed, msg),
            ]);
        }
        Command::Rollback => {
            if !s.phase.is_active() {
                return Err(conflict(&s, "roll back"));
            }
            roll_back(&mut s, now_ms);
            let msg = format!(
                "Rolled back by an operator: {} serves all traffic.",
                s.blue_model
            );
            fx.extend([
                Effect::WriteSplit,
                by_operator(&s, now_ms, EventKind::RolledBack, msg),
            ]);
        }
        Command::Pause => {
            if s.phase != Phase::Progressing {
                return Err(conflict(&s, "pause"));
            }
            pause(&mut s, now_ms);
            let msg = format!("Paused by an operator at {}% green.", s.green_percent);
            fx.push(by_operator(&s, now_ms, EventKind::Paused, msg));
        }
        Command::Resume => {
            if s.phase != Phase::Paused {
                return Err(conflict(&s, "resume"));
            }
            let r = s.rollout.as_mut().expect("an active phase has a rollout");
            let paused_for = now_ms.saturating_sub(r.paused_at_ms.take().unwrap_or(now_ms));
            r.step_started_at_ms += paused_for;
            // The step must pass again on traffic seen since the resume. With the threshold
            // gates the window restarts (what came while paused, perhaps under a manual split,
            // is not this step's traffic) and so does the failure count; the sequential test's
            // evidence is kept (it holds whatever the split was).
            r.step_passed = false;
            if r.health.method == Method::Threshold {
                r.consecutive_failures = 0;
                fx.push(Effect::ResetWindow);
            }
            let step_percent = r.step().green_percent;
            s.phase = Phase::Progressing;
            if s.green_percent != step_percent {
                s.green_percent = step_percent;
                s.version += 1;
                fx.push(Effect::WriteSplit);
            }
            let msg = format!("Resumed by an operator at {}% green.", s.green_percent);
            fx.push(by_operator(&s, now_ms, EventKind::Resumed, msg));
        }
        Command::SetSplit { green_percent } => {
            if !s.phase.is_active() {
                return Err(conflict(&s, "set a manual split"));
            }
            if !(0.0..=100.0).contains(&green_percent) {
                return Err(Refusal::Invalid(FieldError::new(
                    "green_percent",
                    "must be a number from 0 to 100",
                )));
            }
            let was_progressing = s.phase == Phase::Progressing;
            pause(&mut s, now_ms);
            s.green_percent = green_percent;
            s.version += 1;
            let mut ev = event(
                &s,
                now_ms,
                EventKind::SplitSet,
                Actor::Operator,
                format!(
                    "Manual split by an operator: {green_percent}% green; the rollout is paused \
                     until resumed."
                ),
            );
            // Pausing a running rollout is what the alert is about.
            ev.alert = was_progressing;
            fx.extend([Effect::WriteSplit, Effect::record(ev)]);
        }
        Command::Tick {
            window,
            blue_p95_ms,
        } => {
            if s.phase != Phase::Progressing {
                return Ok(Transition {
                    state: s,
                    effects: fx,
                });
            }
            tick(&mut s, &window, blue_p95_ms, now_ms, &mut fx);
        }
    }
    Ok(Transition {
        state: s,
        effects: fx,
    })
}

fn pause(s: &mut State, now_ms: u64) {
    let r = s.rollout.as_mut().expect("an active phase has a rollout");
    if r.paused_at_ms.is_none() {
        r.paused_at_ms = Some(now_ms);
    }
    s.phase = Phase::Paused;
}

fn complete(s: &mut State, now_ms: u64) {
    let r = s.rollout.as_mut().expect("an active phase has a rollout");
    r.ended_at_ms = Some(now_ms);
    r.paused_at_ms = None;
    s.phase = Phase::Completed;
    s.blue_model = s.green_model.clone();
    s.green_percent = 0.0;
    s.version += 1;
}

fn roll_back(s: &mut State, now_ms: u64) {
    let r = s.rollout.as_mut().expect("an active phase has a rollout");
    r.ended_at_ms = Some(now_ms);
    r.paused_at_ms = None;
    s.phase = Phase::RolledBack;
    s.green_percent = 0.0;
    s.version += 1;
}

/// Judges one window with the sequential test: the window is this tick's requests (it restarts
/// every tick), added to the evidence carried through the rollout. Returns the verdict and
/// whether green is clearly fine (may advance early).
fn sequential_verdict(
    r: &mut Rollout,
    window: &Pair<EnvStats>,
    blue_p95_ms: Option<u64>,
) -> (Verdict, bool) {
    let margin = r.health.latency_margin_ms;
    let next_reference = blue_p95_ms.map(|p| p + margin);
    // Only a reference fixed before this tick's requests: on the first tick there is none, and
    // no request counts as slow.
    let reference = r.evidence.latency_reference_ms;
    let slow = |s: &EnvStats| reference.map_or(0, |ms| s.total.count_above(ms));
    let counts = TickCounts {
        green_requests: window.green.requests,
        blue_requests: window.blue.requests,
        green_errors: window.green.errors(),
        blue_errors: window.blue.errors(),
        green_slow: slow(&window.green),
        blue_slow: slow(&window.blue),
    };
    let settings = r.health.sequential_settings();
    let report = sequential::update(
        &mut r.evidence,
        &settings,
        &counts,
        reference,
        next_reference,
    );
    let status = match report.finding {
        Finding::Unhealthy => VerdictStatus::Fail,
        Finding::TooLittleData => VerdictStatus::Inconclusive,
        Finding::Healthy | Finding::ClearlyFine => VerdictStatus::Pass,
    };
    let early = report.finding == Finding::ClearlyFine;
    let verdict = Verdict {
        status,
        reasons: report.reasons(),
        evidence: Some(report),
    };
    (verdict, early)
}

fn tick(
    s: &mut State,
    window: &Pair<EnvStats>,
    blue_p95_ms: Option<u64>,
    now_ms: u64,
    fx: &mut Vec<Effect>,
) {
    let r = s.rollout.as_mut().expect("progressing has a rollout");
    let step_no = r.step_index + 1;
    let (verdict, early, limit) = match r.health.method {
        Method::Threshold => {
            let verdict = judge(&r.health, window);
            if verdict.status != VerdictStatus::Inconclusive {
                fx.push(Effect::ResetWindow);
            }
            (verdict, false, r.health.failure_limit)
        }
        Method::Sequential => {
            // Every tick's window is new evidence, and reaching a level is itself the
            // decision: `failure_limit` does not apply.
            fx.push(Effect::ResetWindow);
            let (verdict, early) = sequential_verdict(r, window, blue_p95_ms);
            (verdict, early, 1)
        }
    };
    match verdict.status {
        VerdictStatus::Inconclusive => {
            if r.health.method == Method::Sequential {
                r.step_passed = false;
            }
        }
        VerdictStatus::Pass => {
            r.consecutive_failures = 0;
            r.step_passed = true;
        }
        VerdictStatus::Fail => {
            r.consecutive_failures += 1;
            r.step_passed = false;
        }
    }
    let failures = r.consecutive_failures;
    s.verdict = Some(VerdictRecord {
        verdict: verdict.clone(),
        at_ms: now_ms,
        consecutive_failures: failures,
        step: step_no,
    });

    if verdict.status == VerdictStatus::Fail {
        if failures >= limit {
            roll_back(s, now_ms);
            let why = if limit == 1 {
                format!("on step {step_no}")
            } else {
                format!("after {failures} failing checks in a row on step {step_no}")
            };
            let mut ev = event(
                s,
                now_ms,
                EventKind::RolledBack,
                Actor::Controller,
                format!(
                    "Rolled back automatically {why}: {}",
                    verdict.reasons.join("; ")
                ),
            );
            ev.verdict = Some(verdict);
            fx.extend([Effect::WriteSplit, Effect::record(ev)]);
        } else {
            let mut ev = event(
                s,
                now_ms,
                EventKind::CheckFailed,
                Actor::Controller,
                format!(
                    "Check failed ({failures} of {limit} before rollback): {}",
                    verdict.reasons.join("; ")
                ),
            );
            ev.verdict = Some(verdict);
            fx.push(Effect::record(ev));
        }
        return;
    }

    let r = s.rollout.as_mut().expect("progressing has a rollout");
    let held = r.step_elapsed_ms(now_ms) >= r.step().hold_seconds * 1000;
    if !((held || early) && r.step_passed) {
        return;
    }
    if r.step_index + 1 == r.steps.len() {
        complete(s, now_ms);
        let mut ev = event(
            s,
            now_ms,
            EventKind::Completed,
            Actor::Controller,
            format!(
                "Completed: every step passed; {} is the new blue at 100%.",
                s.blue_model
            ),
        );
        ev.verdict = Some(verdict);
        fx.extend([Effect::WriteSplit, Effect::record(ev)]);
    } else {
        r.step_index += 1;
        r.step_started_at_ms = now_ms;
        r.step_passed = false;
        sequential::new_step(&mut r.evidence);
        let of = r.steps.len();
        s.green_percent = r.step().green_percent;
        s.version += 1;
        let msg = format!(
            "Step {step_no} passed; step {} of {of} at {}% green.",
            step_no + 1,
            s.green_percent
        );
        let mut ev = event(s, now_ms, EventKind::StepAdvanced, Actor::Controller, msg);
        ev.verdict = Some(verdict);
        fx.extend([Effect::ResetStep, Effect::WriteSplit, Effect::record(ev)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const MIN: u64 = 60_000;

    fn routing() -> RoutingDoc {
        RoutingDoc {
            blue_model: "blue-m".into(),
            green_model: "old-green".into(),
            green_percent: 0.0,
            sticky: true,
            version: 7,
            updated_at: None,
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
                .map(|&(green_percent, hold_seconds)| Step {
                    green_percent,
                    hold_seconds,
                })
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
                window: w,
                blue_p95_ms: None,
            },
            now,
        )
        .unwrap()
    }

    fn kinds(t: &Transition) -> Vec<EventKind> {
        t.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Record(ev) => Some(ev.kind),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_healthy_rollout_walks_the_ladder_and_completes() {
        // Steps 10% for 2 min, 50% for 3 min; ticks every minute, each with a healthy window.
        let mut s = started(&[(10.0, 120), (50.0, 180)]);
        assert_eq!(
            (s.phase, s.green_percent, s.version),
            (Phase::Progressing, 10.0, 8)
        );
        // t=1: passes but held only 1 of 2 min.
        let t = tick(&s, healthy(), MIN);
        assert_eq!(t.effects, [Effect::ResetWindow]);
        s = t.state;
        // t=2: held 2 min and passing: step 2 at 50%.
        let t = tick(&s, healthy(), 2 * MIN);
        assert_eq!(kinds(&t), [EventKind::StepAdvanced]);
        assert!(t.effects.contains(&Effect::ResetStep));
        s = t.state;
        assert_eq!(
            (s.green_percent, s.rollout.as_ref().unwrap().step_index),
            (50.0, 1)
        );
        // t=3, 4: passing, held 1 and 2 of 3 min.
        for m in [3, 4] {
            s = tick(&s, healthy(), m * MIN).state;
            assert_eq!(s.phase, Phase::Progressing);
        }
        // t=5: held 3 min, the last step passes: completed, green is the new blue at 0%.
        let t = tick(&s, healthy(), 5 * MIN);
        assert_eq!(kinds(&t), [EventKind::Completed]);
        s = t.state;
        assert_eq!(s.phase, Phase::Completed);
        assert_eq!((s.blue_model.as_str(), s.green_percent), ("green-m", 0.0));
        let doc = s.routing_doc(5 * MIN);
        assert_eq!((doc.blue_model.as_str(), doc.version), ("green-m", 10));
        // Ticks after completion do nothing.
        assert!(tick(&s, bad(), 6 * MIN).effects.is_empty());
    }

    #[test]
    fn inconclusive_windows_hold_and_never_fail() {
        let mut s = started(&[(10.0, 60), (50.0, 60)]);
        // Ten minutes of thin windows (49 requests, all failing): no failure, no advance.
        for m in 1..=10 {
            let t = tick(&s, window(49, 49), m * MIN);
            assert!(t.effects.is_empty(), "minute {m}: {:?}", t.effects);
            s = t.state;
        }
        assert_eq!(s.phase, Phase::Progressing);
        assert_eq!(s.green_percent, 10.0);
        let v = s.verdict.as_ref().unwrap();
        assert_eq!(v.verdict.status, VerdictStatus::Inconclusive);
        assert_eq!(v.consecutive_failures, 0);
        // Enough data that passes: hold time long gone, so it advances at once.
        assert_eq!(s.rollout.as_ref().unwrap().step_index, 0);
        let s = tick(&s, healthy(), 11 * MIN).state;
        assert_eq!(s.green_percent, 50.0);
    }

    #[test]
    fn one_bad_window_does_not_roll_back_two_do() {
        // failure_limit 2 (the default).
        let s = started(&[(10.0, 3600)]);
        let t = tick(&s, bad(), MIN);
        assert_eq!(kinds(&t), [EventKind::CheckFailed]);
        assert_eq!(t.state.phase, Phase::Progressing);
        // A passing window in between resets the count...
        let t2 = tick(&t.state, healthy(), 2 * MIN);
        assert_eq!(t2.state.rollout.as_ref().unwrap().consecutive_failures, 0);
        let t3 = tick(&t2.state, bad(), 3 * MIN);
        assert_eq!(t3.state.phase, Phase::Progressing);
        // ...two in a row roll back.
        let t4 = tick(&t3.state, bad(), 4 * MIN);
        assert_eq!(kinds(&t4), [EventKind::RolledBack]);
        assert_eq!(t4.state.phase, Phase::RolledBack);
        assert_eq!(t4.state.green_percent, 0.0);
        assert!(t4.effects.contains(&Effect::WriteSplit));
        let Some(Effect::Record(ev)) = t4.effects.last() else {
            panic!("an event")
        };
        assert!(ev.alert);
        assert_eq!(ev.by, Actor::Controller);
        assert!(ev.message.contains("2 failing checks"), "{}", ev.message);
        assert_eq!(ev.verdict.as_ref().unwrap().status, VerdictStatus::Fail);
        // The blue model is untouched.
        assert_eq!(t4.state.blue_model, "blue-m");
    }

    #[test]
    fn failure_limit_one_rolls_back_on_the_first_failure() {
        let mut sp = spec(&[(10.0, 60)]);
        sp.health.failure_limit = 1;
        let s = apply(
            &State::initial(&routing()),
            Command::Start {
                spec: sp,
                routing: routing(),
            },
            0,
        )
        .unwrap()
        .state;
        assert_eq!(tick(&s, bad(), MIN).state.phase, Phase::RolledBack);
    }

    #[test]
    fn duplicate_and_late_ticks() {
        let s = started(&[(10.0, 60), (30.0, 60), (50.0, 60)]);
        // A failing window, then the same tick again: the window was reset after the verdict,
        // so the duplicate sees nothing new and does not count a second failure.
        let t = tick(&s, bad(), MIN);
        let dup = tick(&t.state, Pair::default(), MIN);
        assert!(dup.effects.is_empty());
        assert_eq!(dup.state.rollout.as_ref().unwrap().consecutive_failures, 1);
        assert_eq!(dup.state.phase, Phase::Progressing);
        // A passing tick advances once; its duplicate does not advance again (new step, not
        // held, empty window).
        let a = tick(&dup.state, healthy(), 2 * MIN);
        assert_eq!(a.state.green_percent, 30.0);
        let a2 = tick(&a.state, Pair::default(), 2 * MIN);
        assert_eq!(a2.state.green_percent, 30.0);
        assert!(a2.effects.is_empty());
        // A tick an hour late advances one step, never two.
        let late = tick(&a2.state, healthy(), 62 * MIN);
        assert_eq!(late.state.green_percent, 50.0);
    }

    #[test]
    fn pause_and_resume_freeze_the_hold_timer() {
        let s = started(&[(10.0, 300), (50.0, 60)]);
        // Paused after 2 of 5 minutes, for 10 minutes.
        let p = apply(&s, Command::Pause, 2 * MIN).unwrap();
        assert_eq!(kinds(&p), [EventKind::Paused]);
        let s = p.state;
        assert_eq!(s.phase, Phase::Paused);
        // Ticks while paused judge nothing.
        assert!(tick(&s, bad(), 5 * MIN).effects.is_empty());
        assert_eq!(
            s.rollout
                .as_ref()
                .unwrap()
                .step_view(7 * MIN)
                .elapsed_seconds,
            120
        );
        let r = apply(&s, Command::Resume, 12 * MIN).unwrap();
        assert_eq!(kinds(&r), [EventKind::Resumed]);
        // No split change on resume from a plain pause.
        assert!(!r.effects.contains(&Effect::WriteSplit));
        let s = r.state;
        // At 14 min: 2 + 2 = 4 of 5 minutes on the step: holds even though passing.
        let s = tick(&s, healthy(), 14 * MIN).state;
        assert_eq!(s.green_percent, 10.0);
        assert_eq!(
            s.rollout
                .as_ref()
                .unwrap()
                .step_view(14 * MIN)
                .remaining_seconds,
            60
        );
        let s = tick(&s, healthy(), 15 * MIN).state;
        assert_eq!(s.green_percent, 50.0);
        // Pause twice, resume twice: 409.
        assert!(matches!(
            apply(&s, Command::Resume, 16 * MIN),
            Err(Refusal::Conflict(_))
        ));
        let s = apply(&s, Command::Pause, 16 * MIN).unwrap().state;
        assert!(matches!(
            apply(&s, Command::Pause, 16 * MIN),
            Err(Refusal::Conflict(_))
        ));
    }

    #[test]
    fn after_a_resume_the_step_must_pass_again() {
        // Threshold gates: a pass before the pause does not carry over the resume.
        let s = started(&[(10.0, 120), (50.0, 60)]);
        let s = tick(&s, healthy(), MIN).state;
        assert!(s.rollout.as_ref().unwrap().step_passed);
        let s = apply(&s, Command::Pause, MIN).unwrap().state;
        let r = apply(&s, Command::Resume, 5 * MIN).unwrap();
        assert!(r.effects.contains(&Effect::ResetWindow));
        // At 7 min the step has run 3 of its 2 minutes, but the window since the resume is
        // thin: it holds.
        let t = tick(&r.state, window(10, 0), 7 * MIN);
        assert_eq!(t.state.green_percent, 10.0);
        let t = tick(&t.state, healthy(), 8 * MIN);
        assert_eq!(t.state.green_percent, 50.0);
    }

    #[test]
    fn a_manual_split_pauses_and_resume_restores_the_step() {
        let s = started(&[(10.0, 300)]);
        let t = apply(
            &s,
            Command::SetSplit {
                green_percent: 25.0,
            },
            MIN,
        )
        .unwrap();
        assert_eq!(kinds(&t), [EventKind::SplitSet]);
        assert!(t.effects.contains(&Effect::WriteSplit));
        let Some(Effect::Record(ev)) = t.effects.last() else {
            panic!()
        };
        assert!(ev.alert, "pausing a running rollout alerts");
        let s = t.state;
        assert_eq!((s.phase, s.green_percent), (Phase::Paused, 25.0));
        // A second manual split while paused: no pause alert.
        let t = apply(&s, Command::SetSplit { green_percent: 5.0 }, MIN).unwrap();
        let Some(Effect::Record(ev)) = t.effects.last() else {
            panic!()
        };
        assert!(!ev.alert);
        let r = apply(&t.state, Command::Resume, 2 * MIN).unwrap();
        assert!(r.effects.contains(&Effect::WriteSplit));
        assert_eq!(r.state.green_percent, 10.0);
        assert!(matches!(
            apply(
                &s,
                Command::SetSplit {
                    green_percent: 101.0
                },
                MIN
            ),
            Err(Refusal::Invalid(_))
        ));
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

    #[test]
    fn promote_and_rollback_from_each_phase() {
        use Phase::*;
        // (phase, promote allowed, rollback allowed)
        for (phase, ok) in [
            (Idle, false),
            (Progressing, true),
            (Paused, true),
            (Completed, false),
            (RolledBack, false),
        ] {
            let s = in_phase(phase);
            assert_eq!(s.phase, phase);
            let p = apply(&s, Command::Promote, 5);
            let r = apply(&s, Command::Rollback, 5);
            assert_eq!(p.is_ok(), ok, "promote from {phase:?}");
            assert_eq!(r.is_ok(), ok, "rollback from {phase:?}");
            if ok {
                let p = p.unwrap().state;
                assert_eq!(
                    (p.phase, p.blue_model.as_str(), p.green_percent),
                    (Completed, "green-m", 0.0)
                );
                let r = r.unwrap().state;
                assert_eq!(
                    (r.phase, r.blue_model.as_str(), r.green_percent),
                    (RolledBack, "blue-m", 0.0)
                );
                assert_eq!(r.rollout.unwrap().ended_at_ms, Some(5));
            } else {
                let Err(Refusal::Conflict(msg)) = p else {
                    panic!()
                };
                assert!(msg.contains(phase.name()), "{msg}");
            }
        }
    }

    #[test]
    fn starting_is_refused_while_active_and_allowed_after() {
        for phase in [Phase::Progressing, Phase::Paused] {
            let s = in_phase(phase);
            let r = apply(
                &s,
                Command::Start {
                    spec: spec(&[(10.0, 60)]),
                    routing: routing(),
                },
                9,
            );
            assert!(matches!(r, Err(Refusal::Conflict(_))));
        }
        // After completion, the next rollout's blue is the completed green.
        let done = in_phase(Phase::Completed);
        let routing_now = done.routing_doc(2);
        let mut next = spec(&[(20.0, 60)]);
        next.green_model = "newer".into();
        let t = apply(
            &done,
            Command::Start {
                spec: next,
                routing: routing_now,
            },
            3,
        )
        .unwrap();
        let r = t.state.rollout.as_ref().unwrap();
        assert_eq!((r.id, r.blue_model.as_str()), (2, "green-m"));
        // Green equal to blue is a 400.
        let r = apply(
            &State::initial(&routing()),
            Command::Start {
                spec: RolloutSpec {
                    green_model: "blue-m".into(),
                    ..spec(&[(10.0, 1)])
                },
                routing: routing(),
            },
            0,
        );
        assert!(matches!(r, Err(Refusal::Invalid(e)) if e.field == "green_model"));
    }

    #[test]
    fn spec_from_json() {
        let s = RolloutSpec::from_json(&json!({"green_model": "g"})).unwrap();
        assert_eq!(s.steps, default_steps());
        assert_eq!(s.steps.iter().map(|s| s.hold_seconds).sum::<u64>(), 27_000);
        let s = RolloutSpec::from_json(&json!({
            "green_model": "g",
            "steps": [{"green_percent": 20, "hold_seconds": 2}, {"green_percent": 60, "hold_seconds": 0}],
            "health": {"min_requests": 3}
        }))
        .unwrap();
        assert_eq!(s.steps[1].green_percent, 60.0);
        assert_eq!(s.health.min_requests, 3);
        let field = |v: Value| RolloutSpec::from_json(&v).unwrap_err().field;
        assert_eq!(field(json!({})), "green_model");
        assert_eq!(field(json!({"green_model": ""})), "green_model");
        assert_eq!(field(json!({"green_model": 5})), "green_model");
        assert_eq!(field(json!({"green_model": "g", "steps": []})), "steps");
        assert_eq!(field(json!({"green_model": "g", "steps": {}})), "steps");
        assert_eq!(
            field(
                json!({"green_model": "g", "steps": [{"green_percent": 100, "hold_seconds": 1}]})
            ),
            "steps[0].green_percent"
        );
        assert_eq!(
            field(json!({"green_model": "g", "steps": [{"green_percent": 10}]})),
            "steps[0].hold_seconds"
        );
        assert_eq!(
            field(json!({"green_model": "g", "steps": [
                {"green_percent": 30, "hold_seconds": 1}, {"green_percent": 20, "hold_seconds": 1}]})),
            "steps[1].green_percent"
        );
        assert_eq!(
            field(
                json!({"green_model": "g", "steps": [{"green_percent": 10, "hold_seconds": -1}]})
            ),
            "steps[0].hold_seconds"
        );
        assert_eq!(field(json!({"green_model": "g", "extra": 1})), "extra");
        assert_eq!(
            field(json!({"green_model": "g", "health": {"min_requests": 0}})),
            "health.min_requests"
        );
        assert_eq!(field(json!([1])), "body");
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
                window: w,
                blue_p95_ms: p95,
            },
            now,
        )
        .unwrap()
    }

    #[test]
    fn sequential_rolls_a_broken_green_back_on_the_first_tick_with_its_evidence() {
        let s = started_sequential(&[(10.0, 1800)], HealthPolicy::default());
        let mut w = window(540, 0);
        w.blue.errors.server_error = 2;
        w.green.requests = 60;
        w.green.errors.server_error = 30;
        let t = seq_tick(&s, w, MIN);
        assert_eq!(t.state.phase, Phase::RolledBack);
        assert_eq!(t.effects[0], Effect::ResetWindow);
        let Some(Effect::Record(ev)) = t.effects.last() else {
            panic!("an event")
        };
        assert!(
            ev.message
                .starts_with("Rolled back automatically on step 1: green errors are"),
            "{}",
            ev.message
        );
        let evidence = ev.verdict.as_ref().unwrap().evidence.as_ref().unwrap();
        assert!(evidence.errors.evidence >= evidence.errors.rollback_at);
        assert_eq!(
            (evidence.errors.green_events, evidence.errors.blue_events),
            (30, 2)
        );
    }

    #[test]
    fn sequential_ticks_without_traffic_hold_and_add_nothing() {
        let mut s = started_sequential(&[(10.0, 60), (50.0, 60)], HealthPolicy::default());
        for m in 1..=5 {
            let t = seq_tick(&s, Pair::default(), m * MIN);
            assert_eq!(t.effects, [Effect::ResetWindow], "minute {m}");
            s = t.state;
        }
        assert_eq!(s.rollout.as_ref().unwrap().evidence.ticks, 0);
        assert_eq!(
            s.verdict.as_ref().unwrap().verdict.status,
            VerdictStatus::Inconclusive
        );
        assert_eq!(s.green_percent, 10.0);
    }

    #[test]
    fn sequential_evidence_carries_across_steps_pauses_and_manual_splits() {
        let mut s = started_sequential(
            &[(10.0, 60), (50.0, 60), (70.0, 60)],
            HealthPolicy::default(),
        );
        // Green a little worse than blue, not enough to roll back: evidence builds up.
        s = seq_tick(&s, timed(200, 1, 2), MIN).state;
        let evidence = |s: &State| s.rollout.as_ref().unwrap().evidence.errors.clone();
        let after_step_one = evidence(&s);
        assert!(after_step_one.iter().any(|x| *x != 0.0));
        assert_eq!(
            s.green_percent, 50.0,
            "held 60 s with enough data: advanced"
        );
        assert_eq!(
            evidence(&s),
            after_step_one,
            "a new step keeps the evidence"
        );
        // Pause, manual split, resume: the evidence is untouched.
        s = apply(&s, Command::Pause, 2 * MIN).unwrap().state;
        s = apply(&s, Command::SetSplit { green_percent: 5.0 }, 2 * MIN)
            .unwrap()
            .state;
        s = apply(&s, Command::Resume, 3 * MIN).unwrap().state;
        assert_eq!(evidence(&s), after_step_one);
        assert_eq!(s.rollout.as_ref().unwrap().evidence.rollout.green_errors, 2);
    }

    #[test]
    fn advance_early_ends_a_step_once_green_is_clearly_fine() {
        let health = HealthPolicy {
            advance_early: true,
            ..HealthPolicy::default()
        };
        let mut s = started_sequential(&[(50.0, 3600), (70.0, 3600)], health.clone());
        // An hour's hold, but equal and plentiful evidence: advances long before.
        let mut advanced_at = None;
        for m in 1..=30 {
            s = seq_tick(&s, timed(1000, 20, 20), m * MIN).state;
            if s.green_percent == 70.0 {
                advanced_at = Some(m);
                break;
            }
        }
        assert!(advanced_at.is_some_and(|m| m < 60), "{advanced_at:?}");
        // Without advance_early the same data holds for the whole hour.
        let mut s = started_sequential(&[(50.0, 3600), (70.0, 3600)], HealthPolicy::default());
        for m in 1..=30 {
            s = seq_tick(&s, timed(1000, 20, 20), m * MIN).state;
        }
        assert_eq!(s.green_percent, 50.0);
    }

    #[test]
    fn state_round_trips_through_json() {
        let s = in_phase(Phase::Paused);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<State>(&json).unwrap(), s);
    }
}
