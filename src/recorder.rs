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
//! counts a batch that arrives twice only once; a batch still undelivered after the retries is
//! kept and goes with the isolate's next flush.

use std::cell::RefCell;
use std::time::Duration;

use bluegreen_core::config::Config;
use bluegreen_core::outcome::Outcome;
use bluegreen_core::stats::Accumulator;
use worker::{Delay, Env, Method, Request, RequestInit};

/// How long records gather before a flush.
const FLUSH_AFTER: Duration = Duration::from_millis(1000);
/// Waits between attempts at posting one flush; about 7 s in all, well inside the 30 s that
/// `waitUntil` allows after the response.
const RETRY_WAITS_MS: [u64; 3] = [250, 1500, 5000];
/// Undelivered batches kept per isolate; beyond this the oldest are dropped and logged.
const MAX_PENDING: usize = 600;

#[derive(Default)]
struct Recorder {
    acc: Accumulator,
    /// A request has claimed the next flush.
    flush_claimed: bool,
    /// Batches not yet acknowledged by the controller: (id, requests, JSON).
    pending: Vec<(String, u64, String)>,
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

/// Waits [`FLUSH_AFTER`], then sends everything gathered (and anything left undelivered).
async fn flush(env: Env) {
    Delay::from(FLUSH_AFTER).await;
    let batches = RECORDER.with(|r| {
        let mut r = r.borrow_mut();
        r.flush_claimed = false;
        if !r.acc.is_empty() {
            let batch = r.acc.take(crate::proxy::Tag::new().id);
            let json = serde_json::to_string(&batch).expect("stats serialize");
            let requests = batch.requests();
            r.pending.push((batch.id, requests, json));
        }
        std::mem::take(&mut r.pending)
    });
    let mut failed = Vec::new();
    for (id, requests, json) in batches {
        if let Err(e) = post(&env, &json).await {
            worker::console_error!(
                "stats batch {id} ({requests} requests) not delivered, kept for the next flush: {e}"
            );
            failed.push((id, requests, json));
        }
    }
    if !failed.is_empty() {
        RECORDER.with(|r| {
            let mut r = r.borrow_mut();
            failed.append(&mut r.pending);
            if failed.len() > MAX_PENDING {
                let dropped: u64 = failed[..failed.len() - MAX_PENDING]
                    .iter()
                    .map(|b| b.1)
                    .sum();
                worker::console_error!(
                    "stats of {dropped} requests dropped: the controller is unreachable"
                );
                failed.drain(..failed.len() - MAX_PENDING);
            }
            r.pending = failed;
        });
    }
}

/// Posts one batch to the controller, retrying; the same body every time.
async fn post(env: &Env, json: &str) -> Result<(), String> {
    let mut last = String::new();
    for (attempt, wait_ms) in std::iter::once(0).chain(RETRY_WAITS_MS).enumerate() {
        if wait_ms > 0 {
            Delay::from(Duration::from_millis(wait_ms)).await;
        }
        match send(env, json).await {
            Ok(()) => return Ok(()),
            Err(e) => last = format!("attempt {}: {e}", attempt + 1),
        }
    }
    Err(last)
}

async fn send(env: &Env, json: &str) -> Result<(), String> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(wasm_bindgen::JsValue::from_str(json)));
    let req =
        Request::new_with_init(crate::controller::STATS_URL, &init).map_err(|e| e.to_string())?;
    let resp = crate::controller::stub(env)
        .map_err(|e| e.to_string())?
        .fetch_with_request(req)
        .await
        .map_err(|e| e.to_string())?;
    match resp.status_code() {
        200..=299 => Ok(()),
        s => Err(format!("the controller answered {s}")),
    }
}
