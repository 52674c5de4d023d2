//! A shadow step's copies: the share of blue's requests that the routing document's
//! `shadow_percent` names is sent to green as well, from `ctx.waitUntil`, so that blue's answer
//! never waits for it. Green's answer is read to the end with the live path's classification
//! (the serving attempt's judgement, the stream's events or the whole body for usage and
//! defects) and discarded. Its outcome is paired with blue's outcome on the same request in a
//! [`Pair`] that both sides fill; whichever ends second adds the pair to the isolate's stats
//! batch. A copy still running [`BACKGROUND_GRACE_MS`] after blue's answer ended is given up
//! before the runtime cancels it, counted as `unfinished` and judged as far as it got (no
//! headers yet: a timeout; headers: slow). Which requests are copied, how many a minute, when
//! a copy gives up and what a given-up copy counts as are the core's
//! ([`bluegreen_core::shadow`]).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bluegreen_core::api::defects::{classify_answer, Expectations};
use bluegreen_core::api::request::ApiRequest;
use bluegreen_core::api::sse::SseRelay;
use bluegreen_core::api::usage::{usage_of, Usage};
use bluegreen_core::api::Api;
use bluegreen_core::config::Config;
use bluegreen_core::request::idle::{Idle, IdleClock};
use bluegreen_core::request::outcome::{Outcome, StatusClass};
use bluegreen_core::request::routing::RoutingDoc;
use bluegreen_core::request::split::{Basis, Selection};
use bluegreen_core::shadow::{
    given_up, look, shadowed, Budget, Look, ShadowEnd, Ticket, BACKGROUND_GRACE_MS, STALE_MS,
};
use bluegreen_core::Environment;
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use worker::{ByteStream, Context, Delay, Env, Headers, ResponseBody};

use super::attempt::{outcome, Attempts, NoReply, Reply};
use super::relay::read_all;
use crate::runtime::{now_ms, Tag};
use crate::{per_route, recorder};

thread_local! {
    static BUDGET: RefCell<Budget> = RefCell::new(Budget::default());
}

/// What green's side of a pair came to.
enum Green {
    /// Not copied: the route's `SHADOW_MAX_PER_MINUTE` in this isolate was spent.
    Capped,
    /// The copy ended (or was given up).
    Ended(ShadowEnd),
}

#[derive(Default)]
struct Sides {
    /// Blue's outcome, once its answer ended.
    blue: Option<Outcome>,
    /// When blue's answer ended (Unix ms).
    blue_done_ms: Option<u64>,
    green: Option<Green>,
}

/// One request's two sides, filled by blue's accounting and by the copy; shared by the two
/// futures of the same request in the same isolate.
#[derive(Clone)]
pub(super) struct Pair(Rc<RefCell<Sides>>);

impl Pair {
    /// Blue's answer ended with `record`: counts the pair when green's side is in. Returns the
    /// flush to await when this caller must send the batch.
    pub(super) fn blue_done(
        &self,
        record: &Outcome,
        cfg: &Config,
        env: &Env,
    ) -> Option<impl std::future::Future<Output = ()>> {
        let green = {
            let mut sides = self.0.borrow_mut();
            sides.blue = Some(record.clone());
            sides.blue_done_ms = Some(now_ms());
            sides.green.take()
        }?;
        record_pair(&green, record, cfg, env)
    }

    /// Green's side is in: counts the pair when blue's is.
    fn green_done(
        &self,
        green: Green,
        cfg: &Config,
        env: &Env,
    ) -> Option<impl std::future::Future<Output = ()>> {
        let blue = {
            let mut sides = self.0.borrow_mut();
            match sides.blue.take() {
                Some(blue) => blue,
                None => {
                    sides.green = Some(green);
                    return None;
                }
            }
        };
        record_pair(&green, &blue, cfg, env)
    }

    fn blue_done_ms(&self) -> Option<u64> {
        self.0.borrow().blue_done_ms
    }
}

fn record_pair(
    green: &Green,
    blue: &Outcome,
    cfg: &Config,
    env: &Env,
) -> Option<impl std::future::Future<Output = ()>> {
    let end = match green {
        Green::Capped => None,
        Green::Ended(end) => Some(end),
    };
    recorder::record_shadow(end, blue, cfg, env)
}

/// What a copy needs, owned: it outlives the request's handler.
struct Job {
    cfg: Rc<Config>,
    /// The API the request was sent to.
    api: Api,
    env: Env,
    route: String,
    doc: RoutingDoc,
    body: Vec<u8>,
    headers: Headers,
    /// The id of blue's request, for the logs.
    id: String,
}

/// Decides whether the request `selection` sent to blue is copied to green; when it is,
/// starts the copy in `ctx.wait_until` (or, past the isolate's bound, notes it as capped) and
/// returns the pair that blue's accounting fills.
#[allow(clippy::too_many_arguments)]
pub(super) fn start(
    api: Api,
    route: &str,
    doc: &RoutingDoc,
    selection: Selection,
    tag: &Tag,
    body: &[u8],
    headers: &Headers,
    cfg: &Rc<Config>,
    env: &Env,
    ctx: &Context,
) -> Option<Pair> {
    if !shadowed(doc.shadow_percent, selection, tag.shadow_draw) {
        return None;
    }
    let pair = Pair(Rc::default());
    let now = now_ms();
    let (reclaimed, ticket) = BUDGET.with(|b| {
        let mut b = b.borrow_mut();
        let reclaimed = b.reclaim(now);
        let ticket = per_route::with(route, |r| {
            b.take(
                &mut r.shadow_rate,
                now,
                cfg.shadow_max_per_minute,
                body.len(),
            )
        });
        (reclaimed, ticket)
    });
    if reclaimed > 0 {
        worker::console_warn!(
            "shadow: {reclaimed} copy place(s) held over {STALE_MS} ms taken back (the runtime cancelled their copies before they ended)"
        );
    }
    let Some(ticket) = ticket else {
        pair.0.borrow_mut().green = Some(Green::Capped);
        return Some(pair);
    };
    // Only a header object the runtime cannot copy would fail here: then no copy.
    let Ok(headers) = super::headers::for_copy(headers) else {
        BUDGET.with(|b| b.borrow_mut().finished(ticket));
        return None;
    };
    let job = Job {
        cfg: cfg.clone(),
        api,
        env: env.clone(),
        route: route.to_string(),
        doc: doc.clone(),
        body: body.to_vec(),
        headers,
        id: tag.id.clone(),
    };
    ctx.wait_until(copy(job, pair.clone(), Running(ticket)));
    Some(pair)
}

/// Hands a copy's place back to the isolate's budget when the copy ends, however it ends
/// (a copy the runtime cancels without dropping it gets its place back after
/// [`STALE_MS`]).
struct Running(Ticket);

impl Drop for Running {
    fn drop(&mut self) {
        BUDGET.with(|b| b.borrow_mut().finished(self.0));
    }
}

/// How far a copy got: its record so far, and whether green's response headers came.
#[derive(Default)]
struct Progress {
    record: Option<Outcome>,
    headers: bool,
}

/// Sends the copy, reads green's answer to the end (or gives up), and hands green's side to
/// the pair.
async fn copy(mut job: Job, pair: Pair, running: Running) {
    let body = std::mem::take(&mut job.body);
    let progress = RefCell::new(Progress::default());
    let answer = Box::pin(answer(&job, body, &progress));
    let limit = Box::pin(limit(&pair));
    let end = match select(answer, limit).await {
        Either::Left((Some(outcome), _)) => {
            worker::console_log!("shadow {}", outcome.to_json());
            ShadowEnd::Finished(outcome)
        }
        Either::Left((None, _)) => ShadowEnd::Unfinished,
        // Dropping the copy's future cancels its body read; the runtime ends its fetch.
        Either::Right(_) => {
            let (id, route) = (&job.id, &job.route);
            let Progress { record, headers } = progress.take();
            worker::console_warn!(
                "request {id} (route {route}): shadow copy unfinished {BACKGROUND_GRACE_MS} ms after blue's answer (green's headers came: {headers}); given up"
            );
            match record {
                Some(partial) => ShadowEnd::GivenUp(given_up(partial, headers, now_ms())),
                None => ShadowEnd::Unfinished,
            }
        }
    };
    // The copy is over: its place goes back before any flush is waited for.
    drop(running);
    if let Some(flush) = pair.green_done(Green::Ended(end), &job.cfg, &job.env) {
        flush.await;
    }
}

/// Resolves when the copy must give up: [`BACKGROUND_GRACE_MS`] after blue's answer ended.
async fn limit(pair: &Pair) {
    while let Look::WaitMs(ms) = look(now_ms(), pair.blue_done_ms()) {
        Delay::from(Duration::from_millis(ms)).await;
    }
}

/// Green's answer to the copy, as an outcome record built like the live path's; `None` for a
/// body that does not parse (it did on the request path, so never). Keeps `progress` up to date
/// for a copy given up on the way (no borrow is held across an await).
/// Reads green's answer to a copy to its end, as the live path would judge it: a stream's
/// events, or a successful body whole (its usage and defect); `None` when there is nothing to
/// read (no answer, or an unsuccessful one, whose body is let go).
async fn read_answer(
    result: Result<Reply, NoReply>,
    status: u16,
    want: Expectations,
    api: Api,
    cfg: &Config,
) -> Option<Read> {
    match result {
        Ok(Reply::Stream { held, rest, .. }) => {
            Some(drain_stream(held, rest, want, cfg.stream_idle_timeout_ms).await)
        }
        Ok(Reply::Whole { body, .. }) => Some(Read::body(&body, &want, api)),
        Ok(Reply::Plain(resp)) => match resp.into_parts().1 {
            ResponseBody::Stream(body) if (200..300).contains(&status) => {
                Some(match read_all(&body).await {
                    Ok(bytes) => Read::body(&bytes, &want, api),
                    Err(_) => Read {
                        interrupted: true,
                        not_an_answer: false,
                        usage: None,
                        defect: None,
                        vector_length: None,
                    },
                })
            }
            ResponseBody::Stream(body) => {
                let _ = body.cancel();
                None
            }
            _ => None,
        },
        Err(_) => None,
    }
}

async fn answer(job: &Job, body: Vec<u8>, progress: &RefCell<Progress>) -> Option<Outcome> {
    let started_ms = now_ms();
    let call = ApiRequest::parse(job.api, &body).ok()?;
    let green = Selection {
        environment: Environment::Green,
        basis: Basis::Random,
    };
    let mut record = outcome(
        &job.id,
        started_ms,
        &job.route,
        Environment::Green,
        &job.doc,
        green,
        &call,
    );
    progress.borrow_mut().record = Some(record.clone());
    let want = Expectations::of(&call);
    let attempts = Attempts {
        cfg: &job.cfg,
        api: job.api,
        route: &job.route,
        doc: &job.doc,
        request: &call,
        headers: &job.headers,
        forced: false,
        request_id: &job.id,
    };
    // Unwatched: a copy never moves the green breaker.
    let served = attempts.send(Environment::Green, None).await;
    // Sent: the request's body is not needed while green's answer is read.
    drop(call);
    drop(body);
    record.class = StatusClass::of(served.attempt);
    record.status = match &served.result {
        Ok(reply) => reply.status(),
        Err(NoReply::Timeout | NoReply::Abandoned(_)) => 504,
        Err(NoReply::Connect(_) | NoReply::Stream(_) | NoReply::NotAnAnswer(_)) => 502,
    };
    if served.result.is_ok() {
        record.first_byte_ms = Some(now_ms().saturating_sub(started_ms));
    }
    *progress.borrow_mut() = Progress {
        record: Some(record.clone()),
        headers: served.result.is_ok(),
    };
    let read = read_answer(served.result, record.status, want, job.api, &job.cfg).await;
    if let Some(read) = read {
        if read.not_an_answer {
            record.class = StatusClass::NotAnAnswer;
        }
        record.interrupted = read.interrupted;
        record.usage = read.usage;
        record.defect = read.defect;
        record.vector_length = read.vector_length;
    }
    record.total_ms = now_ms().saturating_sub(started_ms);
    Some(record)
}

/// What reading an answer to its end learned.
struct Read {
    interrupted: bool,
    /// A body served unread (past the bound) that is not the API's answer object.
    not_an_answer: bool,
    usage: Option<Usage>,
    defect: Option<bluegreen_core::api::defects::Defect>,
    /// An embeddings answer's vector length.
    vector_length: Option<u64>,
}

impl Read {
    /// A whole non-streamed answer's usage, and its defect (or that it is not an answer).
    fn body(bytes: &[u8], want: &Expectations, api: Api) -> Read {
        let answer = api.answer_object(bytes).is_ok();
        let (defect, vector_length) = match answer {
            true => classify_answer(want, bytes),
            false => (None, None),
        };
        Read {
            interrupted: false,
            not_an_answer: !answer,
            usage: usage_of(bytes),
            defect,
            vector_length,
        }
    }
}

/// Reads a stream to its end through the live path's SSE relay (whose output, the bytes a
/// client would get, is dropped), cut like a live one after `idle_ms` of silence.
async fn drain_stream(
    held: Vec<u8>,
    mut rest: ByteStream,
    want: Expectations,
    idle_ms: u64,
) -> Read {
    let mut relay = SseRelay::checking(want);
    let _ = relay.push(held);
    let mut idle = IdleClock::new(now_ms(), idle_ms);
    let mut timer = Box::pin(Delay::from(Duration::from_millis(idle_ms)));
    let mut interrupted = false;
    loop {
        match select(rest.next(), &mut timer).await {
            Either::Left((Some(Ok(chunk)), _)) => {
                idle.heard(now_ms());
                let _ = relay.push(chunk);
            }
            Either::Left((Some(Err(_)), _)) => {
                interrupted = true;
                break;
            }
            Either::Left((None, _)) => {
                let _ = relay.finish();
                break;
            }
            Either::Right(_) => match idle.check(now_ms()) {
                Idle::CheckIn(ms) => timer = Box::pin(Delay::from(Duration::from_millis(ms))),
                Idle::Expired => {
                    interrupted = true;
                    break;
                }
            },
        }
    }
    interrupted |= relay.saw_error_event();
    Read {
        interrupted,
        not_an_answer: false,
        usage: relay.usage(),
        defect: if interrupted { None } else { relay.defect() },
        vector_length: None,
    }
}
