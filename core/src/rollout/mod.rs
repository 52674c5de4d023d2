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
mod tests;
