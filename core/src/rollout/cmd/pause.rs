//! `POST /admin/pause`: stop on the current step, split unchanged, hold timer stopped; a shadow
//! step's copies stop (a new routing document without its share). Only while progressing.

use super::super::{Effect, Event, EventKind, Paused, Refusal, Stage, State, Transition};
use super::conflict;

/// Pauses the progressing rollout at `now_ms`.
pub(in crate::rollout) fn pause(s: State, now_ms: u64) -> Result<Transition, Refusal> {
    let phase = s.phase();
    let copying = s.shadow_percent() > 0.0;
    let Stage::Progressing(rollout) = s.stage else {
        return Err(conflict(phase, "pause"));
    };
    let paused = Paused {
        rollout,
        paused_at_ms: now_ms,
    };
    let mut split = s.split;
    let mut effects = Vec::new();
    // A paused shadow step stops copying: a new document without the share.
    if copying {
        split.version += 1;
        effects.push(Effect::WriteSplit);
    }
    let state = State {
        split,
        stage: Stage::Paused(paused),
    };
    let msg = format!(
        "Paused by an operator at {}% green.",
        state.split.green_percent
    );
    let event = Event::by_operator(&state, now_ms, EventKind::Paused, msg);
    effects.push(Effect::record(event));
    Ok(Transition { effects, state })
}
