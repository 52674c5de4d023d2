//! Pairs of answers for the grader ([`bluegreen_core::judge`]), on the request path.
//!
//! While a rollout runs with a grader, the routing document carries it. A request whose pair is
//! drawn for the grader (the judge's `sample_percent`, within its route's `max_per_minute` in
//! this isolate, at most [`bluegreen_core::shadow::MAX_IN_FLIGHT`] at once over every route,
//! bodies up to [`bluegreen_core::shadow::MAX_COPY_BODY_BYTES`]) gets a [`Judged`] pair that both
//! answers fill:
//! - on a shadow step, blue's served answer and green's copy (`super::shadow`);
//! - on a live step, green's served answer and a **reference copy** sent to blue here, never
//!   served; it starts once green's answer is committed to, so a green that fails (and falls
//!   back to blue) costs no copy.
//!
//! Whichever side ends second sends the grader the conversation and both answers, as A and B in
//! the order the request's draw says (both orders at once with `both_orders`), from the same
//! `ctx.waitUntil` and within the same time as a shadow copy: [`BACKGROUND_GRACE_MS`] after the
//! served answer ended. The verdict (or `judge_failed`), the grader's usage priced at its model,
//! and a lost pair's texts go to the route's next stats batch. A pair one of whose sides has no
//! whole successful answer judges nothing.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bluegreen_core::api::request::ApiRequest;
use bluegreen_core::api::text;
use bluegreen_core::api::usage::Usage;
use bluegreen_core::api::Api;
use bluegreen_core::config::Config;
use bluegreen_core::judge::losses::Loss;
use bluegreen_core::judge::verdict::{self, combine, Judgement, Reading};
use bluegreen_core::judge::{prompt, sampled, JudgePolicy};
use bluegreen_core::request::routing::RoutingDoc;
use bluegreen_core::shadow::{Budget, Ticket, BACKGROUND_GRACE_MS};
use bluegreen_core::stats::judged::JudgedCounts;
use bluegreen_core::Environment;
use futures_util::future::{join, select, Either};
use worker::{Context, Delay, Env, Headers, Method};

use super::attempt::Attempts;
use super::drain::read_answer;
use crate::runtime::{now_ms, Tag};
use crate::upstream;
use crate::{per_route, recorder};

thread_local! {
    /// The isolate's places for pairs being judged (its memory bound: at most
    /// [`bluegreen_core::shadow::MAX_IN_FLIGHT`] at once over every route, each holding a request
    /// body and two answers). Each route's rate of pairs (its judge's `max_per_minute`) is in
    /// its [`per_route`] state.
    static PLACES: RefCell<Budget> = RefCell::default();
}

/// Most bytes of a grader's answer read: a verdict and a sentence.
const MAX_VERDICT_BYTES: usize = 64 * 1024;
/// A grader call never waits longer than this for its answer.
const MAX_GRADER_MS: u64 = 20_000;
/// Below this much time left, the grader is not called: the pair counts as `judge_failed`.
const MIN_GRADER_MS: u64 = 1_000;

/// What grading a pair needs, owned: it outlives the request's handler.
struct Grading {
    cfg: Rc<Config>,
    env: Env,
    route: String,
    api: Api,
    /// The request's body, shared with a live step's reference copy.
    body: Rc<[u8]>,
    headers: Headers,
    judge: JudgePolicy,
    id: String,
    minute: u64,
    version: u64,
    /// Whether green's answer goes in position A (the first order's).
    green_first: bool,
    /// Whether green's answer is the served one (a live step) or the copy's (a shadow step).
    green_served: bool,
    /// The pair's place among the isolate's, handed back when grading ends.
    _place: Place,
    /// Blue's model in the pair's split (a reference copy is priced at it), and what the
    /// reference copy used.
    blue_model: String,
    reference: Option<Usage>,
}

/// A pair's place among the isolate's, handed back when it is dropped.
struct Place(Ticket);

impl Drop for Place {
    fn drop(&mut self) {
        PLACES.with(|p| p.borrow_mut().finished(self.0));
    }
}

#[derive(Default)]
struct Sides {
    /// The served answer's text (`Some(None)`: it ended without a whole successful answer).
    served: Option<Option<String>>,
    /// When the served answer ended (Unix ms).
    served_done_ms: Option<u64>,
    /// The copy's answer text, the same way.
    copy: Option<Option<String>>,
    /// What blue reported for a live step's reference copy: its cost is the pair's.
    reference_usage: Option<Usage>,
    grading: Option<Grading>,
}

/// A request's pair for the grader, filled by the served answer's accounting and by the copy.
#[derive(Clone)]
pub(super) struct Judged(Rc<RefCell<Sides>>);

/// Draws whether `route`'s request (tagged `tag`, body `body`) is judged under `doc`'s grader,
/// green's answer being the served one (`green_served`, a live step) or a shadow copy's; the
/// pair when it is and the route's budget has room.
#[allow(clippy::too_many_arguments)]
pub(super) fn draw(
    api: Api,
    route: &str,
    doc: &RoutingDoc,
    tag: &Tag,
    body: &[u8],
    headers: &Headers,
    green_served: bool,
    cfg: &Rc<Config>,
    env: &Env,
) -> Option<Judged> {
    let judge = doc.judge.as_deref()?;
    if api == Api::Embeddings || !sampled(judge, tag.judge_draw) {
        return None;
    }
    let now = now_ms();
    let ticket = PLACES.with(|p| {
        let mut places = p.borrow_mut();
        places.reclaim(now);
        per_route::with(route, |r| {
            places.take(&mut r.judge_rate, now, judge.max_per_minute, body.len())
        })
    });
    let Some(ticket) = ticket else {
        worker::console_log!(
            "request {} (route {route}): pair not judged: the grader's budget of {} a minute is spent",
            tag.id,
            judge.max_per_minute
        );
        return None;
    };
    let place = Place(ticket);
    let headers = super::headers::for_copy(headers).ok()?;
    let grading = Grading {
        cfg: cfg.clone(),
        env: env.clone(),
        route: route.to_string(),
        api,
        body: Rc::from(body),
        headers,
        judge: judge.clone(),
        id: tag.id.clone(),
        minute: now / 60_000,
        version: doc.version,
        green_first: tag.judge_draw >> 63 == 0,
        green_served,
        _place: place,
        blue_model: doc.blue_model.clone(),
        reference: None,
    };
    Some(Judged(Rc::new(RefCell::new(Sides {
        grading: Some(grading),
        ..Sides::default()
    }))))
}

impl Judged {
    /// The served answer ended, with its text when it was a whole successful answer: grades
    /// the pair when the copy's side is in. Returns the work to run in the request's
    /// `waitUntil` when this caller must.
    pub(super) fn served_done(
        &self,
        text: Option<String>,
    ) -> Option<impl std::future::Future<Output = ()>> {
        let mut s = self.0.borrow_mut();
        s.served = Some(text);
        s.served_done_ms = Some(now_ms());
        drop(s);
        self.ready()
    }

    /// The copy ended, the same way.
    pub(super) fn copy_done(
        &self,
        text: Option<String>,
    ) -> Option<impl std::future::Future<Output = ()>> {
        self.0.borrow_mut().copy = Some(text);
        self.ready()
    }

    /// When the served answer ended, once it did.
    pub(super) fn served_done_ms(&self) -> Option<u64> {
        self.0.borrow().served_done_ms
    }

    /// Both sides in: the grading to run (nothing when either side has no answer).
    fn ready(&self) -> Option<impl std::future::Future<Output = ()>> {
        let mut s = self.0.borrow_mut();
        if s.served.is_none() || s.copy.is_none() {
            return None;
        }
        // Both sides are in: their texts move to the grading (never copied).
        let (served, copy) = (s.served.take().flatten(), s.copy.take().flatten());
        let done_ms = s.served_done_ms.unwrap_or_else(now_ms);
        let reference = s.reference_usage.take();
        let mut grading = s.grading.take()?;
        grading.reference = reference;
        match (served, copy) {
            (Some(served), Some(copy)) => {
                let (green, blue) = match grading.green_served {
                    true => (served, copy),
                    false => (copy, served),
                };
                Some(grade(grading, green, blue, done_ms))
            }
            _ => {
                worker::console_log!(
                    "request {} (route {}): pair not judged: one side has no whole answer",
                    grading.id,
                    grading.route
                );
                None
            }
        }
    }
}

/// Starts a live step's reference copy of green's request to blue, in `ctx.wait_until`.
pub(super) fn reference(judged: &Judged, doc: &RoutingDoc, ctx: &Context) {
    let (body, headers, api, cfg, route, id) = {
        let s = judged.0.borrow();
        let Some(g) = s.grading.as_ref() else {
            return;
        };
        let Ok(headers) = super::headers::for_copy(&g.headers) else {
            return;
        };
        (
            g.body.clone(),
            headers,
            g.api,
            g.cfg.clone(),
            g.route.clone(),
            g.id.clone(),
        )
    };
    let judged = judged.clone();
    let doc = doc.clone();
    ctx.wait_until(async move {
        let answer = Box::pin(reference_answer(api, &body, &headers, &cfg, &route, &doc, &id));
        let limit = Box::pin(limit(&judged));
        let (text, usage) = match select(answer, limit).await {
            Either::Left((read, _)) => read,
            Either::Right(_) => {
                worker::console_warn!(
                    "request {id} (route {route}): blue's reference answer unfinished {BACKGROUND_GRACE_MS} ms after green's answer; not judged"
                );
                (None, None)
            }
        };
        judged.0.borrow_mut().reference_usage = usage;
        if let Some(grading) = judged.copy_done(text) {
            grading.await;
        }
    });
}

/// Blue's answer to the request, as text (`None` when blue gave no whole successful answer),
/// and the usage blue reported for it (what the reference cost, whatever its answer).
async fn reference_answer(
    api: Api,
    body: &[u8],
    headers: &Headers,
    cfg: &Config,
    route: &str,
    doc: &RoutingDoc,
    id: &str,
) -> (Option<String>, Option<Usage>) {
    let Ok(call) = ApiRequest::parse(api, body) else {
        return (None, None);
    };
    let want = bluegreen_core::api::defects::Expectations::of(&call);
    let attempts = Attempts {
        cfg,
        api,
        route,
        doc,
        request: &call,
        headers,
        forced: false,
        request_id: id,
    };
    let served = attempts.send(Environment::Blue, None).await;
    let status = match &served.result {
        Ok(reply) => reply.status(),
        Err(_) => return (None, None),
    };
    let Some(read) = read_answer(served.result, status, want, api, cfg, true).await else {
        return (None, None);
    };
    let whole = !read.interrupted && !read.not_an_answer && (200..300).contains(&status);
    (read.text.filter(|_| whole), read.usage)
}

/// Resolves when the pair's copy must give up: [`BACKGROUND_GRACE_MS`] after the served answer
/// ended.
pub(super) async fn limit(judged: &Judged) {
    loop {
        let wait = match judged.served_done_ms() {
            None => 5_000,
            Some(done) => match (done + BACKGROUND_GRACE_MS).checked_sub(now_ms()) {
                Some(ms) if ms > 0 => ms,
                _ => return,
            },
        };
        Delay::from(Duration::from_millis(wait)).await;
    }
}

/// Sends the pair to the grader (in one order, or both at once) and counts what it said.
async fn grade(g: Grading, green: String, blue: String, served_done_ms: u64) {
    let conversation = text::conversation(g.api, &g.body).unwrap_or_default();
    let left = (served_done_ms + BACKGROUND_GRACE_MS).saturating_sub(now_ms());
    let ms = left.min(MAX_GRADER_MS);
    let orders: Vec<bool> = match g.judge.both_orders {
        true => vec![g.green_first, !g.green_first],
        false => vec![g.green_first],
    };
    let mut counts = JudgedCounts::default();
    if let Some(u) = &g.reference {
        counts.reference_prompt_tokens = u.prompt_tokens;
        counts.reference_completion_tokens = u.completion_tokens;
        counts.reference_cost_usd = g.cfg.prices.cost(&g.blue_model, u);
    }
    let readings = match ms >= MIN_GRADER_MS {
        true => {
            // Both orders at once, when asked.
            let call = |green_first| ask(&g, &conversation, &green, &blue, green_first, ms);
            match orders[..] {
                [first, second] => {
                    let (first, second) = join(call(first), call(second)).await;
                    vec![first, second]
                }
                _ => vec![call(orders[0]).await],
            }
        }
        false => vec![(Err(format!("{left} ms left for the grader")), None); orders.len()],
    };
    let mut judgements = Vec::new();
    let mut reason = String::new();
    for ((reading, usage), green_first) in readings.into_iter().zip(orders) {
        if let Some(u) = usage {
            counts.prompt_tokens = counts.prompt_tokens.saturating_add(u.prompt_tokens);
            counts.completion_tokens = counts.completion_tokens.saturating_add(u.completion_tokens);
            counts.cost_usd += g.cfg.prices.cost(&g.judge.model, &u);
        }
        match reading {
            Ok(Reading {
                preference,
                reason: why,
            }) => {
                if reason.is_empty() {
                    reason = why;
                }
                judgements.push(Judgement::of(preference, green_first));
            }
            Err(why) => {
                worker::console_warn!("request {} (route {}): judge_failed: {why}", g.id, g.route);
                judgements.push(Judgement::Failed);
            }
        }
    }
    let judgement = judgements
        .into_iter()
        .reduce(combine)
        .unwrap_or(Judgement::Failed);
    judgement.count(&mut counts);
    worker::console_log!(
        "judged {{\"request_id\":\"{}\",\"route\":\"{}\",\"grader\":\"{}\",\"green\":\"{}\"}}",
        g.id,
        g.route,
        g.judge.model,
        judgement.name()
    );
    let loss = (judgement == Judgement::Loss).then(|| {
        Loss::new(
            now_ms(),
            g.version,
            &g.id,
            &conversation,
            &green,
            &blue,
            &reason,
        )
    });
    if let Some(flush) =
        recorder::record_judged(&g.route, g.minute, g.version, counts, loss, &g.cfg, &g.env)
    {
        flush.await;
    }
}

/// One grader call: the verdict read (or why none), and the grader's usage when it said.
async fn ask(
    g: &Grading,
    conversation: &str,
    green: &str,
    blue: &str,
    green_first: bool,
    ms: u64,
) -> (
    Result<Reading, String>,
    Option<bluegreen_core::api::usage::Usage>,
) {
    let (a, b) = match green_first {
        true => (green, blue),
        false => (blue, green),
    };
    let body = prompt::request(
        &g.judge.model,
        g.judge.instructions.as_deref(),
        conversation,
        a,
        b,
    );
    let payload = js_sys::Uint8Array::from(body.as_slice());
    let started = now_ms();
    let resp = match upstream::send(
        &g.cfg.api_url(Api::Chat),
        Method::Post,
        &g.headers,
        Some(payload.into()),
        ms,
    )
    .await
    {
        Ok(resp) => resp,
        Err(upstream::Failure::Timeout) => return (Err(format!("no answer within {ms} ms")), None),
        Err(upstream::Failure::Connect(e)) => return (Err(g.cfg.scrub_upstream(&e)), None),
    };
    let status = resp.status_code();
    if !(200..300).contains(&status) {
        return (Err(format!("the grader answered {status}")), None);
    }
    let left = (started + ms).saturating_sub(now_ms()).max(1);
    match upstream::read_body(resp, MAX_VERDICT_BYTES, left).await {
        Ok(upstream::Body::Whole(bytes)) => {
            let (reading, usage) = verdict::read(&bytes);
            (reading.map_err(|e| e.to_string()), usage)
        }
        Ok(upstream::Body::Long(rest)) => {
            let _ = rest.cancel();
            (
                Err(format!(
                    "the grader's answer is over {MAX_VERDICT_BYTES} bytes"
                )),
                None,
            )
        }
        Err(_) => (
            Err("the grader's answer broke or came too late".into()),
            None,
        ),
    }
}
