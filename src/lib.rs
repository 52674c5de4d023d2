//! bluegreen-router's wasm shell: the Worker's entry points.
//!
//! Routes are matched here and handed to the modules that do the work. Every decision is made
//! by `bluegreen-core`; this crate reads the request, the clock, KV and the network, and
//! performs what the core decides.

mod admin;
mod breaker;
mod control;
mod controller;
mod dashboard;
mod error;
mod feedback;
mod health;
mod http;
mod js;
mod kv;
mod kv_writer;
mod metrics;
mod models;
mod per_route;
mod proxy;
mod recorder;
mod registry;
mod retry;
mod routes;
mod runtime;
mod settings;
mod stats_queue;
mod upstream;

use bluegreen_core::api::responses::StoredCall;
use bluegreen_core::api::Api;
use bluegreen_core::error::ApiError;
use bluegreen_core::request::path;
use worker::{
    event, Context, Env, MessageBatch, Method, Request, Response, ScheduleContext, ScheduledEvent,
};

use crate::error::Result;
use crate::runtime::Tag;

pub use controller::RolloutController;

/// The fetch handler: every HTTP request to the Worker.
#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let tag = Tag::new();
    let inbound = Clone::clone(req.inner()); // the same JS object, not a body-teeing `Request.clone()`
    let result = route(req, &env, &tag, &ctx).await;
    Ok(match result {
        Ok(response) => response,
        Err(e) => {
            // Every refusal in one place: a small unread body is read first.
            http::drain(&inbound).await;
            e.respond(&tag.id)
        }
    })
}

async fn route(req: Request, env: &Env, tag: &Tag, ctx: &Context) -> Result<Response> {
    // The path as the client sent it (a parsed `Url` would have resolved `%2e%2e` segments and
    // backslashes already): refused when a server could read it as another, then routed and
    // forwarded as it is.
    let url = req.inner().url();
    let (path, query) = path::split_url(&url);
    if let Err(e) = path::check(path) {
        return Err(ApiError::invalid_path(path, &e.to_string()).into());
    }
    let method = req.method();
    // `/v1/chat/completions/` is the same route as `/v1/chat/completions`.
    let route = match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => path,
    };
    match route {
        "/healthz" => match method {
            Method::Get | Method::Head => health::healthz(env).await,
            _ => Err(ApiError::method_not_allowed(method.as_ref(), path, "GET").into()),
        },
        "/v1/chat/completions" | "/v1/responses" => match method {
            Method::Post => {
                let cfg = settings::load(env)?;
                let api = match route {
                    "/v1/responses" => Api::Responses,
                    _ => Api::Chat,
                };
                proxy::routed(api, req, env, &cfg, tag, ctx).await
            }
            _ => Err(ApiError::method_not_allowed(method.as_ref(), path, "POST").into()),
        },
        "/v1/embeddings" if method == Method::Post => {
            let cfg = settings::load(env)?;
            proxy::embeddings(req, env, &cfg, tag, ctx, path, query).await
        }
        "/v1/feedback" => match method {
            Method::Post => {
                let cfg = settings::load(env)?;
                feedback::score(req, env, &cfg, ctx).await
            }
            _ => Err(ApiError::method_not_allowed(method.as_ref(), path, "POST").into()),
        },
        p if p == "/v1/models" || p.starts_with("/v1/models/") => match method {
            Method::Get => {
                let cfg = settings::load(env)?;
                models::models(&req, env, &cfg, p.strip_prefix("/v1/models/")).await
            }
            _ => Err(ApiError::method_not_allowed(method.as_ref(), path, "GET").into()),
        },
        "/dashboard" => match method {
            Method::Get | Method::Head => dashboard::page(env).await,
            _ => Err(ApiError::method_not_allowed(method.as_ref(), path, "GET").into()),
        },
        "/metrics" => match method {
            Method::Get => metrics::handle(req, env).await,
            _ => Err(ApiError::method_not_allowed(method.as_ref(), path, "GET").into()),
        },
        p if p == "/admin" || p.starts_with("/admin/") => admin::handle(req, env).await,
        // A stored response the router issued; any other call there is the pass-through's.
        p if p.starts_with("/v1/responses/") => {
            let cfg = settings::load(env)?;
            match StoredCall::of(method.as_ref(), p) {
                Some(call) => proxy::stored(req, call, &cfg, &tag.id, query).await,
                None => proxy::pass_through(req, None, &cfg, &tag.id, path, query).await,
            }
        }
        p if p == "/v1" || p.starts_with("/v1/") => {
            let cfg = settings::load(env)?;
            proxy::pass_through(req, None, &cfg, &tag.id, path, query).await
        }
        _ => Err(ApiError::not_found(path).into()),
    }
}

/// The cron handler: asks every route's controller to tick (judge, advance, roll back; each
/// also reads its routing document, so that a broken one shows in the logs within a minute even
/// when no traffic arrives), a few at a time, and logs one line per route. One route's
/// controller failing leaves the others' ticks alone.
#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let cron = event.cron();
    let names = match (control::registry(&env).await, settings::load(&env)) {
        (Ok(registry), Ok(cfg)) => registry
            .definitions(&cfg.defaults)
            .into_iter()
            .map(|d| d.name)
            .collect(),
        (Err(problem), _) | (_, Err(problem)) => {
            worker::console_error!(
                "cron {cron}: the route registry failed ({problem}); ticking the default route"
            );
            vec![bluegreen_core::route::DEFAULT.to_string()]
        }
    };
    let routes: Vec<&str> = names.iter().map(String::as_str).collect();
    let ticks = control::each_route(
        &env,
        &routes,
        Method::Post,
        control::TICK_PATH,
        control::TICK_TIMEOUT_MS,
    )
    .await;
    for (route, result) in routes.iter().zip(ticks) {
        match result {
            Ok(summary) => worker::console_log!("cron {cron}: route {route}: tick {summary}"),
            Err(problem) => {
                worker::console_error!("cron {cron}: route {route}: tick failed: {problem}")
            }
        }
    }
}

/// The stats queue's consumer (with a `STATS_QUEUE` binding): merges a delivery's batches per
/// route and posts each route's to its controller ([`stats_queue`]). Every message is
/// acknowledged or retried one by one, so the handler itself never fails.
#[event(queue)]
async fn queue(
    delivery: MessageBatch<wasm_bindgen::JsValue>,
    env: Env,
    _ctx: Context,
) -> worker::Result<()> {
    stats_queue::consume(delivery, &env).await;
    Ok(())
}
