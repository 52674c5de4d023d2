//! `POST /admin/pause`: stop on the current step, split unchanged, hold timer stopped. Only
//! while progressing.

use super::super::{Effect, Event, EventKind, Paused, Refusal, Stage, State, Transition};
use super::conflict;

/// Pauses the progressing rollout at `now_ms`.
pub(in crate::rollout) fn pause(s: State, now_ms: u64) -> Result<Transition, Refusal> {
    let phase = s.phase();
    let Stage::Progressing(rollout) = s.stage else {
        return Err(conflict(phase, "pause"));
    };
    let paused = Paused {
        rollout,
        paused_at_ms: now_ms,
    };
    let state = State {
        split: s.split,
        stage: Stage::Paused(paused),
    };
    let msg = format!(
        "Paused by an operator at {}% green.",
        state.split.green_percent
    );
    let event = Event::by_operator(&state, now_ms, EventKind::Paused, msg);
    Ok(Transition {
        effects: vec![Effect::record(event)],
        state,
    })
}
