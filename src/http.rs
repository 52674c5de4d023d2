//! Small HTTP helpers every handler uses: reading a header, reading a request body within a
//! limit, reading a small unread body before a refusal, and building JSON answers. A leaf: it knows
//! no route and makes no decision, and its refusals are the core's [`ApiError`].

use bluegreen_core::error::ApiError;
use bluegreen_core::request::auth::{bearer, constant_time_eq};
use futures_util::StreamExt;
use serde::Serialize;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{web_sys, Headers, Request, Response};

/// A request header's value, `None` when absent (or not readable as text).
pub fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// A message's declared body length (`content-length`), when it has a readable one.
pub fn declared_length(headers: &Headers) -> Option<u64> {
    headers
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse().ok())
}

/// Lets a request through a route's own bearer token: `disabled` (a 503 saying how to set it)
/// while `token` is unset, `refused` (a 401) when the request's `Authorization: Bearer` is
/// missing or wrong. The comparison takes the same time however much of the token matches.
pub fn require_bearer(
    req: &Request,
    token: Option<&str>,
    disabled: fn() -> ApiError,
    refused: fn() -> ApiError,
) -> Result<(), ApiError> {
    let authorization = header(req, "authorization");
    let presented = bearer(authorization.as_deref()).unwrap_or("");
    let refusal = match token {
        None => disabled(),
        Some(token) if !constant_time_eq(presented.as_bytes(), token.as_bytes()) => refused(),
        Some(_) => return Ok(()),
    };
    Err(refusal)
}

/// Largest body [`drain`] reads before a refusal.
const SMALL_BODY: u32 = 64 * 1024;
/// Longest [`drain`] waits for that body.
const DRAIN_WAIT_MS: u32 = 5_000;

/// Reads, before a refusal, a small body the handler left unread (declared length up to 64
/// KiB), for up to 5 s: workerd resets a kept-alive connection whose request body went unread,
/// and a client still sending would get a reset instead of the refusal. Larger bodies, or
/// bodies without a length, are left alone.
pub async fn drain(inbound: &web_sys::Request) {
    let small = declared_length(&Headers(inbound.headers()))
        .is_some_and(|n| n > 0 && n <= u64::from(SMALL_BODY));
    if small && !inbound.body_used() {
        if let Ok(promise) = inbound.array_buffer() {
            // A client that declared more than it sends is answered after 5 s anyway.
            let _ = JsFuture::from(crate::js::settled_within(&promise, DRAIN_WAIT_MS)).await;
        }
    }
}

/// Most of an oversized body still read (and discarded) before answering 413, so that a
/// client still sending sees the answer instead of a reset connection.
const OVERSIZE_DRAIN_LIMIT: usize = 64 << 20;

/// Reads the request body, refusing it with a 413 once it passes `limit` bytes.
pub async fn read_body(req: &mut Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = declared_length(req.headers());
    if let Some(len) = declared.filter(|len| *len <= limit as u64) {
        // The runtime holds the body to its declared length: read it in one call.
        let body = req.bytes().await.map_err(|e| body_failed(&e))?;
        if body.len() as u64 > len.max(limit as u64) {
            return Err(ApiError::body_too_large(limit));
        }
        return Ok(body);
    }
    let Ok(mut stream) = req.stream() else {
        return Ok(Vec::new()); // no body at all
    };
    let mut body = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| body_failed(&e))?;
        seen += chunk.len();
        if seen > limit {
            // Too large: stop keeping it, keep reading (up to the drain limit) so the client
            // can finish sending and read the 413.
            body = Vec::new();
            if seen > OVERSIZE_DRAIN_LIMIT {
                break;
            }
        } else {
            body.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return Err(ApiError::body_too_large(limit));
    }
    Ok(body)
}

fn body_failed(e: &worker::Error) -> ApiError {
    ApiError::invalid_json(&format!("reading the request body failed: {e}"))
}

/// An answer of `content_type` from `text`, with `extra` headers (constant names and ASCII
/// values, so setting them cannot fail).
pub fn text(status: u16, content_type: &str, text: String, extra: &[(&str, &str)]) -> Response {
    let headers = Headers::new();
    let _ = headers.set("content-type", content_type);
    for (name, value) in extra {
        let _ = headers.set(name, value);
    }
    Response::builder()
        .with_status(status)
        .with_headers(headers)
        .fixed(text.into_bytes())
}

/// A JSON answer from text already serialized, with `extra` headers.
pub fn json_text(status: u16, text: String, extra: &[(&str, &str)]) -> Response {
    self::text(status, "application/json", text, extra)
}

/// A JSON answer that no cache may keep (the admin API's).
pub fn json<T: Serialize>(status: u16, body: &T) -> Result<Response, ApiError> {
    let text = serde_json::to_string(body).map_err(|e| ApiError::internal(&e.to_string()))?;
    Ok(json_text(status, text, &[("cache-control", "no-store")]))
}
