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

use bluegreen_core::api::defects::Expectations;
use bluegreen_core::api::request::ApiRequest;
use bluegreen_core::api::Api;
use bluegreen_core::config::Config;
use bluegreen_core::request::outcome::{Outcome, StatusClass};
use bluegreen_core::request::routing::RoutingDoc;
use bluegreen_core::request::split::{Basis, Selection};
use bluegreen_core::shadow::{
    given_up, look, shadowed, Budget, Look, ShadowEnd, Ticket, BACKGROUND_GRACE_MS, STALE_MS,
};
use bluegreen_core::Environment;
use futures_util::future::{select, Either};
use worker::{Context, Delay, Env, Headers};

use super::attempt::{outcome, Attempts, NoReply};
use super::drain::read_answer;
use super::judge::Judged;
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
    /// When the pair goes to the grader: where green's answer text goes.
    judged: Option<Judged>,
}

/// Decides whether the request `selection` sent to blue is copied to green; when it is,
/// starts the copy in `ctx.wait_until` (or, past the isolate's bound, notes it as capped) and
/// returns the pair that blue's accounting fills, and the grader's pair `judged` draws once
/// the copy starts.
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
    judged: impl FnOnce() -> Option<Judged>,
) -> (Option<Pair>, Option<Judged>) {
    if !shadowed(doc.shadow_percent, selection, tag.shadow_draw) {
        return (None, None);
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
        return (Some(pair), None);
    };
    // Only a header object the runtime cannot copy would fail here: then no copy.
    let Ok(headers) = super::headers::for_copy(headers) else {
        BUDGET.with(|b| b.borrow_mut().finished(ticket));
        return (None, None);
    };
    // Drawn for the grader only now that the copy starts: a copy the bound kept from starting
    // spends none of the grader's budget.
    let judged = judged();
    let job = Job {
        cfg: cfg.clone(),
        api,
        env: env.clone(),
        route: route.to_string(),
        doc: doc.clone(),
        body: body.to_vec(),
        headers,
        id: tag.id.clone(),
        judged: judged.clone(),
    };
    ctx.wait_until(copy(job, pair.clone(), Running(ticket)));
    (Some(pair), judged)
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
    let mut text = None;
    let end = match select(answer, limit).await {
        Either::Left((Some((outcome, answer_text)), _)) => {
            worker::console_log!("shadow {}", outcome.to_json());
            text = answer_text;
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
    let text = match &end {
        ShadowEnd::Finished(_) => text,
        _ => None,
    };
    let grading = job.judged.as_ref().and_then(|j| j.copy_done(text));
    let flush = pair.green_done(Green::Ended(end), &job.cfg, &job.env);
    // The grader's call does not wait behind the flush.
    let flush = async {
        if let Some(flush) = flush {
            flush.await;
        }
    };
    let grading = async {
        if let Some(grading) = grading {
            grading.await;
        }
    };
    futures_util::future::join(flush, grading).await;
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
async fn answer(
    job: &Job,
    body: Vec<u8>,
    progress: &RefCell<Progress>,
) -> Option<(Outcome, Option<String>)> {
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
    let read = read_answer(
        served.result,
        record.status,
        want,
        job.api,
        &job.cfg,
        job.judged.is_some(),
    )
    .await;
    let mut text = None;
    if let Some(read) = read {
        text = read
            .text
            .filter(|_| !read.interrupted && !read.not_an_answer);
        if read.not_an_answer {
            record.class = StatusClass::NotAnAnswer;
        }
        record.interrupted = read.interrupted;
        record.usage = read.usage;
        record.defect = read.defect;
        record.vector_length = read.vector_length;
    }
    record.total_ms = now_ms().saturating_sub(started_ms);
    let ok = record.class == StatusClass::Ok && (200..300).contains(&record.status);
    Some((record, text.filter(|_| ok)))
}
