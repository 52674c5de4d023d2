//! The routed APIs' one request path: `POST /v1/chat/completions`, `POST /v1/responses` and
//! `POST /v1/embeddings` (on an embeddings route), each API's shapes plugged in from the core
//! ([`Api`]).
//!
//! Order of work: authenticate, read the environment override, read the body (bounded),
//! validate it, pick the environment from the cached routing document, try it, and — when the
//! core's fallback policy says so — try blue once. An attempt at a stream is judged by its first
//! event ([`super::opening`]) before the router commits to it; a non-streamed one by its
//! headers. The serving response's body is relayed as it arrives ([`super::relay`]), and one
//! outcome record is accounted for once the upstream's last byte has been read.

use std::rc::Rc;

use bluegreen_core::api::defects::Expectations;
use bluegreen_core::api::request::ApiRequest;
use bluegreen_core::api::Api;
use bluegreen_core::config::Config;
use bluegreen_core::error::ApiError;
use bluegreen_core::request::fallback::{FallbackReason, Next};
use bluegreen_core::request::outcome::{Outcome, StatusClass};
use bluegreen_core::request::request_id::{self, Issued};
use bluegreen_core::request::split::{random_bucket, select, Basis};
use bluegreen_core::route::registry::{Route, RouteKind, RouteTable};
use bluegreen_core::Environment;
use worker::{Context, Env, Headers, Request, Response};

use super::attempt::{outcome, Attempts, NoReply, Reply, Served};
use super::{headers, judge, pass_through, relay, shadow, Exchange};
use crate::error::Result;
use crate::http::{header, read_body};
use crate::runtime::{now_ms, Tag};
use crate::{kv, routes};

/// Handles one call of a routed `api` (chat completions or the Responses API).
pub async fn routed(
    api: Api,
    mut req: Request,
    env: &Env,
    cfg: &Rc<Config>,
    tag: &Tag,
    ctx: &Context,
) -> Result<Response> {
    let started_ms = now_ms();
    let authorization = headers::authorize(&req, cfg)?;
    let forced = forced_environment(&req, cfg)?;
    let body = read_body(&mut req, cfg.max_body_bytes).await?;
    let call = ApiRequest::parse(api, &body)?;
    let table = routes::table(env, cfg).await.doc;
    let route = route_of(&table, &call, cfg)?;
    let inbound = Inbound::new(&req, started_ms, authorization, forced, &body);
    proceed(inbound, &call, route, env, cfg, tag, ctx).await
}

/// Handles `POST /v1/embeddings`: a call whose `model` names an embeddings route is routed
/// (blue serves it unless the client forces green; a shadow step copies it to green); any other
/// goes as the pass-through, unchanged and unjudged, as before embeddings routes. While no
/// route serves embeddings, the body is not even read.
pub async fn embeddings(
    mut req: Request,
    env: &Env,
    cfg: &Rc<Config>,
    tag: &Tag,
    ctx: &Context,
    path: &str,
    query: Option<&str>,
) -> Result<Response> {
    let started_ms = now_ms();
    let table = routes::table(env, cfg).await.doc;
    if !table.has_embeddings() {
        return pass_through(req, None, cfg, &tag.id, path, query).await;
    }
    let authorization = headers::authorize(&req, cfg)?;
    let body = read_body(&mut req, cfg.max_body_bytes).await?;
    let call = ApiRequest::parse(Api::Embeddings, &body).ok();
    let route = call
        .as_ref()
        .and_then(|c| table.embeddings_route(c.model.as_deref()));
    let (Some(call), Some(route)) = (call, route) else {
        return pass_through(req, Some(&body), cfg, &tag.id, path, query).await;
    };
    // Read only for a call the router routes: the pass-through never did.
    let forced = forced_environment(&req, cfg)?;
    let inbound = Inbound::new(&req, started_ms, authorization, forced, &body);
    proceed(inbound, &call, route, env, cfg, tag, ctx).await
}

/// A routed call as it came in, read and checked.
struct Inbound<'a> {
    req: &'a Request,
    started_ms: u64,
    /// What goes upstream as `authorization` ([`headers::authorize`]).
    authorization: Option<String>,
    /// The environment the client forced, if any.
    forced: Option<Environment>,
    body: &'a [u8],
}

impl<'a> Inbound<'a> {
    fn new(
        req: &'a Request,
        started_ms: u64,
        authorization: Option<String>,
        forced: Option<Environment>,
        body: &'a [u8],
    ) -> Inbound<'a> {
        Inbound {
            req,
            started_ms,
            authorization,
            forced,
            body,
        }
    }
}

/// Routes a read call to `route`: picks the environment, tries it (and blue, when the core's
/// fallback policy says so), starts a shadow step's copy, and answers.
async fn proceed(
    inbound: Inbound<'_>,
    call: &ApiRequest<'_>,
    route: &Route,
    env: &Env,
    cfg: &Rc<Config>,
    tag: &Tag,
    ctx: &Context,
) -> Result<Response> {
    let Inbound {
        req,
        started_ms,
        authorization,
        forced,
        body,
    } = inbound;
    let api = call.api;
    let route_name = route.def.name.as_str();
    let mut doc = kv::current(env, cfg, route).await;
    if api == Api::Embeddings && doc.green_percent != 0.0 {
        // Never split per request, whatever a document says: vectors of two models do not
        // compare.
        Rc::make_mut(&mut doc).green_percent = 0.0;
    }
    let sticky = sticky_key(req, call);
    let continues = call.continues.as_ref().map(|(environment, _)| *environment);
    let selection = select(
        &doc,
        forced,
        continues,
        sticky.as_deref(),
        random_bucket(tag.draw),
    );
    let sent = headers::upstream(req, &cfg.auth, authorization.as_deref())?;
    // A shadow step's copy starts beside blue's attempt, never before it in line; its pair for
    // the grader is blue's answer and green's copy.
    let (pair, judged) = shadow::start(
        api,
        route_name,
        &doc,
        selection,
        tag,
        body,
        &sent,
        cfg,
        env,
        ctx,
        || judge::draw(api, route_name, &doc, tag, body, &sent, false, cfg, env),
    );
    let attempts = Attempts {
        cfg,
        api,
        route: route_name,
        doc: &doc,
        request: call,
        headers: &sent,
        forced: forced.is_some(),
        request_id: &tag.id,
    };
    let (served, environment, fallback) = attempts.run(selection.environment).await;
    // A live step's pair: green's served answer and a reference copy to blue, started once
    // green's answer is committed to (never for a client's forced or a conversation's choice).
    let judged = match judged {
        Some(j) => Some(j),
        None if environment == Environment::Green
            && fallback.is_none()
            && served.is_answer()
            && matches!(selection.basis, Basis::Random | Basis::Sticky) =>
        {
            let j = judge::draw(api, route_name, &doc, tag, body, &sent, true, cfg, env);
            if let Some(j) = &j {
                judge::reference(j, &doc, ctx);
            }
            j
        }
        None => None,
    };
    let mut record = outcome(
        &tag.id,
        started_ms,
        route_name,
        environment,
        &doc,
        selection,
        call,
    );
    record.request_id = issue_id(cfg, tag, served.is_answer(), &record, forced.is_some());
    let ex = Exchange {
        record,
        want: Expectations::of(call),
        api,
        env: env.clone(),
        cfg: cfg.clone(),
        pair,
        judged,
        answer_text: None,
    };
    respond(served, ex, fallback, ctx)
}

/// What pins a user to one environment: `x-bluegreen-sticky-key`, else the body's `user`.
fn sticky_key(req: &Request, call: &ApiRequest) -> Option<String> {
    header(req, "x-bluegreen-sticky-key")
        .filter(|k| !k.is_empty())
        .or_else(|| call.user.clone())
}

/// The environment the client forced with `x-bluegreen-environment`, if it may.
fn forced_environment(req: &Request, cfg: &Config) -> Result<Option<Environment>> {
    match header(req, "x-bluegreen-environment") {
        Some(_) if !cfg.environment_override => {
            Err(ApiError::environment_override_disabled().into())
        }
        Some(v) => Ok(Some(
            Environment::parse(&v).ok_or_else(|| ApiError::bad_environment_header(&v))?,
        )),
        None => Ok(None),
    }
}

/// The route `call`'s `model` goes to, or OpenAI's 404 (a 400 without a `model`) when no route
/// takes it; a 400 when it names an embeddings route.
fn route_of<'t>(table: &'t RouteTable, call: &ApiRequest, cfg: &Config) -> Result<&'t Route> {
    let model = call.model.as_deref();
    let route = table
        .resolve(model, cfg.unknown_models)
        .ok_or_else(|| match model {
            Some(model) => ApiError::model_not_found(model),
            None => ApiError::invalid_field("model", "is required (a route's name)"),
        })?;
    if route.def.kind == RouteKind::Embeddings {
        return Err(ApiError::route_serves_embeddings(&route.def.name).into());
    }
    Ok(route)
}

/// The id a call answers with in `x-bluegreen-request-id`: sealed with who answered (the route, environment,
/// routing version and arrival of `record`, and whether the client `forced` it), for feedback
/// ([`bluegreen_core::request::request_id`]), when there is a key and the client gets an `answer` (a
/// 2xx); the tag's random id otherwise, so that a refused or failed request mints no id that
/// could be scored. The sealed id's nonce is the first half of the tag's id, which the logs of
/// the attempts show.
fn issue_id(cfg: &Config, tag: &Tag, answer: bool, record: &Outcome, forced: bool) -> String {
    let Some(key) = cfg.request_id_key.as_ref().filter(|_| answer) else {
        return tag.id.clone();
    };
    let nonce = u64::from_str_radix(&tag.id[..16], 16).unwrap_or(tag.draw);
    let issued = Issued {
        route: record.route.clone(),
        environment: record.environment,
        version: record.routing_version,
        at_ms: record.at_ms,
        forced,
    };
    request_id::issue(key, nonce, &issued)
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
    let timeout_ms = ex.cfg.attempt_limit_ms(ex.record.stream);
    match (served.next, served.result) {
        (Next::Serve, Ok(reply)) => serve(reply, ex, ctx),
        (_, Err(NoReply::Connect(detail))) => {
            let detail = ex.cfg.scrub_upstream(&detail);
            failure(&ApiError::upstream_unreachable(&model, &detail), ex, ctx)
        }
        (_, Err(NoReply::Stream(why))) => failure(
            &ApiError::upstream_stream_error(&model, &why.to_string()),
            ex,
            ctx,
        ),
        (_, Err(NoReply::NotAnAnswer(what))) => {
            failure(&ApiError::upstream_not_an_answer(&model, &what), ex, ctx)
        }
        (_, _) => failure(&ApiError::upstream_timeout(&model, timeout_ms), ex, ctx),
    }
}

/// Returns the serving upstream answer: a stream relayed event by event, anything else
/// passed through as the runtime's own body. The first byte is the stream's first event.
fn serve(reply: Reply, mut ex: Exchange, ctx: &Context) -> Result<Response> {
    let status = reply.status();
    ex.record.status = status;
    ex.record.first_byte_ms = Some(ex.elapsed_ms());
    let upstream = match &reply {
        Reply::Plain(resp) | Reply::Stream { resp, .. } => resp.headers(),
        Reply::Whole { headers, .. } => headers,
    };
    let builder = Response::builder()
        .with_status(status)
        .with_headers(ex.response_headers(upstream)?);
    match reply {
        Reply::Stream { held, rest, .. } => relay::stream(builder, held, rest, ex, ctx),
        Reply::Whole { body, .. } => Ok(relay::whole(builder, body, ex, ctx)),
        Reply::Plain(resp) => relay::body(builder, resp, ex, ctx),
    }
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
