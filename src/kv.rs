//! The routing document as this isolate sees it: read from KV at most once per
//! `ROUTING_CACHE_SECONDS`, validated, and replaced only by a valid document.
//!
//! While a refresh is under way, concurrent requests keep using the document they have, so one
//! isolate issues at most one KV read per cache period. A document that fails validation is
//! ignored (the last good one, or the defaults, stays in force); the reason is logged once and
//! reported by `GET /healthz`.

use std::cell::RefCell;
use std::rc::Rc;

use bluegreen_core::config::Config;
use bluegreen_core::openai::ApiError;
use bluegreen_core::routing::{RoutingDoc, ROUTING_KEY};
use serde::Serialize;
use worker::{Env, Response};

use crate::settings;

/// Where the document in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The `routing` key in KV.
    Kv,
    /// The BLUE_MODEL / GREEN_MODEL / GREEN_PERCENT vars (no document in KV yet).
    Defaults,
}

#[derive(Clone)]
struct Cached {
    doc: Rc<RoutingDoc>,
    source: Source,
    fetched_at_ms: u64,
    problem: Option<String>,
}

thread_local! {
    static CACHE: RefCell<Option<Cached>> = const { RefCell::new(None) };
}

/// The routing document to use now.
pub async fn current(env: &Env, cfg: &Config) -> Rc<RoutingDoc> {
    refreshed(env, cfg).await.doc
}

async fn refreshed(env: &Env, cfg: &Config) -> Cached {
    let now = crate::proxy::now_ms();
    let stale = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        match c.as_mut() {
            Some(cached) if now.saturating_sub(cached.fetched_at_ms) < cfg.routing_cache_ms => {
                Err(cached.clone())
            }
            Some(cached) => {
                // Claim the refresh: requests arriving meanwhile keep the current document.
                cached.fetched_at_ms = now;
                Ok(Some(cached.clone()))
            }
            None => Ok(None),
        }
    });
    let previous = match stale {
        Err(fresh) => return fresh,
        Ok(previous) => previous,
    };

    let read = match env.kv("ROUTER_KV") {
        Ok(store) => store
            .get(ROUTING_KEY)
            .text()
            .await
            .map_err(|e| format!("reading KV key `{ROUTING_KEY}` failed: {e}")),
        Err(e) => Err(format!("the ROUTER_KV binding is missing: {e}")),
    };
    let last_good = || {
        previous
            .as_ref()
            .map(|p| (p.doc.clone(), p.source))
            .unwrap_or_else(|| (Rc::new(cfg.defaults.clone()), Source::Defaults))
    };
    let ((doc, source), problem) = match read {
        Ok(None) => ((Rc::new(cfg.defaults.clone()), Source::Defaults), None),
        Ok(Some(text)) => match RoutingDoc::parse(&text) {
            Ok(doc) => ((Rc::new(doc), Source::Kv), None),
            Err(e) => (
                last_good(),
                Some(format!("KV document `{ROUTING_KEY}` ignored: {e}")),
            ),
        },
        Err(problem) => (last_good(), Some(problem)),
    };

    let previous_problem = previous.as_ref().and_then(|p| p.problem.clone());
    if problem != previous_problem {
        match &problem {
            Some(p) => worker::console_error!(
                "routing: {p}; still serving version {} from {source:?}",
                doc.version
            ),
            None => worker::console_log!("routing: document ok again"),
        }
    }
    if previous.as_ref().is_none_or(|p| *p.doc != *doc) {
        worker::console_log!(
            "routing: {} ({source:?}) blue={} green={} green_percent={}",
            doc.version,
            doc.blue_model,
            doc.green_model,
            doc.green_percent
        );
    }
    let cached = Cached {
        doc,
        source,
        fetched_at_ms: now,
        problem,
    };
    CACHE.with(|c| *c.borrow_mut() = Some(cached.clone()));
    cached
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'a str,
    routing: &'a RoutingDoc,
    routing_source: Source,
    routing_problem: Option<&'a str>,
    routing_cache_seconds: f64,
    upstream: &'a str,
    auth: &'a str,
}

/// `GET /healthz`: the routing document in force, where it came from and any problem with the
/// one in KV. Never shows a secret.
pub async fn healthz(env: &Env) -> Result<Response, ApiError> {
    let cfg = settings::load(env)?;
    let state = refreshed(env, &cfg).await;
    let body = Health {
        status: if state.problem.is_some() {
            "degraded"
        } else {
            "ok"
        },
        routing: &state.doc,
        routing_source: state.source,
        routing_problem: state.problem.as_deref(),
        routing_cache_seconds: cfg.routing_cache_ms as f64 / 1000.0,
        upstream: &cfg.upstream_base,
        auth: match cfg.auth {
            bluegreen_core::auth::AuthMode::Passthrough => "passthrough",
            bluegreen_core::auth::AuthMode::RouterKeys { .. } => "router_keys",
        },
    };
    Response::from_json(&body).map_err(crate::error::internal)
}

/// Reads and validates the KV document now, bypassing the cache (for the cron handler).
pub async fn check_document(env: &Env) -> Result<String, String> {
    let store = env
        .kv("ROUTER_KV")
        .map_err(|e| format!("ROUTER_KV binding missing: {e}"))?;
    match store.get(ROUTING_KEY).text().await {
        Ok(None) => Ok("no routing document in KV; defaults in force".into()),
        Ok(Some(text)) => RoutingDoc::parse(&text)
            .map(|d| {
                format!(
                    "routing document version {} is valid ({}% green)",
                    d.version, d.green_percent
                )
            })
            .map_err(|e| format!("routing document is invalid and ignored: {e}")),
        Err(e) => Err(format!("reading the routing document failed: {e}")),
    }
}
