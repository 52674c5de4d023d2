//! `/admin/*`: the operator's API. This side checks the admin token; the rollout controller
//! (the Durable Object) does the rest, so every admin request is forwarded to it unchanged.
//!
//! Without `ADMIN_TOKEN` the API is off (503, saying how to turn it on). A missing or wrong
//! token is a 401; the comparison takes the same time however much of the token matches.

use bluegreen_core::error::ApiError;
use worker::{Env, Request, Response};

use crate::error::Result;
use crate::{control, http, settings};

/// Checks the token and hands the request to the controller.
pub async fn handle(mut req: Request, env: &Env) -> Result<Response> {
    let cfg = settings::load(env)?;
    http::require_bearer(
        &mut req,
        cfg.admin_token.as_deref(),
        ApiError::admin_disabled,
        ApiError::admin_unauthorized,
    )
    .await?;
    control::forward(env, req).await
}
