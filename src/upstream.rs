//! One attempt at the upstream: a fetch that gives up when no response headers arrive in time.
//!
//! The Workers runtime has no fetch timeout of its own. The timer, the `AbortController` and
//! the fetch live in a few lines of JavaScript (`js::fetch_with_timeout`); the timer is cleared
//! as soon as the headers arrive, so a long stream is never cut by it. Only the headers are
//! awaited here; the caller reads or streams the body.

use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{web_sys, Headers, Method, Response};

/// Why an attempt produced no response.
pub enum Failure {
    /// No response headers in time.
    Timeout,
    /// The fetch failed: refused, reset, DNS, TLS. Holds the runtime's message.
    Connect(String),
}

/// Sends one request and waits at most `timeout_ms` for its response headers.
pub async fn send(
    url: &str,
    method: Method,
    headers: &Headers,
    body: Option<JsValue>,
    timeout_ms: u64,
) -> Result<Response, Failure> {
    let ms = u32::try_from(timeout_ms).unwrap_or(u32::MAX);
    match JsFuture::from(crate::js::fetch_with_timeout(
        url,
        method.as_ref(),
        &headers.0,
        body,
        ms,
    ))
    .await
    {
        Ok(response) => response
            .dyn_into::<web_sys::Response>()
            .map(Response::from)
            .map_err(|v| Failure::Connect(format!("not a Response: {v:?}"))),
        Err(e) if is_timeout(&e) => Err(Failure::Timeout),
        Err(e) => Err(Failure::Connect(describe_js(&e))),
    }
}

fn is_timeout(e: &JsValue) -> bool {
    e.dyn_ref::<js_sys::Error>()
        .is_some_and(|err| err.name() == "TimeoutError")
}

/// A JavaScript error value as text: its message when it is an `Error`, else its debug form.
fn describe_js(e: &JsValue) -> String {
    match e.dyn_ref::<js_sys::Error>() {
        Some(err) => String::from(err.to_string()),
        None => e.as_string().unwrap_or_else(|| format!("{e:?}")),
    }
}
