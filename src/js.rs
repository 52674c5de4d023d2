//! The few lines of JavaScript the shell calls, where doing the same from Rust would cross the
//! wasm boundary many times per request. Each saves CPU on the request path, measured with the
//! benchmark's CPU-per-request figure: racing the fetch against its timeout from Rust cost a
//! wasm closure, a timer future and a `select` (about 0.1 ms per request); enumerating headers
//! through the JS iterator cost four crossings per header. A green attempt that the breaker
//! watches waits on its fetch with a JavaScript timer (`settledWithin`) for the same reason,
//! and a non-streamed answer is read whole before it is judged (`readBody`) with its own timer.

use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;
use worker::web_sys;

#[wasm_bindgen(inline_js = r#"
export function fetchWithTimeout(url, method, headers, body, ms) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException("no response headers in time", "TimeoutError")), ms);
  const pending = fetch(url, { method, headers, body, signal: controller.signal }).finally(() => clearTimeout(timer));
  pending.controller = controller;
  return pending;
}
export function abortFetch(pending) {
  pending.controller.abort(new DOMException("given up by the green breaker", "AbortError"));
}
export function settledWithin(pending, ms) {
  let timer;
  const wake = new Promise((resolve) => { timer = setTimeout(resolve, ms); });
  return Promise.race([pending, wake]).finally(() => clearTimeout(timer));
}
export function callObject(env, binding, instance, url, method, route, body) {
  const namespace = env[binding];
  const stub = namespace.get(namespace.idFromName(instance));
  return stub.fetch(url, { method, headers: { "x-bluegreen-route": route }, body });
}
export async function readBody(body, length, limit, ms) {
  if (!body) return { bytes: new Uint8Array(0) };
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new DOMException("no whole answer in time", "TimeoutError")), ms);
  });
  try {
    if (length > 0 && length <= limit) {
      return { bytes: new Uint8Array(await Promise.race([new Response(body).arrayBuffer(), late])) };
    }
    const reader = body.getReader();
    const chunks = [];
    let size = 0;
    try {
      for (;;) {
        const { done, value } = await Promise.race([reader.read(), late]);
        if (done) break;
        chunks.push(value);
        size += value.byteLength;
        if (size > limit) {
          const rest = new ReadableStream({
            start(c) { for (const chunk of chunks) c.enqueue(chunk); },
            async pull(c) { const r = await reader.read(); if (r.done) c.close(); else c.enqueue(r.value); },
            cancel(reason) { return reader.cancel(reason); },
          });
          return { rest };
        }
      }
    } catch (e) {
      reader.cancel(e).catch(() => {});
      throw e;
    }
    const bytes = new Uint8Array(size);
    let at = 0;
    for (const chunk of chunks) { bytes.set(chunk, at); at += chunk.byteLength; }
    return { bytes };
  } finally {
    clearTimeout(timer);
  }
}
export function fetchAsset(env, binding, url) {
  return env[binding].fetch(url);
}
export function headerNames(headers) {
  return Array.from(headers.keys()).join("\n");
}
export function queueSend(env, binding, text) {
  const queue = env[binding];
  return queue ? queue.send(text, { contentType: "text" }) : null;
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

    /// `fetch(url, {method, headers: {"x-bluegreen-route": route}, body})` to the instance
    /// named `instance` of the Durable Object namespace bound as `binding` in `env`; throws (an
    /// `Err`) when the binding is missing.
    #[wasm_bindgen(catch, js_name = callObject)]
    pub fn call_object(
        env: &JsValue,
        binding: &str,
        instance: &str,
        url: &str,
        method: &str,
        route: &str,
        body: Option<&str>,
    ) -> Result<js_sys::Promise, JsValue>;

    /// Sends `text` as one message to the queue bound as `binding` in `env`; `None` when no
    /// queue is bound there.
    #[wasm_bindgen(js_name = queueSend)]
    pub fn queue_send(env: &JsValue, binding: &str, text: &str) -> Option<js_sys::Promise>;

    /// `GET url` from the static assets bound as `binding` in `env` (no request headers, so
    /// never a conditional or partial answer); throws (an `Err`) when the binding is missing.
    #[wasm_bindgen(catch, js_name = fetchAsset)]
    pub fn fetch_asset(env: &JsValue, binding: &str, url: &str)
        -> Result<js_sys::Promise, JsValue>;

    /// Aborts a fetch that [`fetch_with_timeout`] started (its body too, once it has headers):
    /// the promise rejects with an `AbortError`.
    #[wasm_bindgen(js_name = abortFetch)]
    pub fn abort_fetch(pending: &js_sys::Promise);

    /// `pending`, or `undefined` once `ms` have passed, whichever comes first; the timer is
    /// cleared either way. Waiting on it again waits on the same fetch.
    #[wasm_bindgen(js_name = settledWithin)]
    pub fn settled_within(pending: &js_sys::Promise, ms: u32) -> js_sys::Promise;

    /// Reads a response's `body` (`null` for none) whole within `ms`, when it is at most
    /// `limit` bytes (`length`, its `Content-Length` or 0, lets it be read at once): resolves
    /// to `{bytes}` (a `Uint8Array`), or to `{rest}` (a stream that gives what was read, then
    /// the rest) once more than `limit` bytes came; rejects with a `TimeoutError` when `ms`
    /// pass first, or with the runtime's error when the body breaks (the body is cancelled
    /// either way).
    #[wasm_bindgen(js_name = readBody)]
    pub fn read_body(
        body: Option<web_sys::ReadableStream>,
        length: f64,
        limit: u32,
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
