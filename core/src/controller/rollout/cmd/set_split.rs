//! `PUT /admin/split`: a manual split, which pauses the rollout until resumed. Only while a
//! rollout is under way; a split outside 0–100% is refused.

use super::super::{Effect, Event, EventKind, Paused, Phase, Refusal, Stage, State, Transition};
use super::conflict;
use crate::error::fields::FieldError;

/// Puts `green_percent` into force at `now_ms`, pausing the rollout.
pub(in crate::controller::rollout) fn set_split(
    s: State,
    green_percent: f64,
    now_ms: u64,
) -> Result<Transition, Refusal> {
    let phase = s.phase();
    let mut paused = match s.stage {
        Stage::Progressing(rollout) => Paused {
            rollout,
            paused_at_ms: now_ms,
        },
        // Already paused: the hold timer stopped at the first pause.
        Stage::Paused(paused) => paused,
        Stage::Idle | Stage::Completed(_) | Stage::RolledBack(_) => {
            return Err(conflict(phase, "set a manual split"))
        }
    };
    if !(0.0..=100.0).contains(&green_percent) {
        return Err(Refusal::Invalid(FieldError::new(
            "green_percent",
            "must be a number from 0 to 100",
        )));
    }
    // The manual split is not the step's: the split check starts again (and on resume).
    crate::verdict::share_check::restart(&mut paused.rollout.split_check);
    let mut split = s.split;
    split.green_percent = green_percent;
    split.version += 1;
    let state = State {
        split,
        stage: Stage::Paused(paused),
    };
    let msg = format!(
        "Manual split by an operator: {green_percent}% green; the rollout is paused until \
         resumed."
    );
    let mut event = Event::by_operator(&state, now_ms, EventKind::SplitSet, msg);
    // Pausing a running rollout is what the alert is about.
    event.alert = phase == Phase::Progressing;
    Ok(Transition {
        effects: vec![Effect::WriteSplit, Effect::record(event)],
        state,
    })
}
