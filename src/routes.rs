//! The routes as this isolate sees them: the route registry read from KV (key `routes`),
//! cached like a routing document, as a table found in one hash lookup. Which route a
//! request's `model` goes to is the core's call ([`RouteTable::resolve`]); this module reads KV
//! when the cache says so and answers `GET /v1/models`, which lists the routes.
//!
//! A deployment that never created a route has no registry in KV: its table holds the default
//! route alone, made from the vars, as before routes.

use std::cell::RefCell;

use bluegreen_core::config::Config;
use bluegreen_core::error::ApiError;
use bluegreen_core::request::auth::AuthMode;
use bluegreen_core::request::routing_cache::{InForce, Poll, RoutingCache};
use bluegreen_core::route::registry::{Registry, RouteTable, REGISTRY_KEY};
use serde::Serialize;
use worker::{Env, Method, Request, Response};

use crate::error::Result;
use crate::kv::{self, DocProblem};
use crate::proxy::headers;
use crate::runtime::now_ms;
use crate::upstream::{self, Failure};
use crate::{http, per_route};

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

/// A model object of `GET /v1/models`: one route.
#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'a str,
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<Model<'a>>,
}

fn model<'a>(table: &'a RouteTable, name: &'a str, owner: &'a str) -> Option<Model<'a>> {
    table.get(name).map(|route| Model {
        id: &route.def.name,
        object: "model",
        created: route.def.created,
        owned_by: owner,
    })
}

/// `GET /v1/models` (`id` `None`) and `GET /v1/models/{id}`: the routes, in OpenAI's shape,
/// to a client the router would serve. A name no route has is OpenAI's `404 model_not_found`.
pub async fn models(req: &Request, env: &Env, cfg: &Config, id: Option<&str>) -> Result<Response> {
    authenticate(req, cfg).await?;
    let table = table(env, cfg).await.doc;
    let owner = cfg.deployment_name.as_str();
    let body = match id {
        None => serde_json::to_string(&ModelList {
            object: "list",
            data: table
                .sorted()
                .iter()
                .filter_map(|r| model(&table, &r.def.name, owner))
                .collect(),
        }),
        Some(id) => match model(&table, id, owner) {
            Some(m) => serde_json::to_string(&m),
            None => return Err(ApiError::model_not_found(id).into()),
        },
    };
    let text = body.map_err(|e| ApiError::internal(&e.to_string()))?;
    Ok(http::json_text(200, text, &[]))
}

/// Lets a client that the router would serve see its routes: with router keys, one of them;
/// in pass-through mode, a key the upstream takes (it is asked for its own model list, which
/// is thrown away; its refusal is the client's).
async fn authenticate(req: &Request, cfg: &Config) -> Result<()> {
    let authorization = headers::authorize(req, cfg)?;
    if matches!(cfg.auth, AuthMode::RouterKeys { .. }) {
        return Ok(());
    }
    let sent = headers::upstream(req, &cfg.auth, authorization.as_deref())?;
    let timeout_ms = cfg.first_byte_timeout_ms;
    match upstream::send(
        &cfg.upstream_url("/models"),
        Method::Get,
        &sent,
        None,
        timeout_ms,
    )
    .await
    {
        Ok(resp) if (200..300).contains(&resp.status_code()) => Ok(()),
        Ok(resp) => Err(ApiError::upstream_refused_key(resp.status_code()).into()),
        Err(Failure::Timeout) => Err(ApiError::upstream_timeout("(models)", timeout_ms).into()),
        Err(Failure::Connect(e)) => {
            Err(ApiError::upstream_unreachable("(models)", &cfg.scrub_upstream(&e)).into())
        }
    }
}
