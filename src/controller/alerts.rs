//! Alerts: each event marked for alerting (rollbacks, pauses, completions) is posted to
//! `ALERT_WEBHOOK_URL` as a Slack-compatible body, `{"text", "event"}`, on the core's alert
//! retry schedule. Runs from `waitUntil`, so a slow webhook never holds up a tick; a failure
//! is logged and never fails the caller.

use bluegreen_core::controller::rollout::Event;
use bluegreen_core::util::retry::Schedule;
use serde::Serialize;
use wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::JsFuture;

use crate::error::{Error, Result};
use crate::retry;

/// Whether the split an alert announces is in KV, where the request path reads it.
#[derive(Debug, Clone, Serialize)]
pub struct RoutingNote {
    /// The split is written (`false`: queued behind another write, or failed).
    pub written: bool,
    /// The routing version concerned.
    pub version: u64,
    /// Why it is not written, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RoutingNote {
    /// Written now.
    pub fn written(version: u64) -> RoutingNote {
        RoutingNote {
            written: true,
            version,
            error: None,
        }
    }

    /// Another write in flight will write it.
    pub fn queued(version: u64) -> RoutingNote {
        RoutingNote {
            written: false,
            version,
            error: None,
        }
    }

    /// Not written after the retries.
    pub fn failed(version: u64, error: &str) -> RoutingNote {
        RoutingNote {
            written: false,
            version,
            error: Some(error.to_string()),
        }
    }

    /// The sentence the alert's text ends with.
    fn sentence(&self) -> String {
        match (&self.written, &self.error) {
            (true, _) => format!(" Split written to KV (version {}).", self.version),
            (false, None) => format!(" Split being written to KV (version {}).", self.version),
            (false, Some(e)) => format!(
                " Split NOT written to KV (version {}): {e}; the next tick tries again.",
                self.version
            ),
        }
    }
}

/// The Slack-compatible alert body.
#[derive(Serialize)]
struct Alert<'a> {
    text: String,
    event: &'a Event,
    /// Whether the split it announces is in force, when it changed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    routing: Option<&'a RoutingNote>,
}

/// Posts each event's alert to `url`, one after another; `routing` says whether the split
/// they announce was written.
pub async fn send(url: String, events: Vec<Event>, routing: Option<RoutingNote>) {
    for event in events {
        let note = routing
            .as_ref()
            .map(RoutingNote::sentence)
            .unwrap_or_default();
        let body = match serde_json::to_string(&Alert {
            text: chat_safe(&format!(
                "bluegreen-router, route {}: {} ({}% green, {} → {}){note}",
                event
                    .route
                    .as_deref()
                    .unwrap_or(bluegreen_core::route::DEFAULT),
                event.message,
                event.green_percent,
                event.blue_model,
                event.green_model
            )),
            event: &event,
            routing: routing.as_ref(),
        }) {
            Ok(body) => body,
            Err(e) => {
                worker::console_error!("alert not serializable: {e}");
                continue;
            }
        };
        let schedule = Schedule::ALERT;
        let attempt = || post_json(&url, &body, &schedule);
        let warn = |n: usize, why: &str| {
            worker::console_warn!("alert webhook attempt {n}: {why}");
        };
        if retry::run(&schedule, attempt, warn).await.is_err() {
            worker::console_error!(
                "alert not delivered after {} attempts: {}",
                schedule.attempts(),
                event.message
            );
        }
    }
}

/// The alert's text as chat webhooks (Slack's, Mattermost's) read it: `&`, `<` and `>` escaped,
/// so that no text quoted in it (a grader's reason may quote a user's prompt) can mention a
/// channel or make a link; control characters other than line feeds become spaces.
fn chat_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' => out.push('\n'),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// One attempt, judged on the response's status alone: its body is cancelled unread (that
/// releases the connection), so a webhook slow to finish its body never turns a delivered
/// alert into a failed attempt that would be posted again. The fetch is aborted when no
/// response headers arrive within the attempt's time.
async fn post_json(url: &str, body: &str, schedule: &Schedule) -> Result<()> {
    let headers = worker::Headers::new();
    headers.set("content-type", "application/json")?;
    let ms = u32::try_from(schedule.attempt_timeout_ms).unwrap_or(u32::MAX);
    let promise =
        crate::js::fetch_with_timeout(url, "POST", &headers.0, Some(JsValue::from_str(body)), ms);
    let resp: worker::web_sys::Response =
        wasm_bindgen::JsCast::unchecked_into(JsFuture::from(promise).await?);
    if let Some(body) = resp.body() {
        let _ = body.cancel();
    }
    match resp.status() {
        200..=299 => Ok(()),
        s => Err(Error::Runtime(format!("answered {s}"))),
    }
}
