//! The Worker's client of the Durable Objects: each route's rollout controller (instance
//! `global` for the default route, `route:<name>` for the others) and the route registry. The
//! controllers' own code lives in `controller/`, the registry's in `registry.rs`; this leaf
//! only addresses them, so that callers never depend on a Durable Object's implementation.
//!
//! Every call to a controller says which route it is for (`x-bluegreen-route`): the controller
//! checks that the name leads to itself, and names its events, alerts and metrics after it.

use bluegreen_core::request::routing::RoutingDoc;
use bluegreen_core::route::name::instance_name;
use bluegreen_core::route::registry::Registry;
use futures_util::stream::{self, StreamExt};
use wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{web_sys, Env, Method, Response};

use crate::error::{Error, Result};
use crate::{js, retry};

/// Where isolates post their stats batches.
pub const STATS_PATH: &str = "/internal/stats";
/// Where the cron handler asks for a tick.
pub const TICK_PATH: &str = "/internal/tick";
/// Where an isolate that cannot read KV asks for the split in force.
pub const ROUTING_PATH: &str = "/internal/routing";
/// Where an isolate hands over a verified feedback score.
pub const FEEDBACK_PATH: &str = "/internal/feedback";
/// Where the admin API defines (PUT) or deletes (DELETE) a route at its controller.
pub const ROUTE_PATH: &str = "/internal/route";
/// The registry's document (GET), and one route in it (`/internal/registry/<name>`, PUT and
/// DELETE).
pub const REGISTRY_PATH: &str = "/internal/registry";
/// The header naming the route a controller call is for.
pub const ROUTE_HEADER: &str = "x-bluegreen-route";

/// How many Durable Objects one invocation asks at once (the cron's ticks, a scrape, the
/// routes' list): the runtime's simultaneous outgoing connections per invocation.
pub const FAN_OUT: usize = 6;

/// How long the cron waits for one controller's tick before it reports that route's tick
/// failed and frees the slot for the next route. A tick answers in tens of milliseconds, but
/// one that changes the split writes it to KV before it answers, and when KV refuses, its
/// retries wait 5.1 s between attempts (`Schedule::KV_WRITE`); 10 s lets that finish, and is
/// a small part of the minute between two crons.
pub const TICK_TIMEOUT_MS: u64 = 10_000;

/// How long a scrape or the routes' list waits for one controller: each renders from memory
/// in milliseconds, so 4 s is a controller in trouble. A scrape with stalled controllers (up to
/// [`FAN_OUT`] of them) then still answers within Prometheus's default 10 s scrape timeout,
/// with every other route's samples, rather than losing the whole scrape.
pub const READ_TIMEOUT_MS: u64 = 4_000;

/// The registry's instance name (one registry a deployment).
const REGISTRY_INSTANCE: &str = "registry";

/// Calls the Durable Object instance `instance` of the namespace bound as `binding`, at `path`,
/// for `route` (the call's one header). A stub fetch needs a full URL; the host is never
/// resolved. Made in JavaScript ([`crate::js::call_object`]): the runtime's `RequestInit` seen
/// from Rust carries every option a request can have, about 13 KB of wasm for one header.
async fn call_object(
    env: &Env,
    binding: &str,
    instance: &str,
    route: &str,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> Result<Response> {
    let url = format!("https://controller{path}");
    let promise = js::call_object(
        env.as_ref(),
        binding,
        instance,
        &url,
        method.as_ref(),
        route,
        body,
    )?;
    let answer = JsFuture::from(promise).await?;
    Ok(Response::from(answer.unchecked_into::<web_sys::Response>()))
}

/// Calls `route`'s controller.
pub async fn call(
    env: &Env,
    route: &str,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> Result<Response> {
    call_object(
        env,
        "ROLLOUT",
        &instance_name(route),
        route,
        method,
        path,
        body,
    )
    .await
}

/// Calls the registry.
pub async fn call_registry(
    env: &Env,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> Result<Response> {
    call_object(
        env,
        "ROUTE_REGISTRY",
        REGISTRY_INSTANCE,
        "",
        method,
        path,
        body,
    )
    .await
}

/// The registry as its Durable Object holds it (which also writes itself to KV again when its
/// last write failed): the cron's list of routes, and the admin API's.
pub async fn registry(env: &Env) -> Result<Registry> {
    let mut resp = call_registry(env, Method::Get, REGISTRY_PATH, None).await?;
    let text = resp.text().await?;
    if resp.status_code() != 200 {
        return Err(Error::Runtime(format!(
            "the registry answered {}: {text}",
            resp.status_code()
        )));
    }
    Registry::parse(&text).map_err(Error::Runtime)
}

/// `route`'s controller's answer to a body-less call at `path`: its text when it answered
/// 200, else why not.
async fn answer(env: &Env, route: &str, method: Method, path: &str) -> Result<String> {
    let mut resp = call(env, route, method, path, None).await?;
    let text = resp.text().await?;
    match resp.status_code() {
        200 => Ok(text),
        s => Err(Error::Runtime(format!(
            "the controller answered {s}: {text}"
        ))),
    }
}

/// Every route's controller's answer at `path` (the cron's ticks, a scrape, the routes' list),
/// in the order of `routes`: one route failing, or not answering within `timeout_ms`, fails
/// only its own entry. [`FAN_OUT`] calls run at a time, and each call that ends starts the
/// next, so a slow controller holds one of the slots, not the routes after it.
pub async fn each_route(
    env: &Env,
    routes: &[&str],
    method: Method,
    path: &str,
    timeout_ms: u64,
) -> Vec<Result<String>> {
    let calls = routes.iter().enumerate().map(|(i, route)| {
        let call = answer(env, route, method.clone(), path);
        async move { (i, retry::within(timeout_ms, call).await) }
    });
    let answers: Vec<(usize, Result<String>)> = stream::iter(calls)
        .buffer_unordered(FAN_OUT)
        .collect()
        .await;
    // Back in the order of `routes`: each index comes once (no sort, whose code is 2.5 KB of
    // wasm for this one type).
    let mut out: Vec<Option<Result<String>>> = routes.iter().map(|_| None).collect();
    for (i, answer) in answers {
        out[i] = Some(answer);
    }
    out.into_iter().flatten().collect()
}

/// `route`'s split at its controller, for an isolate that cannot read KV: `None` when the
/// controller has none of its own yet (before its first rollout, the definition is right).
pub async fn routing(env: &Env, route: &str) -> Result<Option<RoutingDoc>> {
    let mut resp = call(env, route, Method::Get, ROUTING_PATH, None).await?;
    match resp.status_code() {
        200 => {
            let text = resp.text().await?;
            let doc = RoutingDoc::parse(&text)
                .map_err(|e| Error::Runtime(format!("the controller's split: {e}")))?;
            Ok(Some(doc))
        }
        404 => Ok(None),
        s => Err(Error::Runtime(format!("the controller answered {s}"))),
    }
}

/// Hands a verified score (its JSON) to `route`'s controller; its answer goes to the client as
/// it is (200 counted, 409 already scored).
pub async fn post_feedback(env: &Env, route: &str, json: &str) -> Result<Response> {
    call(env, route, Method::Post, FEEDBACK_PATH, Some(json)).await
}

/// What became of a stats batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// The controller took it (or knew it already).
    Taken,
    /// The route no longer exists: nobody will ever take it.
    RouteGone,
    /// A merged batch of which the controller counted these parts before: it counted nothing.
    Seen(Vec<String>),
}

/// Posts one stats batch (its JSON) to `route`'s controller.
pub async fn post_stats(env: &Env, route: &str, json: &str) -> Result<Delivered> {
    let resp = call(env, route, Method::Post, STATS_PATH, Some(json)).await?;
    match resp.status_code() {
        200..=299 => Ok(Delivered::Taken),
        410 => Ok(Delivered::RouteGone),
        409 => {
            #[derive(serde::Deserialize)]
            struct Seen {
                seen: Vec<String>,
            }
            let mut resp = resp;
            let text = resp.text().await?;
            let seen: Seen = bluegreen_core::util::json::parse(&text)
                .map_err(|e| Error::runtime("the controller's answer", e))?;
            Ok(Delivered::Seen(seen.seen))
        }
        s => Err(Error::Runtime(format!("the controller answered {s}"))),
    }
}
