//! One attempt at the upstream: a fetch that gives up when no response headers arrive in time.
//!
//! The Workers runtime has no fetch timeout of its own. The timer, the `AbortController` and
//! the fetch live in a few lines of JavaScript (`js::fetch_with_timeout`); the timer is cleared
//! as soon as the headers arrive, so a long stream is never cut by it. Only the headers are
//! awaited here; the caller reads or streams the body. A caller that watches the attempt (the
//! green breaker) waits for the headers a while at a time ([`Pending::headers_within`]) and may
//! give the attempt up ([`Pending::abort`]).

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

/// A request sent, its response headers not yet awaited.
pub struct Pending(js_sys::Promise);

/// Sends one request, which gives up when its response headers have not come within
/// `timeout_ms`.
pub fn start(
    url: &str,
    method: Method,
    headers: &Headers,
    body: Option<JsValue>,
    timeout_ms: u64,
) -> Pending {
    let ms = u32::try_from(timeout_ms).unwrap_or(u32::MAX);
    Pending(crate::js::fetch_with_timeout(
        url,
        method.as_ref(),
        &headers.0,
        body,
        ms,
    ))
}

/// Sends one request and waits at most `timeout_ms` for its response headers.
pub async fn send(
    url: &str,
    method: Method,
    headers: &Headers,
    body: Option<JsValue>,
    timeout_ms: u64,
) -> Result<Response, Failure> {
    start(url, method, headers, body, timeout_ms)
        .headers()
        .await
}

impl Pending {
    /// Waits for the response headers (or the attempt's own timeout).
    pub async fn headers(&self) -> Result<Response, Failure> {
        settled(JsFuture::from(self.0.clone()).await)
    }

    /// Waits for the response headers at most `ms`; `None` when they have not come by then
    /// (the request goes on: wait again, or abort it).
    pub async fn headers_within(&self, ms: u64) -> Option<Result<Response, Failure>> {
        let ms = u32::try_from(ms).unwrap_or(u32::MAX);
        match JsFuture::from(crate::js::settled_within(&self.0, ms)).await {
            Ok(v) if v.is_undefined() => None,
            result => Some(settled(result)),
        }
    }

    /// Gives the request up: the fetch (and its body, if the headers came) is aborted.
    pub fn abort(&self) {
        crate::js::abort_fetch(&self.0);
    }
}

fn settled(result: Result<JsValue, JsValue>) -> Result<Response, Failure> {
    match result {
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

/// A successful non-streamed answer's body, read before the router commits to it.
pub enum Body {
    /// The whole body.
    Whole(Vec<u8>),
    /// More than the bound came: what was read, then the rest, unread.
    Long(web_sys::ReadableStream),
}

/// Reads `resp`'s body whole within `ms`, when it is at most `limit` bytes (see
/// `js::read_body`); the response keeps its status and headers.
pub async fn read_body(resp: Response, limit: usize, ms: u64) -> Result<Body, Failure> {
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    let ms = u32::try_from(ms).unwrap_or(u32::MAX);
    let length = crate::http::declared_length(resp.headers()).map_or(0.0, |n| n as f64);
    let body = match resp.into_parts().1 {
        worker::ResponseBody::Stream(stream) => Some(stream),
        worker::ResponseBody::Body(bytes) => return Ok(Body::Whole(bytes)),
        worker::ResponseBody::Empty => None,
    };
    let read = JsFuture::from(crate::js::read_body(body, length, limit, ms)).await;
    let read = match read {
        Ok(v) => v,
        Err(e) if is_timeout(&e) => return Err(Failure::Timeout),
        Err(e) => {
            return Err(Failure::Connect(format!(
                "the body broke: {}",
                describe_js(&e)
            )))
        }
    };
    let field = |name: &str| js_sys::Reflect::get(&read, &JsValue::from_str(name)).ok();
    match field("bytes").filter(|b| !b.is_undefined()) {
        Some(bytes) => Ok(Body::Whole(js_sys::Uint8Array::new(&bytes).to_vec())),
        None => field("rest")
            .and_then(|r| r.dyn_into::<web_sys::ReadableStream>().ok())
            .map(Body::Long)
            .ok_or_else(|| Failure::Connect("the body could not be read".into())),
    }
}
