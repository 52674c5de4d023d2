//! `/admin/*`: the operator's API. This side checks the admin token; the rollout controller
//! (the Durable Object) does the rest, so every admin request is forwarded to it unchanged.
//!
//! Without `ADMIN_TOKEN` the API is off (503, saying how to turn it on). A missing or wrong
//! token is a 401; the comparison takes the same time however much of the token matches.

use bluegreen_core::auth::constant_time_eq;
use bluegreen_core::openai::ApiError;
use worker::{Env, Request, Response};

use crate::error::internal;
use crate::{controller, settings};

/// Largest request body read (and dropped) before a refusal; see [`drain`].
const DRAIN_LIMIT: usize = 64 * 1024;

/// Reads a small request body before refusing the request, so that a client still sending it
/// gets the refusal rather than a reset connection. Bodies without a length, or over 64 KiB,
/// are left alone.
pub async fn drain(req: &mut Request) {
    let small = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| n > 0 && n <= DRAIN_LIMIT);
    if small {
        let _ = req.bytes().await;
    }
}

/// Checks the token and hands the request to the controller.
pub async fn handle(mut req: Request, env: &Env) -> Result<Response, ApiError> {
    let cfg = settings::load(env)?;
    let Some(token) = cfg.admin_token.as_deref() else {
        drain(&mut req).await;
        return Err(ApiError::admin_disabled());
    };
    let presented = req
        .headers()
        .get("authorization")
        .ok()
        .flatten()
        .unwrap_or_default();
    let presented = presented
        .strip_prefix("Bearer ")
        .or_else(|| presented.strip_prefix("bearer "))
        .unwrap_or("")
        .trim();
    if !constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        drain(&mut req).await;
        return Err(ApiError::admin_unauthorized());
    }
    controller::stub(env)
        .map_err(internal)?
        .fetch_with_request(req)
        .await
        .map_err(internal)
}
