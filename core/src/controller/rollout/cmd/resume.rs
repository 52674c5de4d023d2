//! `POST /admin/resume`: back to the current step's split (and a shadow step's copies), with
//! the hold timer running again and the step to pass again. Only while paused.

use super::super::{Effect, Event, EventKind, Paused, Refusal, Stage, State, Transition};
use super::conflict;
use crate::verdict::health::Method;
use crate::verdict::sequential;
use crate::verdict::share_check;

/// Resumes the paused rollout at `now_ms`.
pub(in crate::controller::rollout) fn resume(s: State, now_ms: u64) -> Result<Transition, Refusal> {
    let phase = s.phase();
    let Stage::Paused(Paused {
        mut rollout,
        paused_at_ms,
    }) = s.stage
    else {
        return Err(conflict(phase, "resume"));
    };
    let mut split = s.split;
    let mut effects = Vec::new();
    // The operator has looked: an incident ends here (its step time is restored first).
    super::super::incident::clear_on_resume(&mut rollout, paused_at_ms, now_ms);
    // The hold timer did not run while paused.
    rollout.step_started_at_ms += now_ms.saturating_sub(paused_at_ms);
    // The step must pass again on traffic seen since the resume: the window restarts (what
    // came while paused, perhaps under a manual split, is not this step's traffic), and so do
    // the threshold gates' failure count and the sequential test's requests-in-step count, so
    // that `min_requests` must be met again. The sequential evidence itself is kept (it holds
    // whatever the split was).
    rollout.step_passed = false;
    // The operator has looked: the split check starts again, and a hold it had ends.
    share_check::restart(&mut rollout.split_check);
    effects.push(Effect::ResetWindow);
    match rollout.health.method {
        Method::Threshold => rollout.consecutive_failures = 0,
        Method::Sequential => sequential::restart_step_counts(&mut rollout.evidence),
    }
    let step_percent = rollout.step().green_percent;
    // A shadow step's copies stopped with the pause: its share is published again.
    let copies = rollout.step().is_shadow();
    if split.green_percent != step_percent || copies {
        split.green_percent = step_percent;
        split.version += 1;
        effects.push(Effect::WriteSplit);
    }
    let state = State::progressing(split, rollout);
    let msg = format!(
        "Resumed by an operator at {}% green.",
        state.split.green_percent
    );
    effects.push(Effect::record(Event::by_operator(
        &state,
        now_ms,
        EventKind::Resumed,
        msg,
    )));
    Ok(Transition { state, effects })
}
