//! The one place where a refusal becomes an HTTP response: status, OpenAI-shaped JSON body and
//! the request id. Upstream failures are not errors here: they are answers the proxy returns.

use bluegreen_core::openai::ApiError;
use worker::{Headers, Response};

/// The router's own refusal as a response.
pub fn respond(err: &ApiError, request_id: &str) -> Response {
    let headers = Headers::new();
    // Header names and values here are constants or hex: setting them cannot fail.
    let _ = headers.set("content-type", "application/json");
    let _ = headers.set("x-bluegreen-request-id", request_id);
    Response::builder()
        .with_status(err.status)
        .with_headers(headers)
        .fixed(err.to_json().into_bytes())
}

/// A failure inside the runtime bindings (headers, streams, KV handles): our bug, not the
/// client's, reported as a 500 with the detail.
pub fn internal(e: worker::Error) -> ApiError {
    ApiError::internal(&e.to_string())
}

/// A JavaScript exception from a runtime API (stream constructors and the like): our bug.
pub fn js_internal(e: wasm_bindgen::JsValue) -> ApiError {
    ApiError::internal(&format!("{e:?}"))
}
