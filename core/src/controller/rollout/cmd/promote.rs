//! `POST /admin/promote`: straight to completion, green the new blue. Only while a rollout is
//! under way (progressing or paused).

use super::super::{Effect, Event, EventKind, Refusal, State, Transition};
use super::conflict;

/// Completes the rollout under way at `now_ms`.
pub(in crate::controller::rollout) fn promote(
    s: State,
    now_ms: u64,
) -> Result<Transition, Refusal> {
    let phase = s.phase();
    let rollout = s
        .stage
        .into_active()
        .ok_or_else(|| conflict(phase, "promote"))?;
    let state = State::completed(s.split, rollout, now_ms);
    let msg = format!(
        "Promoted by an operator: {} is the new blue at 100%.",
        state.split.blue_model
    );
    let event = Event::by_operator(&state, now_ms, EventKind::Completed, msg);
    Ok(Transition {
        effects: vec![Effect::WriteSplit, Effect::record(event)],
        state,
    })
}
