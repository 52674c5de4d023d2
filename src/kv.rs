//! The routing document as this isolate sees it, and the one place that reads it from KV.
//!
//! Whether the cached document is fresh, which request refreshes it, which read's result
//! stands and what stays in force when a read fails or finds an invalid document, the core's
//! [`RoutingCache`] decides: the document is read at most once per `ROUTING_CACHE_SECONDS`
//! and replaced only by a valid one, and a problem is reported by `GET /healthz`. This module
//! keeps the cache for the isolate, reads KV when the cache says so, and logs what changed (a
//! problem once, not on every refresh).

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use bluegreen_core::config::Config;
use bluegreen_core::request::auth::AuthMode;
use bluegreen_core::request::breaker::Snapshot;
use bluegreen_core::request::routing::{RoutingDoc, RoutingError, ROUTING_KEY};
use bluegreen_core::request::routing_cache::{InForce, Landed, Poll, RoutingCache, Source};
use serde::Serialize;
use worker::{Env, Response};

use crate::error::{Error, Result};
use crate::runtime::now_ms;
use crate::{breaker, control, settings};

thread_local! {
    static CACHE: RefCell<RoutingCache> = RefCell::new(RoutingCache::default());
}

/// The routing document to use now.
pub async fn current(env: &Env, cfg: &Config) -> Rc<RoutingDoc> {
    refreshed(env, cfg).await.doc
}

/// The document in force, after reading KV when the cache says this request must.
async fn refreshed(env: &Env, cfg: &Config) -> InForce {
    let ticket = match CACHE.with(|c| c.borrow_mut().poll(now_ms(), cfg.routing_cache_ms)) {
        Poll::Use(in_force) => return in_force,
        Poll::Refresh(ticket) => ticket,
    };
    let read = read_document(env).await;
    let landed = match read {
        // The vars are all this isolate has, and after a promotion they name the demoted
        // model: the controller's split is better.
        Err(problem) if CACHE.with(|c| c.borrow().wants_controller()) => {
            match control::routing(env).await {
                Ok(Some(doc)) => CACHE.with(|c| {
                    c.borrow_mut()
                        .land_from_controller(ticket, problem, doc, now_ms())
                }),
                other => {
                    if let Err(e) = other {
                        worker::console_error!("routing: asking the controller failed: {e}");
                    }
                    let read = Err::<Option<RoutingDoc>, _>(problem);
                    CACHE.with(|c| c.borrow_mut().land(ticket, read, now_ms(), &cfg.defaults))
                }
            }
        }
        read => CACHE.with(|c| c.borrow_mut().land(ticket, read, now_ms(), &cfg.defaults)),
    };
    log_landed(&landed);
    landed.in_force
}

/// Logs what a read changed: a new or cleared problem, and a new split.
fn log_landed(landed: &Landed) {
    let InForce {
        doc,
        source,
        problem,
    } = &landed.in_force;
    if landed.problem_changed {
        match problem {
            Some(p) => worker::console_error!(
                "routing: {p}; still serving version {} from {source:?}",
                doc.version
            ),
            None => worker::console_log!("routing: document ok"),
        }
    }
    if landed.doc_changed {
        worker::console_log!(
            "routing: version {} ({source:?}) blue={} green={} green_percent={}",
            doc.version,
            doc.blue_model,
            doc.green_model,
            doc.green_percent
        );
    }
}

/// Why the document in KV is not in force.
#[derive(Debug)]
pub enum DocProblem {
    /// The `ROUTER_KV` binding is missing from the deployment.
    Binding(worker::Error),
    /// KV did not answer the read.
    Read(worker::KvError),
    /// The stored text is not a valid routing document.
    Invalid(RoutingError),
}

impl fmt::Display for DocProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocProblem::Binding(e) => write!(f, "the ROUTER_KV binding is missing: {e}"),
            DocProblem::Read(e) => write!(f, "reading KV key `{ROUTING_KEY}` failed: {e}"),
            DocProblem::Invalid(e) => write!(f, "KV document `{ROUTING_KEY}` ignored: {e}"),
        }
    }
}

impl From<DocProblem> for Error {
    /// KV trouble where a caller (the controller's writer) must fail: a 500 with the reason.
    fn from(e: DocProblem) -> Error {
        Error::Runtime(e.to_string())
    }
}

/// The routing namespace.
pub fn store(env: &Env) -> Result<worker::kv::KvStore, DocProblem> {
    env.kv("ROUTER_KV").map_err(DocProblem::Binding)
}

/// The validated document in KV: `Ok(None)` when the key is absent, `Err` with the reason when
/// it cannot be read or is invalid.
pub async fn read_document(env: &Env) -> Result<Option<RoutingDoc>, DocProblem> {
    let text = store(env)?
        .get(ROUTING_KEY)
        .text()
        .await
        .map_err(DocProblem::Read)?;
    text.map(|t| RoutingDoc::parse(&t))
        .transpose()
        .map_err(DocProblem::Invalid)
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'a str,
    routing: &'a RoutingDoc,
    routing_source: Source,
    routing_problem: Option<&'a str>,
    routing_cache_seconds: f64,
    upstream: String,
    auth: &'a str,
    /// This isolate's green breaker; `null` while `GREEN_EJECTION` is off.
    green_breaker: Option<Snapshot>,
}

/// `GET /healthz`: the routing document in force, where it came from and any problem with the
/// one in KV. Never shows a secret.
pub async fn healthz(env: &Env) -> Result<Response> {
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
        upstream: cfg.upstream_display(),
        auth: match cfg.auth {
            AuthMode::Passthrough => "passthrough",
            AuthMode::RouterKeys { .. } => "router_keys",
        },
        green_breaker: breaker::snapshot(&cfg.green_ejection),
    };
    Ok(Response::from_json(&body)?)
}

/// Reads and validates the KV document now, bypassing the cache (for the cron handler).
pub async fn check_document(env: &Env) -> Result<String, DocProblem> {
    Ok(match read_document(env).await? {
        None => "no routing document in KV; defaults in force".into(),
        Some(d) => format!(
            "routing document version {} is valid ({}% green)",
            d.version, d.green_percent
        ),
    })
}
