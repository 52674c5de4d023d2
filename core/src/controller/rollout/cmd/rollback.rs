//! `POST /admin/rollback`: back to 0% green at once. Only while a rollout is under way
//! (progressing or paused); the tick's automatic rollback is in `../tick.rs`.

use super::super::{Effect, Event, EventKind, Refusal, State, Transition};
use super::conflict;

/// Rolls the rollout under way back at `now_ms`.
pub(in crate::controller::rollout) fn rollback(
    s: State,
    now_ms: u64,
) -> Result<Transition, Refusal> {
    let phase = s.phase();
    let rollout = s
        .stage
        .into_active()
        .ok_or_else(|| conflict(phase, "roll back"))?;
    let state = State::rolled_back(s.split, rollout, now_ms);
    let msg = format!(
        "Rolled back by an operator: {} serves all traffic.",
        state.split.blue_model
    );
    let event = Event::by_operator(&state, now_ms, EventKind::RolledBack, msg);
    Ok(Transition {
        effects: vec![Effect::WriteSplit, Effect::record(event)],
        state,
    })
}
