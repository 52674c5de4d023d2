//! The controller's state: the split in force, and where the rollout is with only the data
//! valid there (a paused rollout has its pause time, an ended one its end time, an idle
//! controller no rollout). Accessors, the routing document the state puts into force, and the
//! moves several commands share (complete, roll back). What each command or tick does is in
//! `cmd/` and `tick.rs`; the stored JSON shape is in `wire.rs`.

use serde::{Deserialize, Serialize};

use super::{Effect, Step};
use crate::environment::Environment;
use crate::request::routing::RoutingDoc;
use crate::util::time::format_rfc3339_ms;
use crate::verdict::health::{HealthPolicy, Verdict, VerdictStatus};
use crate::verdict::sequential::Evidence;
use crate::verdict::share_check::SplitCheck;

/// Where the rollout is: the name of a [`Stage`], as shown in JSON, the status and events.
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
    /// Every phase, in the order a rollout meets them.
    pub const ALL: [Phase; 5] = [
        Phase::Idle,
        Phase::Progressing,
        Phase::Paused,
        Phase::Completed,
        Phase::RolledBack,
    ];

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

/// The split the controller writes to KV; every phase has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// The model that serves the rest of the traffic.
    pub blue_model: String,
    /// The model that serves `green_percent` of it.
    pub green_model: String,
    /// Green's share, 0 to 100.
    pub green_percent: f64,
    /// Carried into the routing document.
    pub sticky: bool,
    /// Bumped on every split the controller writes; the routing document's `version`.
    pub version: u64,
}

/// A rollout: what was asked for, and how far it got. Under way while progressing or paused;
/// kept after it ends, for the status and the next rollout's id.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// 1 for the first rollout, then counting.
    pub id: u64,
    /// The model rolled out.
    pub green_model: String,
    /// The blue model when the rollout began.
    pub blue_model: String,
    /// Never empty.
    pub steps: Vec<Step>,
    /// How each tick judges green.
    pub health: HealthPolicy,
    /// When it started.
    pub started_at_ms: u64,
    /// Index into `steps`, always within it.
    pub step_index: usize,
    /// When the current step began, shifted forward by time spent paused.
    pub step_started_at_ms: u64,
    /// Failing verdicts in a row.
    pub consecutive_failures: u32,
    /// Whether the current step's latest conclusive verdict passed.
    pub step_passed: bool,
    /// The sequential test's evidence, carried through every step of this rollout (not reset
    /// by a pause, a manual split or a resume).
    pub evidence: Evidence,
    /// The split check's evidence over the current step, and its hold (see
    /// [`crate::verdict::share_check`]).
    pub split_check: SplitCheck,
    /// The latest verdict; `None` until a tick has judged.
    pub verdict: Option<VerdictRecord>,
    /// A provider-wide incident under way: the step holds until it ends.
    pub incident: Option<super::Incident>,
    /// When the latest incident ended (or a resume cleared it): a beginning within the hour
    /// after is not alerted.
    pub incident_ended_at_ms: Option<u64>,
}

impl Rollout {
    /// The current step.
    pub fn step(&self) -> Step {
        self.steps[self.step_index]
    }

    /// Milliseconds on the current step up to `until_ms`; during an incident, as many as when
    /// it began (the hold timer stands still).
    pub(super) fn elapsed_on_step_ms(&self, until_ms: u64) -> u64 {
        match &self.incident {
            Some(incident) => incident.step_elapsed_ms,
            None => until_ms.saturating_sub(self.step_started_at_ms),
        }
    }
}

/// A rollout stopped until resumed.
#[derive(Debug, Clone, PartialEq)]
pub struct Paused {
    /// The rollout, as it was when paused.
    pub rollout: Rollout,
    /// When it stopped; the hold timer does not run from then on.
    pub paused_at_ms: u64,
}

/// A rollout that completed or rolled back.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    /// The rollout, as it was when it ended.
    pub rollout: Rollout,
    /// When it completed or rolled back.
    pub ended_at_ms: u64,
}

/// Where the rollout is, with the data valid there.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// No rollout yet.
    Idle,
    /// Walking the ladder.
    Progressing(Rollout),
    /// Stopped until resumed.
    Paused(Paused),
    /// Green became the new blue.
    Completed(Ended),
    /// Back to 0% green.
    RolledBack(Ended),
}

impl Stage {
    /// The phase's name.
    pub fn phase(&self) -> Phase {
        match self {
            Stage::Idle => Phase::Idle,
            Stage::Progressing(_) => Phase::Progressing,
            Stage::Paused(_) => Phase::Paused,
            Stage::Completed(_) => Phase::Completed,
            Stage::RolledBack(_) => Phase::RolledBack,
        }
    }

    /// The rollout under way, or the last one; `None` before the first.
    pub fn rollout(&self) -> Option<&Rollout> {
        match self {
            Stage::Idle => None,
            Stage::Progressing(r) => Some(r),
            Stage::Paused(p) => Some(&p.rollout),
            Stage::Completed(e) | Stage::RolledBack(e) => Some(&e.rollout),
        }
    }

    /// The rollout under way (progressing or paused), dropping a pause; `None` otherwise.
    pub(super) fn into_active(self) -> Option<Rollout> {
        match self {
            Stage::Progressing(rollout) | Stage::Paused(Paused { rollout, .. }) => Some(rollout),
            Stage::Idle | Stage::Completed(_) | Stage::RolledBack(_) => None,
        }
    }
}

/// The latest verdict, as shown in the status. Stored with the verdict's fields beside its own
/// (flattened); read back through `wire::StoredVerdict`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "super::wire::StoredVerdict")]
pub struct VerdictRecord {
    /// The verdict itself: status, reasons, the sequential test's evidence.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// When the tick that gave it ran.
    pub at_ms: u64,
    /// Failing verdicts in a row when it was given.
    pub consecutive_failures: u32,
    /// The step (1-based) it judged.
    pub step: usize,
}

/// The controller's whole state. Stored as JSON in the shape the first release wrote (see
/// `wire.rs`); a stored document whose phase and rollout disagree does not load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    try_from = "super::wire::StoredState",
    into = "super::wire::StoredState"
)]
pub struct State {
    /// The split in force; every transition that changes it bumps its version.
    pub(super) split: Split,
    /// Where the rollout is, with the data valid there.
    pub(super) stage: Stage,
}

impl State {
    /// A controller that has never run: idle, on the routing the request path is using.
    pub fn initial(routing: &RoutingDoc) -> State {
        let split = Split {
            blue_model: routing.blue_model.clone(),
            green_model: routing.green_model.clone(),
            green_percent: routing.green_percent,
            sticky: routing.sticky,
            version: routing.version,
        };
        State {
            split,
            stage: Stage::Idle,
        }
    }

    /// A rollout walking its ladder on `split`.
    pub(super) fn progressing(split: Split, rollout: Rollout) -> State {
        State {
            split,
            stage: Stage::Progressing(rollout),
        }
    }

    /// `rollout` paused at `now_ms` on `split`: a shadow step's copies stop, by a new routing
    /// document without its share (then `WriteSplit` is among the effects returned).
    pub(super) fn paused(mut split: Split, rollout: Rollout, now_ms: u64) -> (State, Vec<Effect>) {
        let copying = split.green_percent == 0.0 && rollout.step().shadow_percent > 0.0;
        let mut effects = Vec::new();
        if copying {
            split.version += 1;
            effects.push(Effect::WriteSplit);
        }
        let paused = Paused {
            rollout,
            paused_at_ms: now_ms,
        };
        let state = State {
            split,
            stage: Stage::Paused(paused),
        };
        (state, effects)
    }

    /// `rollout` completed at `now_ms`: green is the new blue, and the split returns to 0%.
    pub(super) fn completed(mut split: Split, rollout: Rollout, now_ms: u64) -> State {
        split.blue_model = split.green_model.clone();
        State::ended(split, rollout, now_ms, Stage::Completed)
    }

    /// `rollout` rolled back at `now_ms`: blue serves everything.
    pub(super) fn rolled_back(split: Split, rollout: Rollout, now_ms: u64) -> State {
        State::ended(split, rollout, now_ms, Stage::RolledBack)
    }

    /// `rollout` ended at `now_ms` in the stage `stage` makes: 0% green, a new version.
    fn ended(mut split: Split, rollout: Rollout, now_ms: u64, stage: fn(Ended) -> Stage) -> State {
        split.green_percent = 0.0;
        split.version += 1;
        let ended = Ended {
            rollout,
            ended_at_ms: now_ms,
        };
        State {
            split,
            stage: stage(ended),
        }
    }

    /// Where the rollout is.
    pub fn phase(&self) -> Phase {
        self.stage.phase()
    }

    /// The split in force.
    pub fn split(&self) -> &Split {
        &self.split
    }

    /// The routing document version the state's split has (bumped on every split change).
    pub fn version(&self) -> u64 {
        self.split.version
    }

    /// Green's share of traffic now.
    pub fn green_percent(&self) -> f64 {
        self.split.green_percent
    }

    /// The share of blue's requests copied to green in the background now: the current step's
    /// `shadow_percent` while a rollout progresses on a shadow step at 0% green, 0 otherwise (a
    /// paused rollout, and so a manual split, copies nothing: the operator can stop the copies'
    /// cost and upstream load at once). Derived, not stored: the stored state keeps the shape
    /// earlier releases wrote.
    pub fn shadow_percent(&self) -> f64 {
        match &self.stage {
            Stage::Progressing(r) if self.split.green_percent == 0.0 => r.step().shadow_percent,
            _ => 0.0,
        }
    }

    /// "30% green", or on a shadow step "0% green, 20% of blue's requests copied to green":
    /// for event messages.
    pub fn split_words(&self) -> String {
        let green = format!("{}% green", self.split.green_percent);
        match self.shadow_percent() {
            s if s > 0.0 => format!("{green}, {s}% of blue's requests copied to green (shadow)"),
            _ => green,
        }
    }

    /// The rollout under way, or the last one; `None` before the first.
    pub fn rollout(&self) -> Option<&Rollout> {
        self.stage.rollout()
    }

    /// The rollout under way (progressing or paused).
    pub fn active(&self) -> Option<&Rollout> {
        self.rollout().filter(|_| self.phase().is_active())
    }

    /// When the last rollout completed or rolled back; `None` while one is under way.
    pub fn ended_at_ms(&self) -> Option<u64> {
        match &self.stage {
            Stage::Completed(e) | Stage::RolledBack(e) => Some(e.ended_at_ms),
            Stage::Idle | Stage::Progressing(_) | Stage::Paused(_) => None,
        }
    }

    /// Milliseconds spent on the current step at `now_ms`, not counting time paused; `None`
    /// unless a rollout is under way.
    pub fn step_elapsed_ms(&self, now_ms: u64) -> Option<u64> {
        match &self.stage {
            Stage::Progressing(r) => Some(r.elapsed_on_step_ms(now_ms)),
            Stage::Paused(p) => Some(p.rollout.elapsed_on_step_ms(p.paused_at_ms)),
            Stage::Idle | Stage::Completed(_) | Stage::RolledBack(_) => None,
        }
    }

    /// The latest verdict, once a tick has judged this rollout.
    pub fn verdict(&self) -> Option<&VerdictRecord> {
        self.rollout().and_then(|r| r.verdict.as_ref())
    }

    /// The latest verdict's status, once a tick has judged.
    pub fn verdict_status(&self) -> Option<VerdictStatus> {
        self.verdict().map(|v| v.verdict.status)
    }

    /// The current (or last) rollout's id; `None` before the first rollout.
    pub fn rollout_id(&self) -> Option<u64> {
        self.rollout().map(|r| r.id)
    }

    /// The current step (1-based) while a rollout is active.
    pub fn step_number(&self) -> Option<usize> {
        self.active().map(|r| r.step_index + 1)
    }

    /// The model `env` had in the split routing version `version` stood for, as far as this
    /// state knows: before the last rollout completed (a version below the completion's), that
    /// rollout's models, since completing moved green into blue; the split's own otherwise. A
    /// split older than the current rollout is taken as having the rollout's starting models:
    /// exact for blue, and green served nothing from the 0% split a rollout starts after.
    pub fn model_under(&self, env: Environment, version: u64) -> &str {
        let (blue, green) = match &self.stage {
            Stage::Completed(e) if version < self.split.version => {
                (&e.rollout.blue_model, &e.rollout.green_model)
            }
            _ => (&self.split.blue_model, &self.split.green_model),
        };
        match env {
            Environment::Blue => blue,
            Environment::Green => green,
        }
    }

    /// The routing document that puts this state into force.
    pub fn routing_doc(&self, now_ms: u64) -> RoutingDoc {
        RoutingDoc {
            blue_model: self.split.blue_model.clone(),
            green_model: self.split.green_model.clone(),
            green_percent: self.split.green_percent,
            shadow_percent: self.shadow_percent(),
            sticky: self.split.sticky,
            version: self.split.version,
            updated_at: Some(format_rfc3339_ms(now_ms)),
            // The grader judges while a rollout is under way, paused included (green still
            // serves its split then).
            judge: self.active().and_then(|r| r.health.judge.clone()),
        }
    }
}
