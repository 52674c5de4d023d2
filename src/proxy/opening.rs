//! A streamed answer's opening: reads the upstream's SSE body until the core's [`Opening`]
//! has judged its first event, racing each read against the first-event deadline.
//!
//! Nothing reaches the client here: the router commits to a stream only once its first event
//! is an answer's (or the upstream, alive with keep-alives, reached the deadline), so that an
//! in-band error, or a stream that ends, breaks or stays silent before its first event, is a
//! failed attempt that green can still fall back from.

use std::time::Duration;

use bluegreen_core::api::sse::opening::{AtDeadline, Judged, NoAnswer, Opening};
use bluegreen_core::api::Api;
use bluegreen_core::request::breaker::Shed;
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use worker::{ByteStream, Delay};

use crate::breaker::Watch;
use crate::runtime::now_ms;

/// How a stream's opening came out.
pub enum Opened {
    /// Commit to this stream: the bytes read so far (forwarded first) and the rest of it.
    Answer { held: Vec<u8>, rest: ByteStream },
    /// The attempt failed before its first event; the upstream stream is cancelled.
    Failed(NoAnswer),
    /// No first event by the deadline; the upstream stream is cancelled.
    TimedOut,
    /// The green breaker gave the attempt up while it waited; the upstream stream is cancelled.
    Abandoned(Shed),
}

/// Reads `upstream` (an `api` attempt sent at `sent_at_ms`) until an event that carries the
/// answer (or a failure) is judged or
/// `limit_ms` from the send has passed. A green attempt the breaker watches is also woken when
/// the breaker asks to look at it again, and given up when it says so.
pub async fn read(
    api: Api,
    mut upstream: ByteStream,
    sent_at_ms: u64,
    limit_ms: u64,
    mut watch: Option<&mut Watch>,
) -> Opened {
    let mut opening = Opening::new(api, sent_at_ms, limit_ms);
    let limit_at = sent_at_ms.saturating_add(limit_ms);
    let mut wake = None;
    if let Some(w) = watch.as_deref_mut() {
        match w.next(now_ms(), limit_at) {
            Ok(at) => wake = at,
            Err(shed) => return Opened::Abandoned(shed),
        }
    }
    // One timer at a time: until the deadline, or the breaker's next look when that is sooner.
    let mut timer = Box::pin(delay(until(&opening, wake, now_ms())));
    loop {
        let judged = match select(upstream.next(), &mut timer).await {
            Either::Left((Some(Ok(chunk)), _)) => match opening.push(chunk) {
                Some(judged) => judged,
                None => continue,
            },
            Either::Left((Some(Err(e)), _)) => Judged::Failed(NoAnswer::Broke(e.to_string())),
            Either::Left((None, _)) => opening.ended(),
            Either::Right(_) => {
                let now = now_ms();
                if let (Some(w), Some(at)) = (watch.as_deref_mut(), wake) {
                    if now >= at {
                        match w.next(now, limit_at) {
                            Ok(at) => wake = at,
                            Err(shed) => return Opened::Abandoned(shed),
                        }
                    }
                }
                match opening.remaining_ms(now) {
                    // The clock read a little short of the deadline, or the breaker's look
                    // came first: wait out the rest.
                    left if left > 0 => {
                        timer = Box::pin(delay(until(&opening, wake, now)));
                        continue;
                    }
                    _ => match opening.at_deadline() {
                        AtDeadline::Commit => Judged::Answer,
                        AtDeadline::TimedOut => return Opened::TimedOut,
                    },
                }
            }
        };
        // Dropping the upstream stream (on every path but an answer) cancels it.
        return match judged {
            Judged::Answer => Opened::Answer {
                held: opening.into_held(),
                rest: upstream,
            },
            Judged::Failed(why) => Opened::Failed(why),
        };
    }
}

/// Milliseconds from `now` to the opening's deadline or the breaker's next look (`wake`),
/// whichever is sooner.
fn until(opening: &Opening, wake: Option<u64>, now: u64) -> u64 {
    let left = opening.remaining_ms(now);
    wake.map_or(left, |at| left.min(at.saturating_sub(now).max(1)))
}

fn delay(ms: u64) -> Delay {
    Delay::from(Duration::from_millis(ms))
}
