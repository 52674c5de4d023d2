//! Calls on a stored response the router issued: `GET` and `DELETE /v1/responses/{id}`,
//! `POST /v1/responses/{id}/cancel` and `GET /v1/responses/{id}/input_items`. The id names the
//! environment that made the response ([`bluegreen_core::api::responses`]); the call goes
//! upstream with the upstream's own id, and the answer comes back with the id the client knows.
//! Not split, not judged, not counted: nothing is generated. Any other `/v1/responses/...` call
//! is the pass-through's.

use bluegreen_core::api::responses::{IdRewrite, StoredCall};
use bluegreen_core::api::MAX_ANSWER_BYTES;
use bluegreen_core::config::Config;
use bluegreen_core::error::ApiError;
use wasm_bindgen::JsValue;
use worker::{Request, Response};

use super::headers;
use crate::error::Result;
use crate::runtime::now_ms;
use crate::upstream::{self, Body, Failure};

/// Answers `call` (read from the request's method and path) with the upstream's answer.
pub async fn stored(
    req: Request,
    call: StoredCall<'_>,
    cfg: &Config,
    request_id: &str,
    query: Option<&str>,
) -> Result<Response> {
    let started_ms = now_ms();
    let authorization = headers::authorize(&req, cfg)?;
    let path = call.upstream_path();
    let target = match query {
        Some(q) => cfg.upstream_url(&format!("{path}?{q}")),
        None => cfg.upstream_url(&path),
    };
    let body = req.inner().body().map(JsValue::from);
    let sent = headers::upstream(&req, &cfg.auth, authorization.as_deref())?;
    let timeout_ms = cfg.first_byte_timeout_ms;
    let environment = call.id.environment;
    let resp = match upstream::send(&target, req.method(), &sent, body, timeout_ms).await {
        Ok(resp) => resp,
        Err(Failure::Timeout) => {
            return Err(ApiError::upstream_timeout("(stored response)", timeout_ms).into())
        }
        Err(Failure::Connect(e)) => {
            let e = cfg.scrub_upstream(&e);
            return Err(ApiError::upstream_unreachable("(stored response)", &e).into());
        }
    };
    let status = resp.status_code();
    let back = headers::routing(resp.headers(), environment, None, request_id, None)?;
    worker::console_log!(
        "stored response {request_id} {} {path} -> {status} in {} ms",
        req.method().as_ref(),
        now_ms().saturating_sub(started_ms)
    );
    let builder = Response::builder().with_status(status).with_headers(back);
    // The answer names the response by the upstream's id: the client gets the one it knows.
    match upstream::read_body(resp, MAX_ANSWER_BYTES, timeout_ms).await {
        Ok(Body::Whole(bytes)) => Ok(builder.fixed(IdRewrite::of(call.id).apply(bytes))),
        Ok(Body::Long(rest)) => Ok(builder.stream(rest)),
        Err(Failure::Timeout) => {
            Err(ApiError::upstream_timeout("(stored response)", timeout_ms).into())
        }
        Err(Failure::Connect(e)) => {
            let e = cfg.scrub_upstream(&e);
            Err(ApiError::upstream_unreachable("(stored response)", &e).into())
        }
    }
}
