//! The event log's entries: what happened, who caused it, and the split after it. Built from
//! the state a transition leads to; this module decides nothing and stores nothing.

use serde::{Deserialize, Serialize};

use super::{Phase, State};
use crate::util::time::format_rfc3339_ms;
use crate::verdict::health::Verdict;

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
    /// The stored state could not be read; the controller holds until an operator recovers.
    StateUnreadable,
    /// An operator recovered from an unreadable state to a safe split.
    Recovered,
    /// A tick found the routing document in KV missing or not the controller's, and rewrote it.
    RoutingRepaired,
    /// Green's share of routed requests is off the step's split beyond chance: the rollout
    /// holds (no step advances) until it is back.
    SplitMismatch,
    /// The share is back inside the band: the hold for a split mismatch ended.
    SplitMatched,
    /// Blue itself failed above `max_error_rate`: the step holds until the incident ends.
    IncidentBegan,
    /// Blue recovered from an incident: the step goes on.
    IncidentEnded,
    /// An operator defined the route anew (`PUT /admin/routes/{name}`): its models at 0% green.
    RouteDefined,
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
    /// When, Unix ms.
    pub at_ms: u64,
    /// When, RFC 3339.
    pub at: String,
    /// What happened.
    pub kind: EventKind,
    /// Who caused it.
    pub by: Actor,
    /// The phase after the event.
    pub phase: Phase,
    /// The split after the event.
    pub green_percent: f64,
    /// The blue model after the event.
    pub blue_model: String,
    /// The green model after the event.
    pub green_model: String,
    /// The rollout it belongs to; `None` before the first.
    pub rollout_id: Option<u64>,
    /// The step (1-based) after the event, while a rollout is active.
    pub step: Option<usize>,
    /// The verdict that caused it (the controller's events only).
    pub verdict: Option<Verdict>,
    /// What happened and why, for people.
    pub message: String,
    /// The route whose rollout it belongs to; stamped by the controller, which knows its route
    /// (the state machine does not). Absent in events stored before routes: the default route's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Whether it goes to `ALERT_WEBHOOK_URL` (rollbacks, pauses, completions, an unreadable
    /// state and its recovery, a repaired routing document, a split mismatch's hold and its
    /// end, an incident's start (unless within the hour after the last one's end) and end).
    pub alert: bool,
}

impl Event {
    /// The event of a transition to `state` at `now_ms`: the phase, split and step are the
    /// state's. Rollbacks, pauses and completions alert.
    fn new(state: &State, now_ms: u64, kind: EventKind, by: Actor, message: String) -> Event {
        let split = state.split();
        Event {
            at_ms: now_ms,
            at: format_rfc3339_ms(now_ms),
            kind,
            by,
            phase: state.phase(),
            green_percent: split.green_percent,
            blue_model: split.blue_model.clone(),
            green_model: split.green_model.clone(),
            rollout_id: state.rollout_id(),
            step: state.step_number(),
            verdict: None,
            message,
            route: None,
            alert: matches!(
                kind,
                EventKind::Completed
                    | EventKind::RolledBack
                    | EventKind::Paused
                    | EventKind::StateUnreadable
                    | EventKind::Recovered
                    | EventKind::RoutingRepaired
                    | EventKind::SplitMismatch
                    | EventKind::SplitMatched
                    | EventKind::IncidentBegan
                    | EventKind::IncidentEnded
            ),
        }
    }

    /// An operator's action that led to `state`.
    pub(super) fn by_operator(
        state: &State,
        now_ms: u64,
        kind: EventKind,
        message: String,
    ) -> Event {
        Event::new(state, now_ms, kind, Actor::Operator, message)
    }

    /// The controller's own event without a verdict (an unreadable state found at load, the
    /// split check's hold and its end).
    pub(super) fn by_controller_plain(
        state: &State,
        now_ms: u64,
        kind: EventKind,
        message: String,
    ) -> Event {
        Event::new(state, now_ms, kind, Actor::Controller, message)
    }

    /// A tick's judgement that led to `state`, with the verdict that made it.
    pub(super) fn by_controller(
        state: &State,
        now_ms: u64,
        kind: EventKind,
        message: String,
        verdict: Verdict,
    ) -> Event {
        Event {
            verdict: Some(verdict),
            ..Event::new(state, now_ms, kind, Actor::Controller, message)
        }
    }
}
