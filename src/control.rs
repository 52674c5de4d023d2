//! The Worker's client of the rollout controller (the `global` Durable Object): its stub and
//! the internal routes the cron handler, the admin API and the stats recorder call. The
//! controller's own code lives in `controller/`; this leaf only addresses it, so that callers
//! never depend on the Durable Object's implementation.

use bluegreen_core::request::routing::RoutingDoc;
use worker::{Env, Method, Request, RequestInit, Response, Stub};

use crate::error::{Error, Result};

/// Where isolates post their stats batches.
pub const STATS_PATH: &str = "/internal/stats";
/// Where the cron handler asks for a tick.
pub const TICK_PATH: &str = "/internal/tick";
/// Where an isolate that cannot read KV asks for the split in force.
pub const ROUTING_PATH: &str = "/internal/routing";
/// Where an isolate hands over a verified feedback score.
pub const FEEDBACK_PATH: &str = "/internal/feedback";

/// The controller's stub. A stub fetch needs a full URL; the host is never resolved.
fn stub(env: &Env) -> Result<Stub> {
    Ok(env
        .durable_object("ROLLOUT")?
        .id_from_name("global")?
        .get_stub()?)
}

async fn post(env: &Env, path: &str, body: Option<&str>) -> Result<Response> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(body.map(wasm_bindgen::JsValue::from_str));
    let req = Request::new_with_init(&format!("https://controller{path}"), &init)?;
    Ok(stub(env)?.fetch_with_request(req).await?)
}

/// Hands an admin request (already authenticated) to the controller unchanged.
pub async fn forward(env: &Env, req: Request) -> Result<Response> {
    Ok(stub(env)?.fetch_with_request(req).await?)
}

/// Asks the controller to tick; returns its one-line summary. Called by the cron handler.
pub async fn tick(env: &Env) -> Result<String> {
    let mut resp = post(env, TICK_PATH, None).await?;
    let text = resp.text().await?;
    match resp.status_code() {
        200 => Ok(text),
        s => Err(Error::Runtime(format!(
            "the controller answered {s}: {text}"
        ))),
    }
}

/// The controller's split, for an isolate that cannot read KV: `None` when the controller has
/// none of its own yet (before its first rollout, the vars are right).
pub async fn routing(env: &Env) -> Result<Option<RoutingDoc>> {
    let req = Request::new(&format!("https://controller{ROUTING_PATH}"), Method::Get)?;
    let mut resp = stub(env)?.fetch_with_request(req).await?;
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

/// Hands a verified score (its JSON) to the controller; its answer goes to the client as it is
/// (200 counted, 409 already scored).
pub async fn post_feedback(env: &Env, json: &str) -> Result<Response> {
    post(env, FEEDBACK_PATH, Some(json)).await
}

/// Posts one stats batch (its JSON) to the controller; `Ok` once the controller took it (or
/// knew it already).
pub async fn post_stats(env: &Env, json: &str) -> Result<()> {
    let resp = post(env, STATS_PATH, Some(json)).await?;
    match resp.status_code() {
        200..=299 => Ok(()),
        s => Err(Error::Runtime(format!("the controller answered {s}"))),
    }
}
