//! The controller's handlers: each reads its input, asks the core, and answers. Operator
//! commands answer the new status (or the core's refusal); the tick answers a one-line summary.

use bluegreen_core::config::Config;
use bluegreen_core::controller::metrics::{self, Snapshot};
use bluegreen_core::controller::rollout::{apply, Command, RolloutSpec};
use bluegreen_core::controller::status;
use bluegreen_core::error::fields::{parse_body, Obj, MAX_ADMIN_BODY};
use bluegreen_core::error::ApiError;
use bluegreen_core::isolate::batch::Batch;
use bluegreen_core::isolate::feedback::{self, Feedback};
use bluegreen_core::request::path::{query_param, split_url};
use bluegreen_core::route::registry::RouteKind;
use bluegreen_core::util::json;
use bluegreen_core::verdict::health::VerdictStatus;
use serde::Serialize;
use worker::{Request, Response};

use super::store::Intake;
use super::RolloutController;
use crate::error::Result;
use crate::runtime::now_ms;
use crate::{http, kv};

/// What a tick answers the cron handler.
#[derive(Serialize)]
struct Ticked<'a> {
    route: &'a str,
    phase: &'a str,
    green_percent: f64,
    verdict: Option<VerdictStatus>,
    effects: usize,
    routing_synced: bool,
    /// What a read of the routing document in KV found.
    document: &'a str,
}

impl RolloutController {
    /// `POST /internal/stats`: adds a batch to every window and its minutes, once. A batch
    /// merged by the queue's consumer counts once per batch it holds; when some of them were
    /// counted before, nothing is, and the answer (409) names them.
    pub(super) async fn ingest(&self, req: &mut Request) -> Result<Response> {
        let text = req.text().await?;
        let batch: Batch =
            json::parse(&text).map_err(|e| ApiError::invalid_json(&e.to_string()))?;
        let scopes = self.with_mem(|m| {
            let mut scopes = m.scopes.clone();
            for entry in &batch.entries {
                scopes.add_entry(entry, &m.state);
            }
            for entry in &batch.shadow {
                scopes.add_shadow(entry, &m.state);
            }
            scopes.add_losses(&batch.judge_losses);
            scopes
        });
        let now = now_ms();
        match self.store.ingest(&batch, &scopes, now)? {
            Intake::Counted => {}
            Intake::Duplicate => {
                return Ok(http::json(200, &serde_json::json!({"duplicate": true}))?)
            }
            // The consumer acknowledges those and merges the others again.
            Intake::Seen(ids) => return Ok(http::json(409, &serde_json::json!({"seen": ids}))?),
        }
        self.with_mem(|m| {
            m.scopes = scopes;
            if let Some(sent) = batch.sent_ms {
                m.queue_intake = Some((now, now.saturating_sub(sent)));
            }
        });
        // Old batch ids, minutes and events go whether or not the cron runs.
        self.prune_if_due(now)?;
        Ok(http::json(
            200,
            &serde_json::json!({"accepted": batch.requests()}),
        )?)
    }

    /// `POST /internal/feedback`: counts a verified score once, in the windows of the split
    /// its request was routed under and in the minute it arrived. Past its intake bound it
    /// answers 429 before touching storage, so that a flood of scores leaves its ticks, stats
    /// and admin API their time.
    pub(super) async fn feedback(&self, req: &mut Request) -> Result<Response> {
        let text = req.text().await?;
        let feedback: Feedback =
            json::parse(&text).map_err(|e| ApiError::invalid_json(&e.to_string()))?;
        let now = now_ms();
        let admitted = self.score_intake.borrow_mut().take(
            now,
            feedback::CONTROLLER_PER_MINUTE,
            feedback::CONTROLLER_BURST,
        );
        if !admitted {
            return Err(ApiError::feedback_rate_limited(1).into());
        }
        if self.store.was_scored(&feedback.request_id)? {
            return Err(ApiError::duplicate_feedback().into());
        }
        let entry = feedback.entry(now);
        let (scopes, judged) = self.with_mem(|m| {
            let mut scopes = m.scopes.clone();
            let judged = scopes.add_entry(&entry, &m.state);
            (scopes, judged)
        });
        if !self.store.score(&feedback, &entry, &scopes)? {
            return Err(ApiError::duplicate_feedback().into());
        }
        self.with_mem(|m| m.scopes = scopes);
        self.prune_if_due(now)?;
        Ok(http::json(
            200,
            &serde_json::json!({
                "request_id": feedback.request_id,
                "environment": feedback.environment,
                "negative": feedback.negative,
                "counted": true,
                "judged": judged,
            }),
        )?)
    }

    /// `POST /internal/tick`: judge the window, maybe move; retry a failed KV write; prune.
    pub(super) async fn tick(&self, cfg: &Config) -> Result<Response> {
        self.adopt_routing_while_unused().await;
        let now = now_ms();
        let transition = self.with_mem(|m| apply(&m.state, m.scopes.tick(), now))?;
        let effects = transition.effects.len();
        // While the stored state is unreadable nothing is judged or written: it holds.
        if self.refuse_while_unreadable().is_ok() {
            self.commit(cfg, transition, now).await?;
            self.verify_routing(cfg, now).await?;
        }
        self.prune_if_due(now)?;
        self.store.set_last_tick(now)?;
        self.with_mem(|m| m.last_tick_ms = Some(now));
        let route = self.route_name();
        // Read now, so that a broken document shows in the cron's log within a minute.
        let document = match kv::check_document(&self.env, &route).await {
            Ok(summary) => summary,
            Err(problem) => problem.to_string(),
        };
        let body = self.with_mem(|m| {
            serde_json::to_string(&Ticked {
                route: &route,
                document: &document,
                phase: m.state.phase().name(),
                green_percent: m.state.green_percent(),
                verdict: m.state.verdict_status(),
                effects,
                routing_synced: m.routing_synced(),
            })
        });
        Ok(Response::ok(
            body.map_err(|e| ApiError::internal(&e.to_string()))?,
        )?)
    }

    /// `GET /admin/status`.
    pub(super) async fn status(&self) -> Result<Response> {
        self.adopt_routing_while_unused().await;
        Ok(http::json(200, &self.status_at(now_ms()))?)
    }

    /// `GET /metrics` (the Worker checked the metrics token): the exposition text, built from
    /// memory alone (no storage query), so a scrape costs the text's size in CPU and holds up
    /// no tick or stats post for longer than that.
    pub(super) fn metrics(&self) -> Response {
        let route = self.route_name();
        let transport = crate::stats_queue::transport(&self.env);
        let text = self.with_mem(|m| {
            let snap = Snapshot {
                route: &route,
                stats_transport: transport,
                stats_queue_lag_ms: m.queue_intake.map(|(_, lag)| lag),
                stats_queue_intake_ms: m.queue_intake.map(|(at, _)| at),
                ..Snapshot::of(
                    &m.state,
                    &m.scopes,
                    m.routing_synced(),
                    m.problem.is_some(),
                    m.last_tick_ms,
                )
            };
            metrics::render(&snap)
        });
        http::text(
            200,
            metrics::CONTENT_TYPE,
            text,
            &[("cache-control", "no-store")],
        )
    }

    /// `POST /admin/rollouts`.
    pub(super) async fn start(&self, cfg: &Config, req: &mut Request) -> Result<Response> {
        let kind = self.with_mem(|m| m.kind);
        let spec = RolloutSpec::for_route(&read_admin_body(req).await?, kind)?;
        let routing = self.routing_in_force().await;
        self.run(cfg, Command::Start { spec, routing }, 201).await
    }

    /// `POST /admin/promote`.
    pub(super) async fn promote(&self, cfg: &Config) -> Result<Response> {
        self.run(cfg, Command::Promote, 200).await
    }

    /// `POST /admin/rollback`.
    pub(super) async fn rollback(&self, cfg: &Config) -> Result<Response> {
        self.run(cfg, Command::Rollback, 200).await
    }

    /// `POST /admin/pause`.
    pub(super) async fn pause(&self, cfg: &Config) -> Result<Response> {
        self.run(cfg, Command::Pause, 200).await
    }

    /// `POST /admin/resume`.
    pub(super) async fn resume(&self, cfg: &Config) -> Result<Response> {
        self.run(cfg, Command::Resume, 200).await
    }

    /// `PUT /admin/split`: `{"green_percent": 0..=100}`.
    pub(super) async fn split(&self, cfg: &Config, req: &mut Request) -> Result<Response> {
        let body = read_admin_body(req).await?;
        let o = Obj::new(&body, "")?;
        o.only(&["green_percent"])?;
        let green_percent = o
            .number("green_percent", 0.0, 100.0)?
            .ok_or_else(|| ApiError::invalid_value("green_percent", "is required (0 to 100)"))?;
        if green_percent != 0.0 && self.with_mem(|m| m.kind) == RouteKind::Embeddings {
            return Err(ApiError::embeddings_split(&self.route_name()).into());
        }
        self.run(cfg, Command::SetSplit { green_percent }, 200)
            .await
    }

    /// `GET /admin/events?limit=N`: the newest events first.
    pub(super) fn events(&self, req: &Request) -> Result<Response> {
        let limit = query_number(req, "limit", 50, 1, 1000)?;
        let events = self.store.events(limit)?;
        // Written straight to text: through a `serde_json::Value` (`json!`), every event type's
        // `Serialize` would be in the wasm twice.
        #[derive(serde::Serialize)]
        struct Events {
            events: Vec<super::store::NumberedEvent>,
        }
        Ok(http::json(200, &Events { events })?)
    }

    /// `GET /admin/history?minutes=N`: per-minute figures and the split changes among them.
    pub(super) fn history(&self, req: &Request) -> Result<Response> {
        let minutes = query_number(req, "minutes", 60, 1, 1440)?;
        let now = now_ms();
        let first = (now / 60_000 + 1).saturating_sub(minutes);
        let rows = self.store.minutes_since(first)?;
        let events = self.store.split_events_since(first * 60_000)?;
        Ok(http::json(
            200,
            &status::history(&rows, &events, minutes, now),
        )?)
    }

    /// Drops old rows (batch ids, minutes, events) at most once a minute: from every tick and
    /// every stats batch, so that storage stays bounded even when the cron does not run.
    fn prune_if_due(&self, now: u64) -> Result<()> {
        if now.saturating_sub(self.with_mem(|m| m.pruned_at_ms)) < 60_000 {
            return Ok(());
        }
        self.store.prune(now)?;
        self.with_mem(|m| m.pruned_at_ms = now);
        Ok(())
    }

    /// Runs an operator's command; answers the new status with `ok_status`, or the refusal.
    async fn run(&self, cfg: &Config, cmd: Command, ok_status: u16) -> Result<Response> {
        let now = now_ms();
        let transition = self.with_mem(|m| apply(&m.state, cmd, now))?;
        self.commit(cfg, transition, now).await?;
        Ok(http::json(ok_status, &self.status_at(now))?)
    }
}

/// Reads an admin body (at most 64 KiB) as JSON; empty is `{}`.
async fn read_admin_body(req: &mut Request) -> Result<serde_json::Value> {
    let bytes = req.bytes().await?;
    if bytes.len() > MAX_ADMIN_BODY {
        return Err(ApiError::body_too_large(MAX_ADMIN_BODY).into());
    }
    Ok(parse_body(&bytes)?)
}

/// Reads `name` from the query string as a whole number in `[min, max]`, or `default`.
fn query_number(req: &Request, name: &str, default: u64, min: u64, max: u64) -> Result<u64> {
    // The raw URL, read without the url crate (its IDNA tables are a large part of the wasm).
    let url = req.inner().url();
    let Some(v) = split_url(&url).1.and_then(|q| query_param(q, name)) else {
        return Ok(default);
    };
    v.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            ApiError::invalid_value(name, &format!("must be a whole number from {min} to {max}"))
                .into()
        })
}
