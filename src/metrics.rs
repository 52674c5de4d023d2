//! `GET /metrics`: the Prometheus scrape. This side checks the metrics token, its own so that
//! a scraper never holds the admin token; each route's controller builds its text from what it
//! holds in memory (`bluegreen_core::controller::metrics`), with no storage query, every sample
//! labelled with its route, and this side merges them into one text (each family once). A
//! route whose controller does not answer is left out and shows as
//! `bluegreen_route_scrape_ok{route="…"} 0`, so one unhealthy route never fails the scrape.
//!
//! Without `METRICS_TOKEN` the endpoint is off (503, saying how to turn it on). A missing or
//! wrong token is a 401, compared in constant time.

use bluegreen_core::controller::metrics::{merge, route_scrape_family, CONTENT_TYPE};
use bluegreen_core::error::ApiError;
use worker::{Env, Method, Request, Response};

use crate::error::Result;
use crate::{control, http, routes, settings};

/// Checks the token, then asks every route's controller for its text and merges them.
pub async fn handle(req: Request, env: &Env) -> Result<Response> {
    let cfg = settings::load(env)?;
    http::require_bearer(
        &req,
        cfg.metrics_token.as_deref(),
        ApiError::metrics_disabled,
        ApiError::metrics_unauthorized,
    )?;
    let table = routes::table(env, &cfg).await.doc;
    let names: Vec<&str> = table.sorted().iter().map(|r| r.def.name.as_str()).collect();
    let texts = control::each_route(
        env,
        &names,
        Method::Get,
        "/metrics",
        control::READ_TIMEOUT_MS,
    )
    .await;
    let mut scraped = Vec::with_capacity(names.len());
    for (route, text) in names.iter().zip(&texts) {
        if let Err(e) = text {
            worker::console_error!("metrics: route {route}'s controller left out: {e}");
        }
        scraped.push((*route, text.is_ok()));
    }
    let up = route_scrape_family(&scraped);
    let text = merge(
        texts
            .iter()
            .flatten()
            .map(String::as_str)
            .chain([up.as_str()]),
    );
    Ok(http::text(
        200,
        CONTENT_TYPE,
        text,
        &[("cache-control", "no-store")],
    ))
}
