//! `GET /healthz`: the default route's routing document in force, where it came from and any
//! problem with the one in KV, the route registry's state, the upstream and the auth mode, the
//! default route's green breaker in this isolate and the stats it has not delivered yet. Never
//! a secret.

use bluegreen_core::request::auth::AuthMode;
use bluegreen_core::request::breaker::Snapshot;
use bluegreen_core::request::routing::RoutingDoc;
use bluegreen_core::request::routing_cache::Source;
use serde::Serialize;
use worker::{Env, Response};

use crate::error::Result;
use crate::{breaker, kv, per_route, routes, settings};

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
    /// Requests this isolate counted (every route) that its stats transport has not taken yet:
    /// what its eviction now would lose. Through a queue, 0 once `STATS_FLUSH_SECONDS` have passed
    /// since the last request.
    stats_undelivered_requests: u64,
}

/// `GET /healthz`: the default route's routing document in force, where it came from and any
/// problem with the one in KV, and the route registry's. Never shows a secret.
pub async fn healthz(env: &Env) -> Result<Response> {
    let cfg = settings::load(env)?;
    let table = routes::table(env, &cfg).await;
    let default = match table.doc.get(bluegreen_core::route::DEFAULT) {
        Some(route) => Some(kv::refreshed(env, &cfg, route).await),
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
        stats_undelivered_requests: per_route::undelivered_requests(),
    };
    Ok(Response::from_json(&body)?)
}
