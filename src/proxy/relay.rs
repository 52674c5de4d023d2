//! Getting the serving answer's body to the client while learning what the stats need from it:
//! a stream relayed event by event through the core's SSE relay, cut when the upstream stays
//! silent past the idle limit, or a non-streamed body passed through as the runtime's own stream
//! and teed, its usage read from the copy off the response path. Both account for the request
//! once the upstream's last byte was read.

use std::time::Duration;

use bluegreen_core::api::defects::classify_answer;
use bluegreen_core::api::responses::IdRewrite;
use bluegreen_core::api::sse::SseRelay;
use bluegreen_core::api::usage::usage_of;
use bluegreen_core::api::Api;
use bluegreen_core::request::idle::{Idle, IdleClock};
use bluegreen_core::request::outcome::{Outcome, StatusClass};
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{web_sys, ByteStream, Context, Delay, Response, ResponseBody, ResponseBuilder};

use super::Exchange;
use crate::error::Result;
use crate::runtime::now_ms;

/// A stream the router committed to: `held` (what judging its first event read) goes first,
/// then the rest, relayed from `ctx.wait_until`, pushed by the upstream rather than pulled by
/// the client, so that a client that goes away is noticed (its writes fail) and still
/// accounted for.
pub fn stream(
    builder: ResponseBuilder,
    held: Vec<u8>,
    rest: ByteStream,
    ex: Exchange,
    ctx: &Context,
) -> Result<Response> {
    let pipe = web_sys::TransformStream::new()?;
    let writer = pipe.writable().get_writer()?;
    ctx.wait_until(relay_sse(held, rest, writer, ex));
    Ok(builder.stream(pipe.readable()))
}

/// Not a stream, and not read before it was served (an unsuccessful answer, or one longer
/// than [`bluegreen_core::api::MAX_ANSWER_BYTES`]): the body goes to the client as the
/// runtime's own stream, never copied through wasm. A successful answer is teed, and read from
/// the second branch off the response path; any other answer is accounted for at once.
pub fn body(
    builder: ResponseBuilder,
    resp: Response,
    ex: Exchange,
    ctx: &Context,
) -> Result<Response> {
    let ok = (200..300).contains(&ex.record.status);
    let body = match resp.into_parts().1 {
        ResponseBody::Stream(stream) if ok => stream,
        other => {
            ex.settle_now(ctx);
            return Ok(builder.body(other));
        }
    };
    let branches = body.tee();
    let ours: web_sys::ReadableStream = branches.get(1).unchecked_into();
    ctx.wait_until(read_usage(ours, ex));
    Ok(builder.stream(branches.get(0).unchecked_into()))
}

/// A non-streamed answer read whole and judged an answer ([`super::attempt`]): its usage and
/// defect are read now, and it goes to the client from memory.
pub fn whole(builder: ResponseBuilder, body: Vec<u8>, mut ex: Exchange, ctx: &Context) -> Response {
    judge_body(&mut ex, &body);
    let body = match ex.api {
        Api::Responses => {
            let mut ids = IdRewrite::default();
            ids.learn(ex.record.environment, &body);
            ids.apply(body)
        }
        Api::Chat | Api::Embeddings => body,
    };
    ex.settle_now(ctx);
    builder.fixed(body)
}

/// Reads a whole answer for its usage and defect; one that is not the API's answer object
/// (only an answer too long to read before it was served can be) counts as `not_an_answer`.
fn judge_body(ex: &mut Exchange, bytes: &[u8]) {
    ex.record.usage = usage_of(bytes);
    match ex.api.answer_object(bytes) {
        Ok(()) => {
            (ex.record.defect, ex.record.vector_length) = classify_answer(&ex.want, bytes);
            if ex.judged.is_some() {
                ex.answer_text = bluegreen_core::api::text::answer(ex.api, bytes);
            }
        }
        Err(_) => ex.record.class = StatusClass::NotAnAnswer,
    }
}

/// Reads the teed copy of a non-streamed answer for its usage, then accounts for it.
async fn read_usage(ours: web_sys::ReadableStream, mut ex: Exchange) {
    match read_all(&ours).await {
        Ok(bytes) => judge_body(&mut ex, &bytes),
        Err(e) => {
            let r = &ex.record;
            worker::console_warn!(
                "request {} (route {}): response body cut: {e}",
                r.request_id,
                r.route
            );
            ex.record.interrupted = true;
        }
    }
    ex.settle().await;
}

/// Reads a whole body stream into memory (for the teed copy of a non-streamed answer).
pub(super) async fn read_all(stream: &web_sys::ReadableStream) -> Result<Vec<u8>> {
    let response = web_sys::Response::new_with_opt_readable_stream(Some(stream))?;
    let buffer = JsFuture::from(response.array_buffer()?).await?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// Relays an upstream SSE body into `writer`, event by event, and accounts for the request
/// when it ends. An upstream silent for `STREAM_IDLE_TIMEOUT_MS` is cut like a broken one: the
/// client gets the SSE `error` event and the request counts as interrupted. One timer runs at
/// a time, set again only when it fires (the core's [`IdleClock`] says for how long), never
/// per chunk.
/// The upstream's next chunk within the idle limit: `None` at its end, an error when it broke
/// or stayed silent for the whole limit (`timer` is the idle limit's, looked at when it fires;
/// `record` names the request and its route in the log).
async fn next_chunk(
    upstream: &mut ByteStream,
    idle: &mut IdleClock,
    timer: &mut std::pin::Pin<Box<Delay>>,
    record: &Outcome,
) -> Option<std::result::Result<Vec<u8>, String>> {
    loop {
        match select(upstream.next(), &mut *timer).await {
            Either::Left((read, _)) => {
                idle.heard(now_ms());
                return read.map(|r| r.map_err(|e| e.to_string()));
            }
            Either::Right(_) => match idle.check(now_ms()) {
                Idle::CheckIn(ms) => *timer = Box::pin(delay(ms)),
                Idle::Expired => {
                    let ms = idle.limit_ms();
                    worker::console_warn!(
                        "request {} (route {}): stream silent for {ms} ms; cut",
                        record.request_id,
                        record.route
                    );
                    return Some(Err(format!("no data for {ms} ms")));
                }
            },
        }
    }
}

async fn relay_sse(
    held: Vec<u8>,
    mut upstream: ByteStream,
    writer: web_sys::WritableStreamDefaultWriter,
    mut ex: Exchange,
) {
    let mut relay = SseRelay::checking(std::mem::take(&mut ex.want));
    if ex.api == Api::Responses {
        relay = relay.issuing_ids(ex.record.environment);
    }
    if ex.judged.is_some() {
        relay = relay.gathering_text(ex.api);
    }
    let write = |bytes: Vec<u8>| {
        let chunk = js_sys::Uint8Array::from(bytes.as_slice());
        JsFuture::from(writer.write_with_chunk(&chunk))
    };
    let mut idle = IdleClock::new(now_ms(), ex.cfg.stream_idle_timeout_ms);
    let mut timer = Box::pin(delay(ex.cfg.stream_idle_timeout_ms));
    let mut client_gone = false;
    let mut next = Some(Ok(held));
    loop {
        let read = match next.take() {
            Some(first) => Some(first),
            None => next_chunk(&mut upstream, &mut idle, &mut timer, &ex.record).await,
        };
        let (out, last) = match read {
            Some(Ok(chunk)) => (relay.push(chunk), false),
            Some(Err(e)) => {
                let (id, route) = (&ex.record.request_id, &ex.record.route);
                worker::console_warn!("request {id} (route {route}): stream interrupted: {e}");
                ex.record.interrupted = true;
                (relay.abort(&e.to_string()), true)
            }
            None => (relay.finish(), true),
        };
        if !out.is_empty() {
            if write(out).await.is_err() {
                client_gone = true;
                break;
            }
            // Time spent waiting for the client to take the bytes is not upstream silence.
            idle.heard(now_ms());
        }
        if last {
            break;
        }
    }
    if client_gone {
        // Dropping the upstream stream cancels it: the model stops generating for nobody.
        drop(upstream);
        ex.record.client_gone = true;
    } else {
        let _ = JsFuture::from(writer.close()).await;
    }
    // An in-band error event, relayed as it was, is a failure of the answer after it began.
    ex.record.interrupted |= relay.saw_error_event();
    ex.record.usage = relay.usage();
    // Only a whole answer is judged: a cut one is already an error, or the client's doing.
    if !ex.record.interrupted && !ex.record.client_gone {
        ex.record.defect = relay.defect();
        ex.answer_text = relay.text();
    }
    ex.settle().await;
}

fn delay(ms: u64) -> Delay {
    Delay::from(Duration::from_millis(ms))
}
