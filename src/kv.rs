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
use bluegreen_core::request::routing::{RoutingDoc, RoutingError};
use bluegreen_core::request::routing_cache::{InForce, Landed, Poll, RoutingCache};
use bluegreen_core::route::name::routing_key;
use bluegreen_core::route::registry::Route;
use worker::Env;

use crate::error::{Error, Result};
use crate::runtime::now_ms;
use crate::{control, per_route};

/// Runs `f` on `route`'s cache, made on first use.
fn with_cache<T>(route: &str, f: impl FnOnce(&mut RoutingCache) -> T) -> T {
    per_route::with(route, |s| f(&mut s.cache))
}

/// `route`'s routing document to use now.
pub async fn current(env: &Env, cfg: &Config, route: &Route) -> Rc<RoutingDoc> {
    refreshed(env, cfg, route).await.doc
}

/// `route`'s document in force, after reading KV when the cache says this request must.
pub async fn refreshed(env: &Env, cfg: &Config, route: &Route) -> InForce {
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
