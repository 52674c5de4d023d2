//! `/admin/*`: the operator's API. This side checks the admin token and reads which route and
//! verb a path names (`/admin/<verb>` acts on the default route, `/admin/routes/{name}/<verb>`
//! on route `name`); each route's controller (a Durable Object) runs the verb, and the route
//! registry keeps which routes exist.
//!
//! `ADMIN_TOKEN` acts on every route; a token of `ROUTE_ADMIN_TOKENS` on the routes it lists
//! only (403 `route_forbidden` on another; the routes' list shows it its own). Without either the
//! API is off (503, saying how to turn it on). A missing or wrong token is a 401; every token is
//! compared, in constant time ([`bluegreen_core::route::access`]).

use bluegreen_core::error::fields::MAX_ADMIN_BODY;
use bluegreen_core::error::ApiError;
use bluegreen_core::request::path::split_url;
use bluegreen_core::route::access::{admin_access, Access};
use bluegreen_core::route::name::{admin_target, AdminTarget};
use bluegreen_core::route::registry::RouteDef;
use bluegreen_core::util::json;
use serde::Serialize;
use worker::{Env, Method, Request, Response};

use crate::control::{self, REGISTRY_PATH};
use crate::error::{Error, Result};
use crate::http::{self, read_body};
use crate::runtime::now_ms;
use crate::settings;

/// Checks the token, then hands the request to the route's controller or the registry.
pub async fn handle(mut req: Request, env: &Env) -> Result<Response> {
    let cfg = settings::load(env)?;
    let access = match admin_access(
        cfg.admin_token.as_deref(),
        &cfg.route_admin_tokens,
        http::header(&req, "authorization").as_deref(),
    ) {
        Ok(access) => access,
        Err(refusal) => return Err(refusal.into()),
    };
    let url = req.inner().url();
    let (path, query) = split_url(&url);
    let rest = path.strip_prefix("/admin").unwrap_or(path);
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let method = req.method();
    let Some(target) = admin_target(rest) else {
        return Err(ApiError::not_found(path).into());
    };
    let route = match target {
        AdminTarget::Routes => None,
        AdminTarget::Route(route) | AdminTarget::Verb { route, .. } => Some(route),
    };
    if let Some(route) = route.filter(|r| !access.allows(r)) {
        return Err(ApiError::route_forbidden(route).into());
    }
    match (target, method) {
        (AdminTarget::Routes, Method::Get) => list(env, access).await,
        (AdminTarget::Route(name), Method::Put) => {
            let body = admin_body(&mut req).await?;
            put(env, name, &body).await
        }
        (AdminTarget::Route(name), Method::Get) => {
            control::call(env, name, Method::Get, "/admin/status", None).await
        }
        (AdminTarget::Route(name), Method::Delete) => delete(env, name).await,
        (AdminTarget::Verb { route, verb }, method) => {
            let body = admin_body(&mut req).await?;
            let target = match query {
                Some(q) => format!("/admin/{verb}?{q}"),
                None => format!("/admin/{verb}"),
            };
            let body = (!body.is_empty()).then_some(body.as_str());
            control::call(env, route, method, &target, body).await
        }
        (AdminTarget::Routes, other) => {
            Err(ApiError::method_not_allowed(other.as_ref(), path, "GET").into())
        }
        (AdminTarget::Route(_), other) => {
            Err(ApiError::method_not_allowed(other.as_ref(), path, "GET, PUT, DELETE").into())
        }
    }
}

/// An admin body, at most 64 KiB, as text (admin bodies are JSON).
async fn admin_body(req: &mut Request) -> Result<String> {
    let bytes = read_body(req, MAX_ADMIN_BODY).await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `PUT /admin/routes/{name}`: checks the definition, then hands it to the registry, which
/// defines the route at its controller and then lists it.
async fn put(env: &Env, name: &str, body: &str) -> Result<Response> {
    let value = bluegreen_core::error::fields::parse_body(body.as_bytes())?;
    let def = RouteDef::from_json(name, &value, now_ms() / 1000)?;
    let json = serde_json::to_string(&def).map_err(|e| ApiError::internal(&e.to_string()))?;
    let path = format!("{REGISTRY_PATH}/{name}");
    control::call_registry(env, Method::Put, &path, Some(&json)).await
}

/// `DELETE /admin/routes/{name}`: the registry deletes the route at its controller (refused
/// while its rollout runs), then from its list.
async fn delete(env: &Env, name: &str) -> Result<Response> {
    let path = format!("{REGISTRY_PATH}/{name}");
    control::call_registry(env, Method::Delete, &path, None).await
}

/// One route in `GET /admin/routes`: its definition and its controller's status (or why it
/// could not be read: one unhealthy controller leaves the list whole).
/// Fields in alphabetical order, as the list wrote them when it went through a `Value`.
#[derive(Serialize)]
struct Listed {
    definition: RouteDef,
    /// `chat` or `embeddings` (the definition leaves a chat route's out, as it is stored).
    kind: &'static str,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<serde_json::Value>,
}

/// `GET /admin/routes`: every route (that `access` may see) with its phase, split, verdict and last event, from the
/// registry and each controller (a few at a time).
async fn list(env: &Env, access: Access<'_>) -> Result<Response> {
    let cfg = settings::load(env)?;
    let registry = control::registry(env).await?;
    let mut defs = registry.definitions(&cfg.defaults);
    // A team's token sees its own routes.
    defs.retain(|d| access.allows(&d.name));
    let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    let statuses = control::each_route(
        env,
        &names,
        Method::Get,
        "/admin/status",
        control::READ_TIMEOUT_MS,
    )
    .await;
    let routes: Vec<Listed> = defs
        .iter()
        .zip(statuses)
        .map(|(def, status)| {
            let status = status.and_then(|text| {
                json::parse::<serde_json::Value>(&text)
                    .map_err(|e| Error::runtime("a route's status", e))
            });
            Listed {
                name: def.name.clone(),
                kind: def.kind.name(),
                definition: def.clone(),
                problem: status.as_ref().err().map(ToString::to_string),
                status: status.ok(),
            }
        })
        .collect();
    let listing = Listing {
        default_route: registry.has_default(),
        registry_version: registry.version,
        routes,
    };
    Ok(http::json(200, &listing)?)
}

/// The body of `GET /admin/routes`. Written straight to text (not through a
/// `serde_json::Value`, whose serializer would be a second copy of every listed type's
/// `Serialize` in the wasm); fields in the order a `Value` wrote them, alphabetical.
#[derive(Serialize)]
struct Listing {
    default_route: bool,
    registry_version: u64,
    routes: Vec<Listed>,
}
