//! The request path: `POST /v1/chat/completions` and the plain pass-through of other `/v1/*`
//! calls.
//!
//! Order of work for a chat completion: authenticate, read the environment override, read the
//! body (bounded), validate it, pick the environment from the cached routing document, try it,
//! and — when the core's fallback policy says so — try blue once. The serving response's body
//! is relayed as it arrives (streams event by event), and one outcome record is logged once
//! the upstream's last byte has been read.

use std::rc::Rc;

use bluegreen_core::config::Config;
use bluegreen_core::error::ApiError;
use bluegreen_core::fallback::{next_step, Attempt, FallbackReason, Next};
use bluegreen_core::headers::{forward_request_header, forward_response_header};
use bluegreen_core::openai::{usage_of, ChatRequest};
use bluegreen_core::outcome::{Outcome, StatusClass};
use bluegreen_core::split::{random_bucket, select, Environment};
use bluegreen_core::sse::SseRelay;
use futures_util::StreamExt;
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{web_sys, ByteStream, Context, Env, Headers, Method, Request, Response, ResponseBody};

use crate::error::Result;
use crate::http::{header, read_body};
use crate::runtime::{now_ms, Tag};
use crate::upstream::{self, Failure};
use crate::{kv, recorder};

/// Where a request's outcome goes when it is known: the log and the controller's stats.
#[derive(Clone)]
struct Accounting {
    env: Env,
    cfg: Rc<Config>,
}

impl Accounting {
    /// Accounts for `record` from inside a future that `ctx.wait_until` already runs.
    async fn settle(&self, record: &Outcome) {
        if let Some(flush) = recorder::record(record, &self.cfg, &self.env) {
            flush.await;
        }
    }

    /// Accounts for `record` on the response path: any flush is handed to `ctx.wait_until`.
    fn settle_now(&self, record: &Outcome, ctx: &Context) {
        if let Some(flush) = recorder::record(record, &self.cfg, &self.env) {
            ctx.wait_until(flush);
        }
    }
}

/// A copy of `headers` without the ones `keep` rejects. Copying the JS object whole and
/// deleting a few names crosses the wasm boundary far less often than rebuilding it entry by
/// entry.
fn filtered(headers: &Headers, keep: fn(&str) -> bool) -> Result<Headers> {
    let out = headers.clone();
    for name in crate::js::header_names(&out.0).split('\n') {
        if !name.is_empty() && !keep(name) {
            out.delete(name)?;
        }
    }
    Ok(out)
}

/// The client's headers that go upstream, plus the upstream `Authorization`.
fn upstream_headers(req: &Request, authorization: Option<&str>) -> Result<Headers> {
    let out = filtered(req.headers(), forward_request_header)?;
    if let Some(auth) = authorization {
        out.set("authorization", auth)?;
    }
    Ok(out)
}

/// The upstream's headers that go back to the client, plus where the request went. `model` is
/// `None` for pass-through calls, which have no model of ours.
fn routing_headers(
    upstream: &Headers,
    environment: Environment,
    model: Option<&str>,
    request_id: &str,
    fallback: Option<FallbackReason>,
) -> Result<Headers> {
    let out = filtered(upstream, forward_response_header)?;
    out.set("x-bluegreen-environment", environment.as_str())?;
    if let Some(model) = model {
        out.set("x-bluegreen-model", model)?;
    }
    out.set("x-bluegreen-request-id", request_id)?;
    if let Some(reason) = fallback {
        out.set("x-bluegreen-fallback", &reason.to_string())?;
    }
    Ok(out)
}

/// Our own answer when the serving attempt produced no usable response (502/504), with the
/// routing headers, after logging the outcome.
fn failure_response(
    err: &ApiError,
    mut record: Outcome,
    started_ms: u64,
    accounting: &Accounting,
    ctx: &Context,
) -> Result<Response> {
    record.status = err.status;
    record.total_ms = now_ms().saturating_sub(started_ms);
    accounting.settle_now(&record, ctx);
    let request_id = record.request_id.as_str();
    let json = Headers::new();
    json.set("content-type", "application/json")?;
    let headers = routing_headers(
        &json,
        record.environment,
        Some(&record.model),
        request_id,
        record.fallback,
    )?;
    Ok(Response::builder()
        .with_status(err.status)
        .with_headers(headers)
        .fixed(err.to_json().into_bytes()))
}

/// Checks the client's credentials; returns the `Authorization` to send upstream.
fn authorize(req: &Request, cfg: &Config) -> Result<Option<String>> {
    Ok(cfg
        .auth
        .authorize(header(req, "authorization").as_deref())?)
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    mut req: Request,
    env: &Env,
    cfg: &Rc<Config>,
    tag: &Tag,
    ctx: &Context,
) -> Result<Response> {
    let request_id = tag.id.as_str();
    let started_ms = now_ms();
    let authorization = authorize(&req, cfg)?;
    let forced = match header(&req, "x-bluegreen-environment") {
        Some(v) => {
            Some(Environment::parse(&v).ok_or_else(|| ApiError::bad_environment_header(&v))?)
        }
        None => None,
    };
    let body = read_body(&mut req, cfg.max_body_bytes).await?;
    let chat = ChatRequest::parse(&body)?;

    let doc = kv::current(env, cfg).await;
    let sticky_key = header(&req, "x-bluegreen-sticky-key")
        .filter(|k| !k.is_empty())
        .or_else(|| chat.user.clone());
    let selection = select(&doc, forced, sticky_key.as_deref(), random_bucket(tag.draw));
    let headers = upstream_headers(&req, authorization.as_deref())?;

    let mut environment = selection.environment;
    let mut fallback = None;
    loop {
        let model = doc.model_for(environment);
        let payload = js_sys::Uint8Array::from(chat.with_model(model).as_slice());
        let result = upstream::send(
            &cfg.chat_url,
            Method::Post,
            &headers,
            Some(payload.into()),
            cfg.first_byte_timeout_ms,
        )
        .await;
        let attempt = match &result {
            Ok(resp) => Attempt::Status(resp.status_code()),
            Err(Failure::Timeout) => Attempt::Timeout,
            Err(Failure::Connect(_)) => Attempt::Connect,
        };
        let next = next_step(environment, forced.is_some(), attempt);
        if let Next::RetryOnBlue(reason) = next {
            worker::console_warn!(
                "request {request_id}: green ({model}) failed with {reason}; retrying on blue"
            );
            if let Ok(resp) = result {
                discard_body(resp);
            }
            fallback = Some(reason);
            environment = Environment::Blue;
            continue;
        }
        let record = Outcome {
            request_id: request_id.to_string(),
            at_ms: started_ms,
            environment,
            model: model.to_string(),
            basis: selection.basis,
            stream: chat.stream,
            status: 0,
            class: StatusClass::of(attempt),
            fallback,
            first_byte_ms: None,
            total_ms: 0,
            usage: None,
            interrupted: false,
            client_gone: false,
        };
        let accounting = Accounting {
            env: env.clone(),
            cfg: cfg.clone(),
        };
        return match (next, result) {
            (Next::Serve, Ok(resp)) => {
                serve(resp, record, started_ms, chat.stream, accounting, ctx).await
            }
            (_, Err(Failure::Connect(detail))) => {
                let err = ApiError::upstream_unreachable(model, &detail);
                failure_response(&err, record, started_ms, &accounting, ctx)
            }
            (_, _) => {
                let err = ApiError::upstream_timeout(model, cfg.first_byte_timeout_ms);
                failure_response(&err, record, started_ms, &accounting, ctx)
            }
        };
    }
}

/// Lets go of a response we will not return: cancelling its body frees the connection now
/// rather than when the garbage collector gets to it.
fn discard_body(resp: Response) {
    if let ResponseBody::Stream(stream) = resp.into_parts().1 {
        let _ = stream.cancel();
    }
}

/// Returns the serving upstream response: a stream relayed event by event, anything else
/// passed through as the runtime's own body (teed when successful, to learn its usage).
async fn serve(
    mut resp: Response,
    mut record: Outcome,
    started_ms: u64,
    wants_stream: bool,
    accounting: Accounting,
    ctx: &Context,
) -> Result<Response> {
    let request_id = record.request_id.clone();
    let status = resp.status_code();
    record.status = status;
    record.first_byte_ms = Some(now_ms().saturating_sub(started_ms));
    let headers = routing_headers(
        resp.headers(),
        record.environment,
        Some(&record.model),
        &request_id,
        record.fallback,
    )?;
    let is_sse = resp
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .is_some_and(|ct| ct.trim_start().starts_with("text/event-stream"));

    if wants_stream && is_sse {
        let upstream = resp.stream()?;
        let pipe = web_sys::TransformStream::new()?;
        let writer = pipe.writable().get_writer()?;
        ctx.wait_until(relay_stream(
            upstream, writer, record, started_ms, accounting,
        ));
        return Ok(Response::builder()
            .with_status(status)
            .with_headers(headers)
            .stream(pipe.readable()));
    }

    // Not a stream: the body goes to the client as the runtime's own stream, never copied
    // through wasm (reading it here and building a new body cost ~0.2 ms of CPU per request in
    // the benchmark). A successful answer is teed, and its token usage read from the second
    // branch off the response path.
    let builder = Response::builder()
        .with_status(status)
        .with_headers(headers);
    let body = match resp.into_parts().1 {
        ResponseBody::Stream(stream) if (200..300).contains(&status) => stream,
        other => {
            record.total_ms = now_ms().saturating_sub(started_ms);
            accounting.settle_now(&record, ctx);
            return Ok(builder.body(other));
        }
    };
    let branches = body.tee();
    let ours: web_sys::ReadableStream = branches.get(1).unchecked_into();
    ctx.wait_until(async move {
        match read_all(&ours).await {
            Ok(bytes) => record.usage = usage_of(&bytes),
            Err(e) => {
                worker::console_warn!("request {}: response body cut: {e}", record.request_id);
                record.interrupted = true;
            }
        }
        record.total_ms = now_ms().saturating_sub(started_ms);
        accounting.settle(&record).await;
    });
    Ok(builder.stream(branches.get(0).unchecked_into()))
}

/// Reads a whole body stream into memory (for the teed copy of a non-streamed answer).
async fn read_all(stream: &web_sys::ReadableStream) -> Result<Vec<u8>> {
    let response = web_sys::Response::new_with_opt_readable_stream(Some(stream))?;
    let buffer = JsFuture::from(response.array_buffer()?).await?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// Relays an upstream SSE body into `writer`, event by event, and logs the outcome when it
/// ends. Runs in `ctx.wait_until`, pushed by the upstream rather than pulled by the client, so
/// that a client that goes away is noticed (its writes fail) and still accounted for.
async fn relay_stream(
    mut upstream: ByteStream,
    writer: web_sys::WritableStreamDefaultWriter,
    mut record: Outcome,
    started_ms: u64,
    accounting: Accounting,
) {
    let mut relay = SseRelay::new();
    let write = |bytes: Vec<u8>| {
        let chunk = js_sys::Uint8Array::from(bytes.as_slice());
        JsFuture::from(writer.write_with_chunk(&chunk))
    };
    let mut client_gone = false;
    loop {
        let (out, last) = match upstream.next().await {
            Some(Ok(chunk)) => (relay.push(chunk), false),
            Some(Err(e)) => {
                worker::console_warn!("request {}: stream interrupted: {e}", record.request_id);
                record.interrupted = true;
                (relay.abort(&e.to_string()), true)
            }
            None => (relay.finish(), true),
        };
        if !out.is_empty() && write(out).await.is_err() {
            client_gone = true;
            break;
        }
        if last {
            break;
        }
    }
    if client_gone {
        // Dropping the upstream stream cancels it: the model stops generating for nobody.
        drop(upstream);
        record.client_gone = true;
    } else {
        let _ = JsFuture::from(writer.close()).await;
    }
    record.usage = relay.usage();
    record.total_ms = now_ms().saturating_sub(started_ms);
    accounting.settle(&record).await;
}

/// Any other `/v1/*` call (`GET /v1/models`, embeddings…): sent to the upstream unchanged, as
/// blue, with the body streamed both ways. No split, no fallback, no model rewrite.
pub async fn pass_through(req: Request, cfg: &Config, request_id: &str) -> Result<Response> {
    let started_ms = now_ms();
    let authorization = authorize(&req, cfg)?;
    let url = req.url()?;
    let rest = url.path().strip_prefix("/v1").unwrap_or(url.path());
    let target = match url.query() {
        Some(q) => cfg.upstream_url(&format!("{rest}?{q}")),
        None => cfg.upstream_url(rest),
    };
    let method = req.method();
    // The client's body goes upstream as the runtime's own stream, unread and uncopied (an
    // audio upload can be large; the platform's request size limit bounds it).
    let body = req.inner().body().map(JsValue::from);
    let headers = upstream_headers(&req, authorization.as_deref())?;
    let result = upstream::send(&target, method, &headers, body, cfg.first_byte_timeout_ms).await;
    let resp = match result {
        Ok(resp) => resp,
        Err(Failure::Timeout) => {
            return Err(
                ApiError::upstream_timeout("(pass-through)", cfg.first_byte_timeout_ms).into(),
            )
        }
        Err(Failure::Connect(e)) => {
            return Err(ApiError::upstream_unreachable("(pass-through)", &e).into())
        }
    };
    let status = resp.status_code();
    let headers = routing_headers(resp.headers(), Environment::Blue, None, request_id, None)?;
    worker::console_log!(
        "pass-through {request_id} {} -> {status} in {} ms",
        url.path(),
        now_ms().saturating_sub(started_ms)
    );
    // The upstream body (a stream) is handed back as it is: nothing is copied through wasm.
    let (_, body) = resp.into_parts();
    Ok(Response::builder()
        .with_status(status)
        .with_headers(headers)
        .body(body))
}
