//! The event log's entries: what happened, who caused it, and the split after it. Built from
//! the state a transition leads to; this module decides nothing and stores nothing.

use serde::{Deserialize, Serialize};

use super::{Effect, Phase, State};
use crate::health::Verdict;
use crate::time::format_rfc3339_ms;

/// What happened, for the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Started,
    StepAdvanced,
    CheckFailed,
    Completed,
    RolledBack,
    Paused,
    Resumed,
    SplitSet,
}

/// Who caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// The cron tick's judgement.
    Controller,
    /// The admin API.
    Operator,
}

/// One entry in the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at_ms: u64,
    pub at: String,
    pub kind: EventKind,
    pub by: Actor,
    /// The phase after the event.
    pub phase: Phase,
    /// The split after the event.
    pub green_percent: f64,
    pub blue_model: String,
    pub green_model: String,
    pub rollout_id: Option<u64>,
    /// The step (1-based) after the event, while a rollout is active.
    pub step: Option<usize>,
    pub verdict: Option<Verdict>,
    pub message: String,
    /// Whether it goes to `ALERT_WEBHOOK_URL` (rollbacks, pauses and completions).
    pub alert: bool,
}

pub(super) fn event(s: &State, now_ms: u64, kind: EventKind, by: Actor, message: String) -> Event {
    let rollout = s.rollout.as_ref();
    Event {
        at_ms: now_ms,
        at: format_rfc3339_ms(now_ms),
        kind,
        by,
        phase: s.phase,
        green_percent: s.green_percent,
        blue_model: s.blue_model.clone(),
        green_model: s.green_model.clone(),
        rollout_id: rollout.map(|r| r.id),
        step: rollout
            .filter(|_| s.phase.is_active())
            .map(|r| r.step_index + 1),
        verdict: None,
        message,
        alert: matches!(
            kind,
            EventKind::Completed | EventKind::RolledBack | EventKind::Paused
        ),
    }
}

/// An operator's action, recorded.
pub(super) fn by_operator(s: &State, now_ms: u64, kind: EventKind, message: String) -> Effect {
    Effect::record(event(s, now_ms, kind, Actor::Operator, message))
}
