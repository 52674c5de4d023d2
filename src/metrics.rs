//! `GET /metrics`: the Prometheus scrape. This side checks the metrics token, its own so that
//! a scraper never holds the admin token; the rollout controller builds the text from what it
//! holds in memory (`bluegreen_core::controller::metrics`), with no storage query.
//!
//! Without `METRICS_TOKEN` the endpoint is off (503, saying how to turn it on). A missing or
//! wrong token is a 401, compared in constant time.

use bluegreen_core::error::ApiError;
use worker::{Env, Request, Response};

use crate::error::Result;
use crate::{control, http, settings};

/// Checks the token and hands the scrape to the controller.
pub async fn handle(mut req: Request, env: &Env) -> Result<Response> {
    let cfg = settings::load(env)?;
    http::require_bearer(
        &mut req,
        cfg.metrics_token.as_deref(),
        ApiError::metrics_disabled,
        ApiError::metrics_unauthorized,
    )
    .await?;
    control::forward(env, req).await
}
