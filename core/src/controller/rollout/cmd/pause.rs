//! `POST /admin/pause`: stop on the current step, split unchanged, hold timer stopped; a shadow
//! step's copies stop (a new routing document without its share). Only while progressing.

use super::super::{Effect, Event, EventKind, Refusal, Stage, State, Transition};
use super::conflict;

/// Pauses the progressing rollout at `now_ms`.
pub(in crate::controller::rollout) fn pause(s: State, now_ms: u64) -> Result<Transition, Refusal> {
    let phase = s.phase();
    let Stage::Progressing(rollout) = s.stage else {
        return Err(conflict(phase, "pause"));
    };
    let (state, mut effects) = State::paused(s.split, rollout, now_ms);
    let msg = format!(
        "Paused by an operator at {}% green.",
        state.split.green_percent
    );
    let event = Event::by_operator(&state, now_ms, EventKind::Paused, msg);
    effects.push(Effect::record(event));
    Ok(Transition { effects, state })
}
