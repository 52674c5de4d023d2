//! `PUT /admin/routes/{name}` on a route that exists: its blue (and idle green) model and its
//! stickiness change, at 0% green. Refused while a rollout is under way: its verdicts compare
//! green with the blue it started on, and a new blue mid-rollout would make them meaningless.

use super::super::{Effect, Event, EventKind, Refusal, State, Transition};
use crate::controller::rollout::Split;
use crate::request::routing::RoutingDoc;

/// A route created at `now_ms` (`PUT /admin/routes/{name}` on a controller with no state):
/// idle on `routing`, its definition's split, which goes to KV.
pub fn create(routing: &RoutingDoc, now_ms: u64) -> Transition {
    let state = State::initial(routing);
    let msg = format!(
        "Route created by an operator: {} serves all traffic.",
        state.split.blue_model
    );
    let event = Event::by_operator(&state, now_ms, EventKind::RouteDefined, msg);
    Transition {
        effects: vec![Effect::WriteSplit, Effect::record(event)],
        state,
    }
}

/// Puts `blue_model` (with `green_model` for clients that force green) into force at `now_ms`.
/// A definition that changes nothing is no transition at all: no version, no event.
pub(in crate::controller::rollout) fn redefine(
    s: State,
    blue_model: String,
    green_model: String,
    sticky: bool,
    now_ms: u64,
) -> Result<Transition, Refusal> {
    if let Some(rollout) = s.active() {
        return Err(Refusal::Conflict(format!(
            "Cannot change the route's models while rollout {} is {}: roll it back, promote it \
             or wait for it to end.",
            rollout.id,
            s.phase().name()
        )));
    }
    let same = s.split.blue_model == blue_model
        && s.split.green_model == green_model
        && s.split.sticky == sticky
        && s.split.green_percent == 0.0;
    if same {
        return Ok(Transition {
            state: s,
            effects: Vec::new(),
        });
    }
    let split = Split {
        blue_model,
        green_model,
        green_percent: 0.0,
        sticky,
        version: s.split.version + 1,
    };
    let state = State { split, ..s };
    let msg = format!(
        "Route defined by an operator: {} serves all traffic{}.",
        state.split.blue_model,
        if state.split.sticky {
            ""
        } else {
            " (not sticky)"
        }
    );
    let event = Event::by_operator(&state, now_ms, EventKind::RouteDefined, msg);
    Ok(Transition {
        effects: vec![Effect::WriteSplit, Effect::record(event)],
        state,
    })
}
