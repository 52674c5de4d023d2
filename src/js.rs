//! The few lines of JavaScript the shell calls, where doing the same from Rust would cross the
//! wasm boundary many times per request. Each saves CPU on the request path, measured with the
//! benchmark's CPU-per-request figure: racing the fetch against its timeout from Rust cost a
//! wasm closure, a timer future and a `select` (about 0.1 ms per request); enumerating headers
//! through the JS iterator cost four crossings per header.

use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;
use worker::web_sys;

#[wasm_bindgen(inline_js = r#"
export function fetchWithTimeout(url, method, headers, body, ms) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException("no response headers in time", "TimeoutError")), ms);
  return fetch(url, { method, headers, body, signal: controller.signal }).finally(() => clearTimeout(timer));
}
export function headerNames(headers) {
  return Array.from(headers.keys()).join("\n");
}
export function transactionSync(storage, body) {
  return storage.transactionSync(() => {
    const error = body();
    if (error) throw new Error(error);
  });
}
"#)]
extern "C" {
    /// `fetch(url, {method, headers, body})` that rejects with a `TimeoutError` when no
    /// response headers arrive within `ms`; the request is aborted then.
    #[wasm_bindgen(js_name = fetchWithTimeout)]
    pub fn fetch_with_timeout(
        url: &str,
        method: &str,
        headers: &web_sys::Headers,
        body: Option<JsValue>,
        ms: u32,
    ) -> js_sys::Promise;

    /// The (lowercase) names in a `Headers` object, joined by newlines (a character no header
    /// name can contain).
    #[wasm_bindgen(js_name = headerNames)]
    pub fn header_names(headers: &web_sys::Headers) -> String;

    /// Runs `body` in a Durable Object storage transaction (`storage.transactionSync`): when
    /// `body` returns an error message, or throws, every write it made is rolled back.
    #[wasm_bindgen(js_name = transactionSync, catch)]
    pub fn transaction_sync(
        storage: &JsValue,
        body: &mut dyn FnMut() -> Option<String>,
    ) -> Result<(), JsValue>;
}
