//! Getting every outcome record to its route's rollout controller, off the response path.
//!
//! Records are added to the isolate's [`Outbox`] of their route (a few counter and histogram
//! updates in wasm, no I/O), and sent to that route's controller (or the stats queue) as one
//! batch at most `STATS_FLUSH_SECONDS` (1 s by default) later. Each route's outbox flushes on
//! its own, so that a route whose controller is unhealthy keeps its own batches and holds up no
//! other route's. The request that finds no flush scheduled becomes the flusher: inside its own
//! `ctx.wait_until` it waits out the interval, takes everything gathered, and posts it. Every
//! other request only adds its record. No request ever waits on another request's I/O (the
//! runtime would cancel it as hung), and the controller sees about one call per isolate per
//! interval whatever the traffic.
//!
//! A batch carries a random id. A failed post is retried with the same id, so the controller
//! counts a batch that arrives twice only once. A batch stays in the isolate's outbox until
//! the controller acknowledges it: one still undelivered after the retries, or whose flush was
//! cancelled, goes with the isolate's next flush. Which batch goes when, and which are given
//! up on, the core's [`Outbox`] decides; this module waits, posts and logs.

use std::time::Duration;

use bluegreen_core::config::Config;
use bluegreen_core::isolate::outbox::{within_budget, Claimed, Dropped, Outbox};
use bluegreen_core::judge::losses::Loss;
use bluegreen_core::request::outcome::Outcome;
use bluegreen_core::shadow::ShadowEnd;
use bluegreen_core::stats::judged::JudgedCounts;
use bluegreen_core::stats::BatchEntry;
use bluegreen_core::util::retry::Schedule;
use worker::{Delay, Env};

use crate::control::Delivered;
use crate::error::Result;
use crate::runtime::{now_ms, random_id};
use crate::{control, per_route, retry, stats_queue};

/// Runs `f` on `route`'s outbox, made on first use.
fn with_outbox<T>(route: &str, f: impl FnOnce(&mut Outbox) -> T) -> T {
    per_route::with(route, |s| f(&mut s.outbox))
}

/// Logs the record and adds it to this isolate's next batch. Returns the flush to run in this
/// request's `ctx.wait_until` when this request is the one that must send it.
pub fn record(
    record: &Outcome,
    cfg: &Config,
    env: &Env,
) -> Option<impl std::future::Future<Output = ()>> {
    worker::console_log!("outcome {}", record.to_json());
    let claimed = with_outbox(&record.route, |o| {
        o.add(record, &cfg.prices);
        o.claim_flush(now_ms(), cfg.stats_flush_ms)
    });
    claimed.then(|| flush(env.clone(), record.route.clone(), cfg.stats_flush_ms))
}

/// Adds a shadow copy's end (`None`: a request the cost bound kept from being copied), paired
/// with blue's outcome `blue`, to this isolate's next batch. Returns the flush to run when
/// this caller must send it.
pub fn record_shadow(
    green: Option<&ShadowEnd>,
    blue: &Outcome,
    cfg: &Config,
    env: &Env,
) -> Option<impl std::future::Future<Output = ()>> {
    let claimed = with_outbox(&blue.route, |o| {
        o.add_shadow(green, blue, &cfg.prices);
        o.claim_flush(now_ms(), cfg.stats_flush_ms)
    });
    claimed.then(|| flush(env.clone(), blue.route.clone(), cfg.stats_flush_ms))
}

/// Adds a stats entry made elsewhere (a refused feedback score's) to `route`'s next batch.
/// Returns the flush to run when this caller must send it.
pub fn record_entry(
    entry: &BatchEntry,
    route: &str,
    cfg: &Config,
    env: &Env,
) -> Option<impl std::future::Future<Output = ()>> {
    let claimed = with_outbox(route, |o| {
        o.add_entry(entry);
        o.claim_flush(now_ms(), cfg.stats_flush_ms)
    });
    claimed.then(|| flush(env.clone(), route.to_string(), cfg.stats_flush_ms))
}

/// Adds a pair the grader judged to `route`'s next batch, under the request's `minute` and
/// routing `version`. Returns the flush to run when this caller must send it.
#[allow(clippy::too_many_arguments)]
pub fn record_judged(
    route: &str,
    minute: u64,
    version: u64,
    judged: JudgedCounts,
    loss: Option<Loss>,
    cfg: &Config,
    env: &Env,
) -> Option<impl std::future::Future<Output = ()>> {
    let claimed = with_outbox(route, |o| {
        o.add_judged(minute, version, judged, loss);
        o.claim_flush(now_ms(), cfg.stats_flush_ms)
    });
    claimed.then(|| flush(env.clone(), route.to_string(), cfg.stats_flush_ms))
}

fn log_dropped(dropped: Dropped) {
    for (lost, what) in [
        (dropped.too_old, "undelivered for 50 minutes"),
        (dropped.too_many, "too many undelivered batches"),
    ] {
        if lost > 0 {
            worker::console_error!("stats of {lost} requests dropped: {what}");
        }
    }
}

/// Waits `after_ms` (`STATS_FLUSH_SECONDS`), then posts everything `route` gathered and
/// anything left undelivered, one batch at a time, stopping at the first batch the controller
/// does not take.
async fn flush(env: Env, route: String, after_ms: u64) {
    Delay::from(Duration::from_millis(after_ms)).await;
    let started = now_ms();
    let dropped = with_outbox(&route, |o| o.seal(started, random_id()));
    log_dropped(dropped);
    loop {
        let now = now_ms();
        if !within_budget(started, now) {
            break;
        }
        let Some(Claimed { id, requests, json }) = with_outbox(&route, |o| o.claim(now)) else {
            break;
        };
        let result = deliver(&env, &route, &json).await;
        with_outbox(&route, |o| match &result {
            Ok(_) => o.ack(&id),
            Err(_) => o.release(&id),
        });
        match result {
            Ok(Delivered::Taken | Delivered::Seen(_)) => {}
            Ok(Delivered::RouteGone) => {
                worker::console_warn!(
                    "stats batch {id} ({requests} requests) dropped: route {route} was deleted"
                );
            }
            Err(e) => {
                worker::console_error!(
                    "stats batch {id} ({requests} requests) of route {route} not delivered, kept \
                     for the next flush: {e}"
                );
                break;
            }
        }
    }
}

/// Sends one batch to the stats queue when one is bound (one call; the queue holds it from
/// then on), else posts it to `route`'s controller.
async fn deliver(env: &Env, route: &str, json: &str) -> Result<Delivered> {
    match stats_queue::send(env, route, json).await {
        Some(Ok(())) => Ok(Delivered::Taken),
        Some(Err(e)) => {
            worker::console_warn!("stats queue: send failed, posting instead: {e}");
            post(env, route, json).await
        }
        None => post(env, route, json).await,
    }
}

/// Posts one batch to `route`'s controller on the stats schedule; the same body every time.
async fn post(env: &Env, route: &str, json: &str) -> Result<Delivered> {
    let quiet = |_: usize, _: &str| {}; // only the final failure is logged, by the flush
    retry::run(
        &Schedule::STATS_BATCH,
        || control::post_stats(env, route, json),
        quiet,
    )
    .await
}
