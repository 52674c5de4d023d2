//! Holding a rollout through a provider-wide incident: a tick that shows blue itself failing
//! above the policy's `max_error_rate` (see [`crate::incident`]) begins one, and the step
//! holds (no advance, no completion) until a tick shows blue back at or under the limit. Green
//! is still judged throughout: the relative tests compare it with blue, so an incident that
//! hits both alike adds no evidence against it, and the guard holds it to τ × blue's rate.
//!
//! The step's hold timer stands still during an incident, as during a pause: the hold is time
//! to watch green at this share under ordinary conditions, and minutes in which every request
//! may fail for the provider's reasons are not that. When the incident ends, the step goes on
//! with the time it had when the incident began.

use serde::{Deserialize, Serialize};

use super::{EventKind, Rollout};
use crate::incident::blue_above;
use crate::stats::{EnvStats, Pair};

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

/// Begins or ends an incident on the tick's `window` at `now_ms`; returns the event's kind and
/// message when it did. An incident ends on a tick in which blue had requests and failed at
/// most `max_error_rate` of them (a tick without blue requests shows nothing either way).
pub(super) fn observe(
    r: &mut Rollout,
    window: &Pair<EnvStats>,
    now_ms: u64,
) -> Option<(EventKind, String)> {
    let limit = r.health.max_error_rate;
    let (blue, green) = (&window.blue, &window.green);
    let step = r.step_index + 1;
    match &r.incident {
        None if blue_above(limit, blue.errors(), blue.requests) => {
            let incident = Incident {
                since_ms: now_ms,
                step_elapsed_ms: r.elapsed_on_step_ms(now_ms),
                blue_errors: blue.errors(),
                blue_requests: blue.requests,
                green_errors: green.errors(),
                green_requests: green.requests,
            };
            let message = format!(
                "Provider-wide incident: blue fails {} of requests this tick, green {}, above the {:.2}% limit; holding step {step}.",
                rate(incident.blue_errors, incident.blue_requests),
                rate(incident.green_errors, incident.green_requests),
                100.0 * limit
            );
            r.incident = Some(incident);
            Some((EventKind::IncidentBegan, message))
        }
        Some(incident)
            if blue.requests > 0 && blue.errors() as f64 <= limit * blue.requests as f64 =>
        {
            let minutes = now_ms.saturating_sub(incident.since_ms) / 60_000;
            r.step_started_at_ms = now_ms.saturating_sub(incident.step_elapsed_ms);
            r.incident = None;
            Some((
                EventKind::IncidentEnded,
                format!(
                    "Provider-wide incident ended after {minutes} min: blue fails {} of requests this tick, green {}; step {step} goes on.",
                    rate(blue.errors(), blue.requests),
                    rate(green.errors(), green.requests)
                ),
            ))
        }
        _ => None,
    }
}
