//! A streamed answer's opening: reads the upstream's SSE body until the core's [`Opening`]
//! has judged its first event, racing each read against the first-event deadline.
//!
//! Nothing reaches the client here: the router commits to a stream only once its first event
//! is an answer's (or the upstream, alive with keep-alives, reached the deadline), so that an
//! in-band error, or a stream that ends, breaks or stays silent before its first event, is a
//! failed attempt that green can still fall back from.

use std::time::Duration;

use bluegreen_core::sse::opening::{AtDeadline, Judged, NoAnswer, Opening};
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use worker::{ByteStream, Delay};

use crate::runtime::now_ms;

/// How a stream's opening came out.
pub enum Opened {
    /// Commit to this stream: the bytes read so far (forwarded first) and the rest of it.
    Answer { held: Vec<u8>, rest: ByteStream },
    /// The attempt failed before its first event; the upstream stream is cancelled.
    Failed(NoAnswer),
    /// No first event by the deadline; the upstream stream is cancelled.
    TimedOut,
}

/// Reads `upstream` (an attempt sent at `sent_at_ms`) until its first event is judged or
/// `limit_ms` from the send has passed.
pub async fn read(mut upstream: ByteStream, sent_at_ms: u64, limit_ms: u64) -> Opened {
    let mut opening = Opening::new(sent_at_ms, limit_ms);
    // One timer for the whole opening: the deadline does not move.
    let mut timer = Box::pin(delay(opening.remaining_ms(now_ms())));
    loop {
        let judged = match select(upstream.next(), &mut timer).await {
            Either::Left((Some(Ok(chunk)), _)) => match opening.push(chunk) {
                Some(judged) => judged,
                None => continue,
            },
            Either::Left((Some(Err(e)), _)) => Judged::Failed(NoAnswer::Broke(e.to_string())),
            Either::Left((None, _)) => opening.ended(),
            Either::Right(_) => match opening.remaining_ms(now_ms()) {
                // The clock read a little short of the deadline: wait out the rest.
                left if left > 0 => {
                    timer = Box::pin(delay(left));
                    continue;
                }
                _ => match opening.at_deadline() {
                    AtDeadline::Commit => Judged::Answer,
                    AtDeadline::TimedOut => return Opened::TimedOut,
                },
            },
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

fn delay(ms: u64) -> Delay {
    Delay::from(Duration::from_millis(ms))
}
