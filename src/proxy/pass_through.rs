//! The other `/v1/*` calls that `PASS_THROUGH` lists (`GET /v1/models`, embeddings…): sent to
//! the upstream unchanged, as blue, with the body streamed both ways. No split, no fallback, no
//! model rewrite, no stats. Anything the list does not name is a 404 that reaches no upstream,
//! whatever the auth mode; the core's [`PassThrough`](bluegreen_core::request::pass_through) decides.

use bluegreen_core::config::Config;
use bluegreen_core::error::ApiError;
use bluegreen_core::Environment;
use wasm_bindgen::JsValue;
use worker::{Request, Response};

use super::headers;
use crate::error::Result;
use crate::runtime::now_ms;
use crate::upstream::{self, Failure};

/// Forwards the request when `PASS_THROUGH` lists it, and hands the upstream's answer back as
/// it is. `path` and `query` are the request's as it came, the path already checked; `read` is
/// its body when the router already read it (an embeddings call that names no embeddings
/// route), sent as it came.
pub async fn pass_through(
    req: Request,
    read: Option<&[u8]>,
    cfg: &Config,
    request_id: &str,
    path: &str,
    query: Option<&str>,
) -> Result<Response> {
    let started_ms = now_ms();
    let method = req.method();
    if !cfg.pass_through.allows(method.as_ref(), path) {
        return Err(ApiError::not_passed_through(method.as_ref(), path).into());
    }
    let authorization = headers::authorize(&req, cfg)?;
    let rest = path.strip_prefix("/v1").unwrap_or(path);
    let target = match query {
        Some(q) => cfg.upstream_url(&format!("{rest}?{q}")),
        None => cfg.upstream_url(rest),
    };
    // The client's body goes upstream as the runtime's own stream, unread and uncopied (an
    // audio upload can be large; the platform's request size limit bounds it).
    let body = match read {
        Some(bytes) => Some(JsValue::from(js_sys::Uint8Array::from(bytes))),
        None => req.inner().body().map(JsValue::from),
    };
    let sent = headers::upstream(&req, &cfg.auth, authorization.as_deref())?;
    // The body is not read, so a streamed call cannot be told from one whose headers come only
    // with the whole answer (a non-streamed `/v1/completions`): headers get the longer limit.
    let timeout_ms = cfg.completion_timeout_ms;
    let resp = match upstream::send(&target, method, &sent, body, timeout_ms).await {
        Ok(resp) => resp,
        Err(Failure::Timeout) => {
            return Err(ApiError::upstream_timeout("(pass-through)", timeout_ms).into())
        }
        Err(Failure::Connect(e)) => {
            let e = cfg.scrub_upstream(&e);
            return Err(ApiError::upstream_unreachable("(pass-through)", &e).into());
        }
    };
    let status = resp.status_code();
    let back = headers::routing(resp.headers(), Environment::Blue, None, request_id, None)?;
    worker::console_log!(
        "pass-through {request_id} {path} -> {status} in {} ms",
        now_ms().saturating_sub(started_ms)
    );
    // The upstream body (a stream) is handed back as it is: nothing is copied through wasm.
    let (_, body) = resp.into_parts();
    Ok(Response::builder()
        .with_status(status)
        .with_headers(back)
        .body(body))
}
