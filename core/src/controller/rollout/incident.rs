//! Holding a rollout through a provider-wide incident: a tick that shows blue itself failing
//! above the policy's `max_error_rate` (see [`crate::verdict::incident`]) begins one, and the step
//! holds (no advance, no completion) until blue is shown back at or under the limit. Green is
//! still judged throughout: the relative tests compare it with blue, so an incident that hits
//! both alike adds no evidence against it, and the guard stands aside while it lasts.
//!
//! An incident ends on evidence, not on one tick's point estimate: blue's requests are counted
//! over the ticks since one last showed it above the limit (at 95%), and the incident ends when
//! the 95% upper bound on their rate is at or under the limit ([`crate::verdict::incident::blue_back`]).
//! A blue that hovers just above the limit therefore does not begin and end an incident every
//! few ticks, and one steadily above it never ends one. Such an incident, or one in which blue
//! has no requests, is not left to hold the step forever: after [`LONGEST_MS`] the rollout
//! pauses with an alert naming blue's rate, as `max_error_rate` is then most likely below
//! blue's ordinary rate; a resume clears the incident. A beginning within [`QUIET_MS`] of the
//! last incident's end is recorded without an alert, so a flapping provider pages once an hour
//! at most; every end alerts.
//!
//! The step's hold timer stands still during an incident, as during a pause: the hold is time
//! to watch green at this share under ordinary conditions, and minutes in which every request
//! may fail for the provider's reasons are not that. When the incident ends, the step goes on
//! with the time it had when the incident began.

use serde::{Deserialize, Serialize};

use super::{EventKind, Rollout};
use crate::stats::{EnvStats, Pair};
use crate::verdict::health::{Verdict, VerdictStatus};
use crate::verdict::incident::{absolute_limit, blue_above, blue_back, bound_above, ASIDE};

/// An incident under way, as stored with the rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// When the tick that showed it ran.
    pub since_ms: u64,
    /// Time on the step when it began: the step's hold timer stands at this until it ends.
    pub step_elapsed_ms: u64,
    /// Blue's errors and requests on the tick that showed it.
    pub blue_errors: u64,
    pub blue_requests: u64,
    /// Green's, on the same tick.
    pub green_errors: u64,
    pub green_requests: u64,
    /// Blue's errors and requests over every tick of the incident, its first included.
    #[serde(default)]
    pub seen_errors: u64,
    #[serde(default)]
    pub seen_requests: u64,
    /// Blue's errors and requests since the latest tick that showed it above the limit: what
    /// ends the incident.
    #[serde(default)]
    pub calm_errors: u64,
    #[serde(default)]
    pub calm_requests: u64,
}

/// How long an incident may hold a step before the rollout pauses: an hour.
pub const LONGEST_MS: u64 = 60 * 60_000;

/// A beginning within this long of the last incident's end is not alerted: an hour.
pub const QUIET_MS: u64 = 60 * 60_000;

/// What a tick's observation of blue recorded: the event's kind and message, and whether it
/// alerts. A [`EventKind::Paused`] pauses the rollout (unless the tick rolls it back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Observed {
    pub kind: EventKind,
    pub message: String,
    pub alert: bool,
}

/// "30.2% of requests this tick (16 of 53)".
fn rate(errors: u64, requests: u64) -> String {
    let pct = if requests > 0 {
        100.0 * errors as f64 / requests as f64
    } else {
        0.0
    };
    format!("{pct:.1}% ({errors} of {requests})")
}

/// Begins or ends an incident on the tick's `window` at `now_ms`, or pauses the rollout when
/// one has lasted [`LONGEST_MS`]; returns what it recorded.
pub(super) fn observe(r: &mut Rollout, window: &Pair<EnvStats>, now_ms: u64) -> Option<Observed> {
    if r.incident.is_none() {
        return begin(r, window, now_ms);
    }
    let limit = r.health.max_error_rate;
    let (blue, green) = (&window.blue, &window.green);
    let step = r.step_index + 1;
    let incident = r.incident.as_mut()?;
    incident.count(blue, limit);
    let minutes = now_ms.saturating_sub(incident.since_ms) / 60_000;
    if blue.requests > 0 && blue_back(limit, incident.calm_errors, incident.calm_requests) {
        let message = format!(
            "Provider-wide incident ended after {minutes} min: blue fails {} of requests since it was last above the limit (this tick {}, green {}); step {step} goes on.",
            rate(incident.calm_errors, incident.calm_requests),
            rate(blue.errors(), blue.requests),
            rate(green.errors(), green.requests)
        );
        r.step_started_at_ms = now_ms.saturating_sub(incident.step_elapsed_ms);
        r.incident = None;
        r.incident_ended_at_ms = Some(now_ms);
        return Some(Observed {
            kind: EventKind::IncidentEnded,
            message,
            alert: true,
        });
    }
    (now_ms.saturating_sub(incident.since_ms) >= LONGEST_MS).then(|| Observed {
        kind: EventKind::Paused,
        message: format!(
            "Paused: a provider-wide incident has held step {step} for {minutes} min; blue fails {} of requests over it, above the {:.2}% limit. If that is blue's ordinary rate, max_error_rate is below blue's baseline: raise it, then resume (a resume clears the incident).",
            rate(incident.seen_errors, incident.seen_requests),
            100.0 * limit
        ),
        alert: true,
    })
}

/// Outside an incident: one begins when the tick shows blue above the limit. Its beginning
/// is alerted unless the last incident ended within [`QUIET_MS`].
fn begin(r: &mut Rollout, window: &Pair<EnvStats>, now_ms: u64) -> Option<Observed> {
    let limit = r.health.max_error_rate;
    let (blue, green) = (&window.blue, &window.green);
    if !blue_above(limit, blue.errors(), blue.requests) {
        return None;
    }
    let quiet = r
        .incident_ended_at_ms
        .is_some_and(|end| now_ms.saturating_sub(end) < QUIET_MS);
    let incident = Incident {
        since_ms: now_ms,
        step_elapsed_ms: r.elapsed_on_step_ms(now_ms),
        blue_errors: blue.errors(),
        blue_requests: blue.requests,
        green_errors: green.errors(),
        green_requests: green.requests,
        seen_errors: blue.errors(),
        seen_requests: blue.requests,
        calm_errors: 0,
        calm_requests: 0,
    };
    let message = format!(
        "Provider-wide incident: blue fails {} of requests this tick, green {}, above the {:.2}% limit; holding step {}.",
        rate(incident.blue_errors, incident.blue_requests),
        rate(incident.green_errors, incident.green_requests),
        100.0 * limit,
        r.step_index + 1
    );
    r.incident = Some(incident);
    Some(Observed {
        kind: EventKind::IncidentBegan,
        message,
        alert: !quiet,
    })
}

impl Incident {
    /// Adds a tick of blue's to the incident's counts: to all it has seen, and to those since
    /// blue was last shown above the limit (restarted when this tick shows it again).
    fn count(&mut self, blue: &EnvStats, limit: f64) {
        let errors = blue.errors().min(blue.requests);
        self.seen_errors = self.seen_errors.saturating_add(errors);
        self.seen_requests = self.seen_requests.saturating_add(blue.requests);
        if bound_above(errors, blue.requests, ASIDE, limit) {
            (self.calm_errors, self.calm_requests) = (0, 0);
        } else {
            self.calm_errors = self.calm_errors.saturating_add(errors);
            self.calm_requests = self.calm_requests.saturating_add(blue.requests);
        }
    }
}

/// Clears an incident when an operator resumes a rollout paused at `paused_at_ms`: the step's
/// time is what it had when the incident began, and the quiet hour starts at `now_ms`.
pub(super) fn clear_on_resume(r: &mut Rollout, paused_at_ms: u64, now_ms: u64) {
    if let Some(incident) = r.incident.take() {
        r.step_started_at_ms = paused_at_ms.saturating_sub(incident.step_elapsed_ms);
        r.incident_ended_at_ms = Some(now_ms);
    }
}

/// Makes the threshold method's failing `verdict` on `window` inconclusive while an incident
/// lasts or when the window shows blue above the limit (at 95%); whether it did. Its gates
/// judge green alone or by a difference in points, and when both environments fail 30% the
/// difference is noise (a Monte Carlo of COMMON-OUTAGE at 1 req/s rolled back ~28% of
/// rollouts on it); the sequential method, which compares green with blue by ratio with its
/// own guarantees, keeps judging green then.
pub(super) fn excuse_threshold(
    r: &Rollout,
    window: &Pair<EnvStats>,
    verdict: &mut Verdict,
) -> bool {
    let limit = r.health.max_error_rate;
    let blue = &window.blue;
    let shown = absolute_limit(
        limit,
        r.health.tolerance_ratio,
        blue.errors(),
        blue.requests,
    )
    .is_none();
    if verdict.status != VerdictStatus::Fail || !(shown || r.incident.is_some()) {
        return false;
    }
    verdict.status = VerdictStatus::Inconclusive;
    verdict.reasons.insert(
        0,
        format!(
            "not counted against green: a provider-wide incident (blue fails {} of requests in this window, above the {:.2}% limit); the threshold method does not judge green until it ends",
            rate(blue.errors(), blue.requests),
            100.0 * limit
        ),
    );
    true
}
