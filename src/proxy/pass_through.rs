//! Any other `/v1/*` call (`GET /v1/models`, embeddings…): sent to the upstream unchanged, as
//! blue, with the body streamed both ways. No split, no fallback, no model rewrite, no stats.

use bluegreen_core::config::Config;
use bluegreen_core::error::ApiError;
use bluegreen_core::Environment;
use wasm_bindgen::JsValue;
use worker::{Request, Response};

use super::headers;
use crate::error::Result;
use crate::runtime::now_ms;
use crate::upstream::{self, Failure};

/// Forwards the request and hands the upstream's answer back as it is.
pub async fn pass_through(req: Request, cfg: &Config, request_id: &str) -> Result<Response> {
    let started_ms = now_ms();
    let authorization = headers::authorize(&req, cfg)?;
    let url = req.url()?;
    let rest = url.path().strip_prefix("/v1").unwrap_or(url.path());
    let target = match url.query() {
        Some(q) => cfg.upstream_url(&format!("{rest}?{q}")),
        None => cfg.upstream_url(rest),
    };
    // The client's body goes upstream as the runtime's own stream, unread and uncopied (an
    // audio upload can be large; the platform's request size limit bounds it).
    let body = req.inner().body().map(JsValue::from);
    let sent = headers::upstream(&req, authorization.as_deref())?;
    let timeout_ms = cfg.first_byte_timeout_ms;
    let resp = match upstream::send(&target, req.method(), &sent, body, timeout_ms).await {
        Ok(resp) => resp,
        Err(Failure::Timeout) => {
            return Err(ApiError::upstream_timeout("(pass-through)", timeout_ms).into())
        }
        Err(Failure::Connect(e)) => {
            return Err(ApiError::upstream_unreachable("(pass-through)", &e).into())
        }
    };
    let status = resp.status_code();
    let back = headers::routing(resp.headers(), Environment::Blue, None, request_id, None)?;
    worker::console_log!(
        "pass-through {request_id} {} -> {status} in {} ms",
        url.path(),
        now_ms().saturating_sub(started_ms)
    );
    // The upstream body (a stream) is handed back as it is: nothing is copied through wasm.
    let (_, body) = resp.into_parts();
    Ok(Response::builder()
        .with_status(status)
        .with_headers(back)
        .body(body))
}
