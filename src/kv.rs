//! Each route's routing document as this isolate sees it, and the one place that reads one
//! from KV.
//!
//! Whether the cached document is fresh, which request refreshes it, which read's result
//! stands and what stays in force when a read fails or finds an invalid document, the core's
//! [`RoutingCache`] decides: the document is read at most once per `ROUTING_CACHE_SECONDS`
//! and replaced only by a valid one, and a problem is reported by `GET /healthz`. This module
//! keeps the cache for the isolate, reads KV when the cache says so, and logs what changed (a
//! problem once, not on every refresh).

use std::fmt;
use std::rc::Rc;

use bluegreen_core::config::Config;
use bluegreen_core::request::auth::AuthMode;
use bluegreen_core::request::breaker::Snapshot;
use bluegreen_core::request::routing::{RoutingDoc, RoutingError};
use bluegreen_core::request::routing_cache::{InForce, Landed, Poll, RoutingCache, Source};
use bluegreen_core::route::name::routing_key;
use bluegreen_core::route::registry::Route;
use serde::Serialize;
use worker::{Env, Response};

use crate::error::{Error, Result};
use crate::runtime::now_ms;
use crate::{breaker, control, per_route, routes, settings};

/// Runs `f` on `route`'s cache, made on first use.
fn with_cache<T>(route: &str, f: impl FnOnce(&mut RoutingCache) -> T) -> T {
    per_route::with(route, |s| f(&mut s.cache))
}

/// `route`'s routing document to use now.
pub async fn current(env: &Env, cfg: &Config, route: &Route) -> Rc<RoutingDoc> {
    refreshed(env, cfg, route).await.doc
}

/// `route`'s document in force, after reading KV when the cache says this request must.
async fn refreshed(env: &Env, cfg: &Config, route: &Route) -> InForce {
    let name = route.def.name.as_str();
    let ticket = match with_cache(name, |c| c.poll(now_ms(), cfg.routing_cache_ms)) {
        Poll::Use(in_force) => return in_force,
        Poll::Refresh(ticket) => ticket,
    };
    let read = read_document(env, name).await;
    let landed = match read {
        // The definition is all this isolate has, and after a promotion it names the demoted
        // model: the controller's split is better.
        Err(problem) if with_cache(name, |c| c.wants_controller()) => {
            match control::routing(env, name).await {
                Ok(Some(doc)) => with_cache(name, |c| {
                    c.land_from_controller(ticket, problem, doc, now_ms())
                }),
                other => {
                    if let Err(e) = other {
                        worker::console_error!("routing {name}: asking the controller failed: {e}");
                    }
                    let read = Err::<Option<RoutingDoc>, _>(problem);
                    with_cache(name, |c| c.land(ticket, read, now_ms(), &route.defaults))
                }
            }
        }
        read => with_cache(name, |c| c.land(ticket, read, now_ms(), &route.defaults)),
    };
    log_landed(name, &landed);
    landed.in_force
}

/// Logs what a read changed: a new or cleared problem, and a new split.
fn log_landed(route: &str, landed: &Landed) {
    let InForce {
        doc,
        source,
        problem,
    } = &landed.in_force;
    if landed.problem_changed {
        match problem {
            Some(p) => worker::console_error!(
                "routing {route}: {p}; still serving version {} from {source:?}",
                doc.version
            ),
            None => worker::console_log!("routing {route}: document ok"),
        }
    }
    if landed.doc_changed {
        worker::console_log!(
            "routing {route}: version {} ({source:?}) blue={} green={} green_percent={}",
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
    /// KV did not answer the read of the key.
    Read(String, worker::KvError),
    /// The stored text under the key is not a valid document.
    Invalid(String, String),
}

impl fmt::Display for DocProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocProblem::Binding(e) => write!(f, "the ROUTER_KV binding is missing: {e}"),
            DocProblem::Read(key, e) => write!(f, "reading KV key `{key}` failed: {e}"),
            DocProblem::Invalid(key, e) => write!(f, "KV document `{key}` ignored: {e}"),
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

/// The text under `key`: `Ok(None)` when the key is absent.
pub async fn read_text(env: &Env, key: &str) -> Result<Option<String>, DocProblem> {
    store(env)?
        .get(key)
        .text()
        .await
        .map_err(|e| DocProblem::Read(key.to_string(), e))
}

/// `route`'s validated document in KV: `Ok(None)` when the key is absent, `Err` with the
/// reason when it cannot be read or is invalid.
pub async fn read_document(env: &Env, route: &str) -> Result<Option<RoutingDoc>, DocProblem> {
    let key = routing_key(route);
    let text = read_text(env, &key).await?;
    text.map(|t| RoutingDoc::parse(&t))
        .transpose()
        .map_err(|e: RoutingError| DocProblem::Invalid(key.to_string(), e.to_string()))
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'a str,
    /// The default route's split; `null` when the deployment has no default route.
    routing: Option<&'a RoutingDoc>,
    routing_source: Option<Source>,
    routing_problem: Option<&'a str>,
    /// How many routes this isolate knows, and the registry version they come from.
    routes: usize,
    routes_version: u64,
    /// Why the route registry in KV is not in force, when it is not.
    routes_problem: Option<&'a str>,
    routing_cache_seconds: f64,
    upstream: String,
    auth: &'a str,
    /// This isolate's green breaker; `null` while `GREEN_EJECTION` is off.
    green_breaker: Option<Snapshot>,
}

/// `GET /healthz`: the default route's routing document in force, where it came from and any
/// problem with the one in KV, and the route registry's. Never shows a secret.
pub async fn healthz(env: &Env) -> Result<Response> {
    let cfg = settings::load(env)?;
    let table = routes::table(env, &cfg).await;
    let default = match table.doc.get(bluegreen_core::route::DEFAULT) {
        Some(route) => Some(refreshed(env, &cfg, route).await),
        None => None,
    };
    let problem = default.as_ref().and_then(|s| s.problem.as_deref());
    let body = Health {
        status: if problem.is_some() || table.problem.is_some() {
            "degraded"
        } else {
            "ok"
        },
        routing: default.as_ref().map(|s| &*s.doc),
        routing_source: default.as_ref().map(|s| s.source),
        routing_problem: problem,
        routes: table.doc.len(),
        routes_version: table.doc.version(),
        routes_problem: table.problem.as_deref(),
        routing_cache_seconds: cfg.routing_cache_ms as f64 / 1000.0,
        upstream: cfg.upstream_display(),
        auth: match cfg.auth {
            AuthMode::Passthrough => "passthrough",
            AuthMode::RouterKeys { .. } => "router_keys",
        },
        green_breaker: breaker::snapshot(&cfg.green_ejection, bluegreen_core::route::DEFAULT),
    };
    Ok(Response::from_json(&body)?)
}

/// Reads and validates `route`'s KV document now, bypassing the cache (for a tick's summary,
/// so that a broken document shows in the cron's log within a minute without traffic).
pub async fn check_document(env: &Env, route: &str) -> Result<String, DocProblem> {
    Ok(match read_document(env, route).await? {
        None => "no routing document in KV; the route's definition in force".into(),
        Some(d) => format!(
            "routing document version {} is valid ({}% green)",
            d.version, d.green_percent
        ),
    })
}
