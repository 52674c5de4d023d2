//! `POST /admin/rollouts`: start a rollout on the first step of its ladder. Refused while one
//! is under way, and when green would be the blue model.

use super::super::{
    Effect, Event, EventKind, Refusal, Rollout, RolloutSpec, Split, State, Step, Transition,
};
use crate::error::fields::FieldError;
use crate::request::routing::RoutingDoc;
use crate::verdict::sequential::Evidence;

/// Starts `spec` over the split in force (`routing`, whose blue stays blue) at `now_ms`.
pub(in crate::controller::rollout) fn start(
    s: State,
    spec: RolloutSpec,
    routing: RoutingDoc,
    now_ms: u64,
) -> Result<Transition, Refusal> {
    let first = check(&s, &spec, &routing)?;
    let id = s.rollout_id().map_or(1, |last| last + 1);
    let split = Split {
        blue_model: routing.blue_model,
        green_model: spec.green_model.clone(),
        green_percent: first.green_percent,
        sticky: routing.sticky,
        // Above both: KV may hold a newer document than the controller last wrote.
        version: s.split.version.max(routing.version) + 1,
    };
    let rollout = Rollout {
        id,
        green_model: spec.green_model,
        blue_model: split.blue_model.clone(),
        steps: spec.steps,
        health: spec.health,
        started_at_ms: now_ms,
        step_index: 0,
        step_started_at_ms: now_ms,
        consecutive_failures: 0,
        step_passed: false,
        evidence: Evidence::default(),
        split_check: Default::default(),
        verdict: None,
        incident: None,
        incident_ended_at_ms: None,
    };
    let state = State::progressing(split, rollout);
    let split = state.split();
    let msg = format!(
        "Rollout {id} of {} over {} started at {}.",
        split.green_model,
        split.blue_model,
        state.split_words()
    );
    let event = Event::by_operator(&state, now_ms, EventKind::Started, msg);
    Ok(Transition {
        effects: vec![
            Effect::ResetRollout,
            Effect::WriteSplit,
            Effect::record(event),
        ],
        state,
    })
}

/// Refuses a start while a rollout is under way, or of green equal to blue; otherwise the
/// ladder's first step.
fn check(s: &State, spec: &RolloutSpec, routing: &RoutingDoc) -> Result<Step, Refusal> {
    let phase = s.phase();
    if phase.is_active() {
        return Err(Refusal::Conflict(format!(
            "A rollout of {} is already {}; promote, roll back or wait for it first.",
            s.split.green_model,
            phase.name()
        )));
    }
    if spec.green_model == routing.blue_model {
        return Err(Refusal::Invalid(FieldError::new(
            "green_model",
            format!("must differ from the blue model ({})", routing.blue_model),
        )));
    }
    // `RolloutSpec::from_json` never yields an empty ladder; a spec built in code might.
    spec.steps
        .first()
        .copied()
        .ok_or_else(|| Refusal::Invalid(FieldError::new("steps", "must list at least one step")))
}
