//! `POST /v1/chat/completions`.
//!
//! Order of work: authenticate, read the environment override, read the body (bounded),
//! validate it, pick the environment from the cached routing document, try it, and — when the
//! core's fallback policy says so — try blue once. The serving response's body is relayed as it
//! arrives ([`super::relay`]), and one outcome record is accounted for once the upstream's last
//! byte has been read.

use std::rc::Rc;

use bluegreen_core::config::Config;
use bluegreen_core::error::ApiError;
use bluegreen_core::fallback::{next_step, Attempt, FallbackReason, Next};
use bluegreen_core::openai::ChatRequest;
use bluegreen_core::outcome::{Outcome, StatusClass};
use bluegreen_core::request_id::{self, Issued};
use bluegreen_core::routing::RoutingDoc;
use bluegreen_core::split::{random_bucket, select, Selection};
use bluegreen_core::Environment;
use worker::{Context, Env, Headers, Method, Request, Response, ResponseBody};

use super::{headers, relay, Exchange};
use crate::error::Result;
use crate::http::{header, read_body};
use crate::kv;
use crate::runtime::{now_ms, Tag};
use crate::upstream::{self, Failure};

/// Handles one chat completion.
pub async fn chat_completions(
    mut req: Request,
    env: &Env,
    cfg: &Rc<Config>,
    tag: &Tag,
    ctx: &Context,
) -> Result<Response> {
    let started_ms = now_ms();
    let authorization = headers::authorize(&req, cfg)?;
    let forced = match header(&req, "x-bluegreen-environment") {
        Some(_) if !cfg.environment_override => {
            return Err(ApiError::environment_override_disabled().into())
        }
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
    let sent = headers::upstream(&req, authorization.as_deref())?;
    let attempts = Attempts {
        cfg,
        doc: &doc,
        chat: &chat,
        headers: &sent,
        forced: forced.is_some(),
        request_id: &tag.id,
    };
    let (served, environment, fallback) = attempts.run(selection.environment).await;
    let request_id = issue_id(
        cfg,
        tag,
        Issued {
            environment,
            version: doc.version,
            at_ms: started_ms,
            forced: forced.is_some(),
        },
    );
    let ex = Exchange {
        record: outcome(&request_id, started_ms, environment, &doc, selection, &chat),
        env: env.clone(),
        cfg: cfg.clone(),
    };
    respond(served, ex, fallback, ctx)
}

/// The id a chat completion answers with: sealed with who answered, for feedback
/// ([`bluegreen_core::request_id`]), when there is a key; the tag's random id otherwise. The
/// sealed id's nonce is the first half of the tag's id, which the logs of the attempts show.
fn issue_id(cfg: &Config, tag: &Tag, issued: Issued) -> String {
    let Some(key) = cfg.request_id_key.as_ref() else {
        return tag.id.clone();
    };
    let nonce = u64::from_str_radix(&tag.id[..16], 16).unwrap_or(tag.draw);
    request_id::issue(key, nonce, &issued)
}

/// The first outcome record of a request served by `environment`.
fn outcome(
    request_id: &str,
    at_ms: u64,
    environment: Environment,
    doc: &RoutingDoc,
    selection: Selection,
    chat: &ChatRequest,
) -> Outcome {
    Outcome {
        request_id: request_id.to_string(),
        at_ms,
        environment,
        model: doc.model_for(environment).to_string(),
        basis: selection.basis,
        routing_version: doc.version,
        stream: chat.stream,
        status: 0,
        class: StatusClass::Ok,
        fallback: None,
        first_byte_ms: None,
        total_ms: 0,
        usage: None,
        interrupted: false,
        defect: None,
        client_gone: false,
    }
}

/// What every attempt of one request shares.
struct Attempts<'a> {
    cfg: &'a Config,
    doc: &'a RoutingDoc,
    chat: &'a ChatRequest<'a>,
    headers: &'a Headers,
    forced: bool,
    request_id: &'a str,
}

/// The serving attempt: what it got, and the core's word on it.
struct Served {
    result: Result<Response, Failure>,
    attempt: Attempt,
    next: Next,
}

impl Attempts<'_> {
    /// Tries `environment`, then blue once when the core's fallback policy says so. Returns
    /// the serving attempt, the environment that served and why green was abandoned.
    async fn run(
        &self,
        mut environment: Environment,
    ) -> (Served, Environment, Option<FallbackReason>) {
        let mut fallback = None;
        loop {
            let served = self.send(environment).await;
            let Next::RetryOnBlue(reason) = served.next else {
                return (served, environment, fallback);
            };
            let model = self.doc.model_for(environment);
            let id = self.request_id;
            worker::console_warn!(
                "request {id}: green ({model}) failed with {reason}; retrying on blue"
            );
            if let Ok(resp) = served.result {
                discard_body(resp);
            }
            fallback = Some(reason);
            environment = Environment::Blue;
        }
    }

    /// One attempt at `environment`'s model.
    async fn send(&self, environment: Environment) -> Served {
        let model = self.doc.model_for(environment);
        let payload = js_sys::Uint8Array::from(self.chat.with_model(model).as_slice());
        let result = upstream::send(
            &self.cfg.chat_url,
            Method::Post,
            self.headers,
            Some(payload.into()),
            self.cfg.first_byte_timeout_ms,
        )
        .await;
        let attempt = match &result {
            Ok(resp) => Attempt::Status(resp.status_code()),
            Err(Failure::Timeout) => Attempt::Timeout,
            Err(Failure::Connect(_)) => Attempt::Connect,
        };
        let next = next_step(environment, self.forced, attempt);
        Served {
            result,
            attempt,
            next,
        }
    }
}

/// Lets go of a response we will not return: cancelling its body frees the connection now
/// rather than when the garbage collector gets to it.
fn discard_body(resp: Response) {
    if let ResponseBody::Stream(stream) = resp.into_parts().1 {
        let _ = stream.cancel();
    }
}

/// Answers with the serving attempt: the upstream's response, or our 502/504 when it gave none.
fn respond(
    served: Served,
    mut ex: Exchange,
    fallback: Option<FallbackReason>,
    ctx: &Context,
) -> Result<Response> {
    ex.record.class = StatusClass::of(served.attempt);
    ex.record.fallback = fallback;
    let model = ex.record.model.clone();
    let timeout_ms = ex.cfg.first_byte_timeout_ms;
    match (served.next, served.result) {
        (Next::Serve, Ok(resp)) => serve(resp, ex, ctx),
        (_, Err(Failure::Connect(detail))) => {
            failure(&ApiError::upstream_unreachable(&model, &detail), ex, ctx)
        }
        (_, _) => failure(&ApiError::upstream_timeout(&model, timeout_ms), ex, ctx),
    }
}

/// Returns the serving upstream response: a stream relayed event by event, anything else
/// passed through as the runtime's own body.
fn serve(resp: Response, mut ex: Exchange, ctx: &Context) -> Result<Response> {
    let status = resp.status_code();
    ex.record.status = status;
    ex.record.first_byte_ms = Some(ex.elapsed_ms());
    let builder = Response::builder()
        .with_status(status)
        .with_headers(ex.response_headers(resp.headers())?);
    let is_sse = header_of(&resp, "content-type")
        .is_some_and(|ct| ct.trim_start().starts_with("text/event-stream"));
    if ex.record.stream && is_sse {
        relay::stream(builder, resp, ex, ctx)
    } else {
        relay::body(builder, resp, ex, ctx)
    }
}

fn header_of(resp: &Response, name: &str) -> Option<String> {
    resp.headers().get(name).ok().flatten()
}

/// Our own answer when the serving attempt produced no usable response (502/504), with the
/// routing headers, after accounting for it.
fn failure(err: &ApiError, mut ex: Exchange, ctx: &Context) -> Result<Response> {
    ex.record.status = err.status;
    let json = Headers::new();
    let headers = json
        .set("content-type", "application/json")
        .map_err(Into::into)
        .and_then(|()| ex.response_headers(&json));
    // Counted whether or not the headers could be built: a request is never lost to our own
    // error.
    ex.settle_now(ctx);
    let headers = headers?;
    Ok(Response::builder()
        .with_status(err.status)
        .with_headers(headers)
        .fixed(err.to_json().into_bytes()))
}
