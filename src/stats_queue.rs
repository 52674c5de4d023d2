//! Stats through Cloudflare Queues, when a `STATS_QUEUE` producer binding exists: an isolate
//! sends each batch as one message instead of posting it to the route's controller
//! ([`send`]), and the queue's consumer, in this same Worker, merges a delivery per route and
//! posts one batch per route, acknowledging only what the controller took ([`consume`]).
//!
//! The queue holds a batch from the moment it is sent: an isolate evicted after sending loses
//! nothing, and a controller that refuses for a while is caught up when it recovers (the
//! messages are retried, then kept in the dead-letter queue). Every batch counts once however
//! often it is delivered: the controller keeps every batch id it counted, and a merged batch
//! that holds one it has counted is refused with those ids, acknowledged, and the rest merged
//! again. Which messages merge, and how, the core decides ([`bluegreen_core::isolate::queued`]).

use bluegreen_core::isolate::outbox::MAX_AGE_MS;
use bluegreen_core::isolate::queued::{envelope, merge, Merged, Queued};
use bluegreen_core::util::json;
use wasm_bindgen::JsValue;
use worker::{Env, MessageBatch, MessageExt, RawMessage};

use crate::control::{self, Delivered};
use crate::error::{Error, Result};
use crate::js;
use crate::runtime::now_ms;

/// The producer binding's name.
pub const BINDING: &str = "STATS_QUEUE";

/// How many times one route's merge is posted when the controller names parts it counted
/// before (each round acknowledges those and merges the rest): a third round would need
/// another consumer to deliver the same messages in between.
const ROUNDS: usize = 3;

/// How isolates' stats reach the controllers here: `queue` when this Worker has the stats queue
/// bound, else `direct`.
pub fn transport(env: &Env) -> &'static str {
    let bound = js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(BINDING))
        .is_ok_and(|q| !q.is_undefined() && !q.is_null());
    if bound {
        "queue"
    } else {
        "direct"
    }
}

/// Sends `route`'s batch (`json`) as one message; `None` when no queue is bound or the batch is
/// too big for a message (the caller posts it then).
pub async fn send(env: &Env, route: &str, json: &str) -> Option<Result<()>> {
    let text = envelope(route, now_ms(), json)?;
    let promise = js::queue_send(env.as_ref(), BINDING, &text)?;
    let sent = worker::wasm_bindgen_futures::JsFuture::from(promise).await;
    Some(
        sent.map(drop)
            .map_err(|e| Error::runtime("sending to the stats queue", format!("{e:?}"))),
    )
}

/// The queue's consumer: reads a delivery, merges it per route, posts each route's batch, and
/// acknowledges or retries every message. A message that cannot be read is acknowledged
/// (no retry could read it) and logged.
pub async fn consume(delivery: MessageBatch<JsValue>, env: &Env) {
    let raw: Vec<RawMessage> = delivery.raw_iter().collect();
    let mut read: Vec<(usize, Queued)> = Vec::with_capacity(raw.len());
    for (i, message) in raw.iter().enumerate() {
        let text = message.body().as_string();
        match text.as_deref().map(json::parse::<Queued>) {
            // The controller remembers a batch id for an hour: one older than an isolate keeps
            // its batches could count twice, so it is dropped, as an isolate drops it.
            Some(Ok(queued)) if now_ms().saturating_sub(queued.sent_ms) > MAX_AGE_MS => {
                worker::console_error!(
                    "stats queue: batch {} of route {} ({} requests) dropped: queued for over 50 \
                     minutes",
                    queued.batch.id,
                    queued.route,
                    queued.batch.requests()
                );
                message.ack();
            }
            Some(Ok(queued)) => read.push((i, queued)),
            Some(Err(e)) => {
                worker::console_error!(
                    "stats queue: message {} dropped, unreadable: {e}",
                    message.id()
                );
                message.ack();
            }
            None => {
                worker::console_error!("stats queue: message {} dropped, not text", message.id());
                message.ack();
            }
        }
    }
    let mut posts = 0;
    for merged in merge(read.iter().map(|(i, q)| (*i, q))) {
        posts += deliver(env, merged, &raw, &read).await;
    }
    worker::console_log!(
        "stats queue: delivery of {} messages merged into {posts} posts",
        raw.len()
    );
}

/// Posts one route's merged batch, then acknowledges its messages, or retries them when the
/// controller did not take it. Returns how many posts it made.
async fn deliver(
    env: &Env,
    mut merged: Merged,
    raw: &[RawMessage],
    read: &[(usize, Queued)],
) -> usize {
    let route = merged.route.clone();
    for round in 1..=ROUNDS {
        let json = match serde_json::to_string(&merged.batch) {
            Ok(json) => json,
            Err(e) => {
                let failed = Err(Error::Runtime(e.to_string()));
                settle(raw, &merged.members, failed, &route);
                return round - 1;
            }
        };
        let result = control::post_stats(env, &route, &json).await;
        let Ok(Delivered::Seen(ids)) = result else {
            settle(raw, &merged.members, result, &route);
            return round;
        };
        // Those were counted before: acknowledged; the others merge again.
        let (counted, rest): (Vec<usize>, Vec<usize>) = merged.members.iter().partition(|&&i| {
            read.iter()
                .any(|(j, q)| *j == i && ids.contains(&q.batch.id))
        });
        settle(raw, &counted, Ok(Delivered::Taken), &route);
        let again = read
            .iter()
            .filter(|(i, _)| rest.contains(i))
            .map(|(i, q)| (*i, q));
        match merge(again).pop() {
            Some(m) => merged = m,
            None => return round,
        }
    }
    let meanwhile = Err(Error::Runtime("parts counted meanwhile".into()));
    settle(raw, &merged.members, meanwhile, &route);
    ROUNDS
}

/// Acknowledges `members` when the controller took their batch (or the route is gone), retries
/// them otherwise.
fn settle(raw: &[RawMessage], members: &[usize], result: Result<Delivered>, route: &str) {
    match &result {
        Ok(Delivered::RouteGone) => {
            worker::console_warn!(
                "stats queue: {} messages of route {route} dropped: the route was deleted",
                members.len()
            );
        }
        Err(e) => {
            worker::console_error!(
                "stats queue: {} messages of route {route} retried: {e}",
                members.len()
            );
        }
        Ok(_) => {}
    }
    for &i in members {
        match result {
            Ok(_) => raw[i].ack(),
            Err(_) => raw[i].retry(),
        }
    }
}
