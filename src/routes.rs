//! The routes as this isolate sees them: the route registry read from KV (key `routes`),
//! cached like a routing document, as a table found in one hash lookup. Which route a
//! request's `model` goes to is the core's call ([`RouteTable::resolve`]); this module reads KV
//! when the cache says so (`GET /v1/models`, which lists the routes, is `crate::models`).
//!
//! A deployment that never created a route has no registry in KV: its table holds the default
//! route alone, made from the vars, as before routes.

use std::cell::RefCell;

use bluegreen_core::config::Config;
use bluegreen_core::request::routing_cache::{InForce, Poll, RoutingCache};
use bluegreen_core::route::registry::{Registry, RouteTable, REGISTRY_KEY};
use worker::Env;

use crate::error::Result;
use crate::kv::{self, DocProblem};
use crate::per_route;
use crate::runtime::now_ms;

thread_local! {
    static TABLE: RefCell<RoutingCache<RouteTable>> = RefCell::new(RoutingCache::default());
}

/// The route table in force, after reading KV when the cache says this request must. A read
/// that fails keeps the last good table (on a cold isolate, the default route alone) and
/// reports the problem in `/healthz`.
pub async fn table(env: &Env, cfg: &Config) -> InForce<RouteTable> {
    let ticket = match TABLE.with(|t| t.borrow_mut().poll(now_ms(), cfg.routing_cache_ms)) {
        Poll::Use(in_force) => return in_force,
        Poll::Refresh(ticket) => ticket,
    };
    let read = read_table(env, cfg).await;
    let none = RouteTable::new(&Registry::default(), &cfg.defaults);
    let landed = TABLE.with(|t| t.borrow_mut().land(ticket, read, now_ms(), &none));
    if landed.problem_changed {
        match &landed.in_force.problem {
            Some(p) => worker::console_error!(
                "routes: {p}; still serving registry version {}",
                landed.in_force.doc.version()
            ),
            None => worker::console_log!("routes: registry ok"),
        }
    }
    if landed.doc_changed {
        worker::console_log!(
            "routes: registry version {}, {} routes",
            landed.in_force.doc.version(),
            landed.in_force.doc.len()
        );
        let table = &landed.in_force.doc;
        per_route::retain(|route| table.get(route).is_some());
    }
    landed.in_force
}

/// The registry in KV as a table: `Ok(None)` when there is none.
async fn read_table(env: &Env, cfg: &Config) -> Result<Option<RouteTable>, DocProblem> {
    let Some(text) = kv::read_text(env, REGISTRY_KEY).await? else {
        return Ok(None);
    };
    let registry =
        Registry::parse(&text).map_err(|e| DocProblem::Invalid(REGISTRY_KEY.to_string(), e))?;
    Ok(Some(RouteTable::new(&registry, &cfg.defaults)))
}
