//! One attempt at the upstream: a fetch raced against the first-byte timeout.
//!
//! The Workers runtime has no fetch timeout of its own, so the fetch is raced against a timer
//! and aborted through an `AbortController` when the timer wins. Only the response headers are
//! awaited here; the body is read (or streamed) by the caller.

use std::time::Duration;

use futures_util::future::{select, Either};
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit, Response};

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
    body: Option<js_sys::Uint8Array>,
    timeout_ms: u64,
) -> Result<Response, Failure> {
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers.clone());
    if let Some(body) = body {
        init.with_body(Some(body.into()));
    }
    let request =
        Request::new_with_init(url, &init).map_err(|e| Failure::Connect(e.to_string()))?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let attempt = fetch.send_with_signal(&signal);
    let timer = Delay::from(Duration::from_millis(timeout_ms));
    futures_util::pin_mut!(attempt, timer);
    match select(attempt, timer).await {
        Either::Left((Ok(response), _)) => Ok(response),
        Either::Left((Err(e), _)) => Err(Failure::Connect(e.to_string())),
        Either::Right(_) => {
            controller.abort();
            Err(Failure::Timeout)
        }
    }
}
