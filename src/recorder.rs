//! Getting every outcome record to the rollout controller, off the response path.
//!
//! Records are added to a per-isolate [`Accumulator`] (a few counter and histogram updates in
//! wasm, no I/O), and sent to the controller as one batch at most a second later. The request
//! that finds no flush scheduled becomes the flusher: inside its own `ctx.wait_until` it waits
//! out the second, takes everything gathered, and posts it. Every other request only adds its
//! record. No request ever waits on another request's I/O (the runtime would cancel it as
//! hung), and the controller sees about one call per isolate per second whatever the traffic.
//!
//! A batch carries a random id. A failed post is retried with the same id, so the controller
//! counts a batch that arrives twice only once. A batch stays in the isolate's list until the
//! controller acknowledges it: one still undelivered after the retries, or whose flush was
//! cancelled, goes with the isolate's next flush.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bluegreen_core::config::Config;
use bluegreen_core::outcome::Outcome;
use bluegreen_core::retry::Schedule;
use bluegreen_core::stats::Accumulator;
use worker::{Delay, Env};

use crate::error::Result;
use crate::runtime::{now_ms, random_id};
use crate::{control, retry};

/// How long records gather before a flush.
const FLUSH_AFTER: Duration = Duration::from_millis(1000);
/// A flush starts no new post after this long, leaving the rest for the next flush.
const FLUSH_BUDGET_MS: u64 = 20_000;
/// A batch claimed by a flush that was cancelled (its `waitUntil` ran out) may be claimed
/// again after this long.
const CLAIM_TTL_MS: u64 = 30_000;
/// Undelivered batches older than this are dropped (and logged): the controller remembers
/// batch ids for an hour, so an older batch could be counted twice if it had in fact landed.
const MAX_AGE_MS: u64 = 50 * 60_000;
/// Undelivered batches kept per isolate; beyond this the oldest are dropped and logged.
const MAX_PENDING: usize = 600;

/// A batch not yet acknowledged by the controller. It stays in the isolate's list until it is,
/// so a flush that is cancelled mid-post loses nothing: the batch is posted again later.
struct Pending {
    id: String,
    requests: u64,
    json: Rc<str>,
    created_ms: u64,
    /// Set while a flush is posting it.
    claimed_ms: Option<u64>,
}

#[derive(Default)]
struct Recorder {
    acc: Accumulator,
    /// A request has claimed the next flush.
    flush_claimed: bool,
    pending: Vec<Pending>,
}

thread_local! {
    static RECORDER: RefCell<Recorder> = RefCell::new(Recorder::default());
}

/// Logs the record and adds it to this isolate's next batch. Returns the flush to run in this
/// request's `ctx.wait_until` when this request is the one that must send it.
pub fn record(
    record: &Outcome,
    cfg: &Config,
    env: &Env,
) -> Option<impl std::future::Future<Output = ()>> {
    worker::console_log!("outcome {}", record.to_json());
    let claimed = RECORDER.with(|r| {
        let mut r = r.borrow_mut();
        r.acc.add(record, &cfg.prices);
        !std::mem::replace(&mut r.flush_claimed, true)
    });
    claimed.then(|| flush(env.clone()))
}

fn dropped(what: &str, batches: impl Iterator<Item = Pending>) {
    let lost: u64 = batches.map(|b| b.requests).sum();
    if lost > 0 {
        worker::console_error!("stats of {lost} requests dropped: {what}");
    }
}

/// Waits [`FLUSH_AFTER`], then posts everything gathered and anything left undelivered, one
/// batch at a time, stopping at the first batch the controller does not take.
async fn flush(env: Env) {
    Delay::from(FLUSH_AFTER).await;
    let started = now_ms();
    RECORDER.with(|r| {
        let mut r = r.borrow_mut();
        r.flush_claimed = false;
        if !r.acc.is_empty() {
            let batch = r.acc.take(random_id());
            let json = serde_json::to_string(&batch).expect("stats serialize");
            let requests = batch.requests();
            r.pending.push(Pending {
                id: batch.id,
                requests,
                json: json.into(),
                created_ms: started,
                claimed_ms: None,
            });
        }
        let (old, keep): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut r.pending)
            .into_iter()
            .partition(|p| started.saturating_sub(p.created_ms) > MAX_AGE_MS);
        r.pending = keep;
        dropped("undelivered for 50 minutes", old.into_iter());
        if r.pending.len() > MAX_PENDING {
            let excess = r.pending.len() - MAX_PENDING;
            let old: Vec<Pending> = r.pending.drain(..excess).collect();
            dropped("too many undelivered batches", old.into_iter());
        }
    });
    while now_ms().saturating_sub(started) < FLUSH_BUDGET_MS {
        let now = now_ms();
        let next = RECORDER.with(|r| {
            let mut r = r.borrow_mut();
            let p = r.pending.iter_mut().find(|p| {
                p.claimed_ms
                    .is_none_or(|c| now.saturating_sub(c) > CLAIM_TTL_MS)
            })?;
            p.claimed_ms = Some(now);
            Some((p.id.clone(), p.requests, p.json.clone()))
        });
        let Some((id, requests, json)) = next else {
            break;
        };
        let result = post(&env, &json).await;
        RECORDER.with(|r| {
            let mut r = r.borrow_mut();
            match &result {
                Ok(()) => r.pending.retain(|p| p.id != id),
                Err(_) => {
                    if let Some(p) = r.pending.iter_mut().find(|p| p.id == id) {
                        p.claimed_ms = None;
                    }
                }
            }
        });
        if let Err(e) = result {
            worker::console_error!(
                "stats batch {id} ({requests} requests) not delivered, kept for the next flush: {e}"
            );
            break;
        }
    }
}

/// Posts one batch to the controller on the stats schedule; the same body every time.
async fn post(env: &Env, json: &str) -> Result<()> {
    retry::run(&Schedule::STATS_BATCH, || control::post_stats(env, json)).await
}
