//! A copy's answer read to its end, as the live path would judge it, and discarded: what a
//! shadow copy (`super::shadow`) and a grader's reference copy (`super::judge`) learn from the
//! answers no client gets.

use bluegreen_core::api::defects::{classify_answer, Expectations};
use bluegreen_core::api::sse::SseRelay;
use bluegreen_core::api::usage::{usage_of, Usage};
use bluegreen_core::api::Api;
use bluegreen_core::config::Config;
use bluegreen_core::request::idle::{Idle, IdleClock};
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use std::time::Duration;
use worker::{ByteStream, Delay, ResponseBody};

use super::attempt::{NoReply, Reply};
use super::relay::read_all;
use crate::runtime::now_ms;

/// Reads green's answer to a copy to its end, as the live path would judge it: a stream's
/// events, or a successful body whole (its usage and defect); `None` when there is nothing to
/// read (no answer, or an unsuccessful one, whose body is let go).
/// With `text`, the answer's text is kept as well, for the grader.
pub(super) async fn read_answer(
    result: Result<Reply, NoReply>,
    status: u16,
    want: Expectations,
    api: Api,
    cfg: &Config,
    text: bool,
) -> Option<Read> {
    match result {
        Ok(Reply::Stream { held, rest, .. }) => {
            let text = text.then_some(api);
            Some(drain_stream(held, rest, want, cfg.stream_idle_timeout_ms, text).await)
        }
        Ok(Reply::Whole { body, .. }) => Some(Read::body(&body, &want, api, text)),
        Ok(Reply::Plain(resp)) => match resp.into_parts().1 {
            ResponseBody::Stream(body) if (200..300).contains(&status) => {
                Some(match read_all(&body).await {
                    Ok(bytes) => Read::body(&bytes, &want, api, text),
                    Err(_) => Read {
                        interrupted: true,
                        not_an_answer: false,
                        usage: None,
                        defect: None,
                        vector_length: None,
                        text: None,
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

/// What reading an answer to its end learned.
pub(super) struct Read {
    pub(super) interrupted: bool,
    /// A body served unread (past the bound) that is not the API's answer object.
    pub(super) not_an_answer: bool,
    pub(super) usage: Option<Usage>,
    pub(super) defect: Option<bluegreen_core::api::defects::Defect>,
    /// An embeddings answer's vector length.
    pub(super) vector_length: Option<u64>,
    /// The answer's text, when asked for (for the grader).
    pub(super) text: Option<String>,
}

impl Read {
    /// A whole non-streamed answer's usage, and its defect (or that it is not an answer); its
    /// text too with `text`.
    fn body(bytes: &[u8], want: &Expectations, api: Api, text: bool) -> Read {
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
            text: text
                .then(|| bluegreen_core::api::text::answer(api, bytes))
                .flatten(),
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
    text: Option<Api>,
) -> Read {
    let mut relay = SseRelay::checking(want);
    if let Some(api) = text {
        relay = relay.gathering_text(api);
    }
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
        text: relay.text(),
    }
}
