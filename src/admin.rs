//! `/admin/*`: the operator's API. This side checks the admin token; the rollout controller
//! (the Durable Object) does the rest, so every admin request is forwarded to it unchanged.
//!
//! Without `ADMIN_TOKEN` the API is off (503, saying how to turn it on). A missing or wrong
//! token is a 401; the comparison takes the same time however much of the token matches.

use bluegreen_core::auth::constant_time_eq;
use bluegreen_core::error::ApiError;
use worker::{Env, Request, Response};

use crate::error::Result;
use crate::{control, http, settings};

/// Checks the token and hands the request to the controller.
pub async fn handle(mut req: Request, env: &Env) -> Result<Response> {
    let cfg = settings::load(env)?;
    let Some(token) = cfg.admin_token.as_deref() else {
        http::drain(&mut req).await;
        return Err(ApiError::admin_disabled().into());
    };
    let presented = http::header(&req, "authorization").unwrap_or_default();
    let presented = presented
        .strip_prefix("Bearer ")
        .or_else(|| presented.strip_prefix("bearer "))
        .unwrap_or("")
        .trim();
    if !constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        http::drain(&mut req).await;
        return Err(ApiError::admin_unauthorized().into());
    }
    control::forward(env, req).await
}
