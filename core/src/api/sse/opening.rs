//! Judging a streamed answer by its first event that carries the answer, before the router
//! commits to it.
//!
//! Many OpenAI-compatible providers and gateways answer overload with `200 text/event-stream`
//! whose first event is `data: {"error": {...}}`; the headers say nothing. Others open with a
//! chunk that carries nothing yet (OpenAI's role chunk, the Responses API's `response.created`
//! and `response.in_progress`) and only then fail. So the router holds the stream's opening
//! bytes until an event that carries the answer has arrived whole, and judges each event as it
//! completes ([`Opening::push`]; what carries the answer is each API's word,
//! [`Api::stream_event`]): an event of the answer commits the router to this stream; an
//! in-band error, a terminal failure, or a stream that ends (`data: [DONE]` included) or breaks
//! before any part of the answer fails the attempt, while the client has seen nothing and
//! green can still fall back to blue. Keep-alive comments (`: ...`), events without data and
//! events that carry nothing yet are held, and are signs of life.
//!
//! The wait is bounded by a deadline: the attempt's start plus the first-byte limit
//! (`FIRST_BYTE_TIMEOUT_MS`), which covers the response headers and the first event together.
//! At the deadline ([`Opening::at_deadline`]) an upstream that sent keep-alives or events that
//! carry nothing yet (a role chunk, lifecycle events) is alive and thinking: the router commits
//! to it (the idle limit bounds it from then on) rather than turning a model that thinks
//! before it writes into a timeout; one that sent nothing has timed out.
//!
//! Time comes in from outside: the shell passes `now` and races its reads against the wait
//! [`Opening::remaining_ms`] names. No clock, no I/O here. The work is linear in the bytes
//! held, which [`MAX_OPENING`] bounds.

use std::fmt;

use super::scan::{Boundaries, Said};
use crate::api::{Api, Carries};

/// Most bytes held before an event that carries the answer is complete (256 KiB). An error
/// event is a few hundred bytes; the Responses API's lifecycle events echo the request's
/// instructions and tools, which can run to tens of KiB. An opening longer than this is
/// committed to rather than held further.
pub const MAX_OPENING: usize = 256 << 10;

/// A streamed attempt's opening, held until its first event is judged.
#[derive(Debug)]
pub struct Opening {
    /// Whose events these are: what carries the answer is the API's word.
    api: Api,
    /// Unix ms by which the first event must have arrived.
    deadline_ms: u64,
    /// Everything read so far, forwarded as it is once the router commits.
    held: Vec<u8>,
    /// Line and event boundaries after the last byte held.
    bounds: Boundaries,
    /// Where the event not yet complete starts in `held`.
    event_start: usize,
    /// A keep-alive (a comment, an event without data, or one that carries nothing of the
    /// answer yet) arrived whole.
    alive: bool,
    /// Bytes scanned or copied so far: the work, counted where it is done.
    #[cfg(test)]
    work: usize,
}

/// What the opening came to once it says something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    /// The first event is part of an answer: commit to this stream.
    Answer,
    /// The attempt failed before its first event.
    Failed(NoAnswer),
}

/// Why a streamed attempt gave nothing to commit to. Counted as the environment's
/// `stream_error`; green falls back to blue with reason `stream-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoAnswer {
    /// An in-band error event came before any part of the answer; holds its message.
    ErrorEvent(String),
    /// A terminal event that is no answer (the Responses API's `response.incomplete` with no
    /// output); holds what it said.
    Terminal(String),
    /// The stream ended cleanly (or said `data: [DONE]`) before any part of the answer.
    Ended,
    /// The stream broke before its first event; holds the runtime's message.
    Broke(String),
}

impl fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoAnswer::ErrorEvent(message) => write!(f, "began with an error event: {message}"),
            NoAnswer::Terminal(what) => write!(f, "ended without an answer: {what}"),
            NoAnswer::Ended => f.write_str("ended before any part of the answer"),
            NoAnswer::Broke(detail) => write!(f, "broke before its first event: {detail}"),
        }
    }
}

/// What to do when the first-event deadline passes with no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtDeadline {
    /// Keep-alives arrived: the upstream is alive and thinking; commit to the stream.
    Commit,
    /// Nothing but (perhaps) part of an event: the attempt timed out.
    TimedOut,
}

impl Opening {
    /// The opening of an `api` attempt sent at `sent_at_ms` whose first event must arrive
    /// within `limit_ms`.
    pub fn new(api: Api, sent_at_ms: u64, limit_ms: u64) -> Opening {
        Opening {
            api,
            deadline_ms: sent_at_ms.saturating_add(limit_ms),
            held: Vec::new(),
            bounds: Boundaries::default(),
            event_start: 0,
            alive: false,
            #[cfg(test)]
            work: 0,
        }
    }

    /// Milliseconds left before the deadline at `now_ms` (0 once it has passed): how long the
    /// shell may wait for the next chunk.
    pub fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.deadline_ms.saturating_sub(now_ms)
    }

    /// Takes the next chunk of the stream. `Some` once the first event has arrived whole (or
    /// [`MAX_OPENING`] bytes have without one); `None` while it has to wait for more.
    pub fn push(&mut self, chunk: Vec<u8>) -> Option<Judged> {
        let from = self.held.len();
        if self.held.is_empty() {
            self.held = chunk;
        } else {
            self.count(chunk.len());
            self.held.extend_from_slice(&chunk);
        }
        let mut judged = None;
        let (held, start, alive) = (&self.held, &mut self.event_start, &mut self.alive);
        let api = self.api;
        let mut read = 0;
        self.bounds.feed(&held[from..], |i| {
            let end = from + i;
            if judged.is_none() {
                read += end - *start;
                judged = judge(api, &held[*start..end]);
                *alive |= judged.is_none();
            }
            *start = end;
        });
        self.count(self.held.len() - from + read);
        judged.or_else(|| (self.held.len() > MAX_OPENING).then_some(Judged::Answer))
    }

    /// The stream ended cleanly with no first event judged. An event left without its blank
    /// line is judged as it is (clients would drop it, but it may be an error or an answer);
    /// with none, the stream ended before its first event.
    pub fn ended(&self) -> Judged {
        judge(self.api, &self.held[self.event_start..]).unwrap_or(Judged::Failed(NoAnswer::Ended))
    }

    /// The deadline passed with no first event.
    pub fn at_deadline(&self) -> AtDeadline {
        if self.alive {
            AtDeadline::Commit
        } else {
            AtDeadline::TimedOut
        }
    }

    /// The bytes read so far, for the relay once the router commits.
    pub fn into_held(self) -> Vec<u8> {
        self.held
    }

    #[inline]
    fn count(&mut self, _bytes: usize) {
        #[cfg(test)]
        {
            self.work += _bytes;
        }
    }
}

/// One complete event's verdict: `None` while it carries nothing of the answer (a keep-alive,
/// an event without data, a role chunk, a lifecycle event). An error event fails the attempt
/// whatever the API.
fn judge(api: Api, event: &[u8]) -> Option<Judged> {
    let mut said = Said::default();
    let mut carries = None;
    said.read_with(event, |data| {
        carries = Some(api.stream_event(data.trim_ascii_start()));
    });
    if let Some(message) = said.failure() {
        return Some(Judged::Failed(NoAnswer::ErrorEvent(message)));
    }
    match carries? {
        Carries::Answer => Some(Judged::Answer),
        Carries::Nothing => None,
        Carries::End => Some(Judged::Failed(NoAnswer::Ended)),
        Carries::Failed(what) => Some(Judged::Failed(NoAnswer::Terminal(what))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &[u8] =
        b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
    const CONTENT: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n";
    const OVERLOADED: &[u8] =
        b"data: {\"error\":{\"message\":\"Overloaded\",\"type\":\"server_error\",\"code\":529}}\n\n";

    fn failed(message: &str) -> Option<Judged> {
        Some(Judged::Failed(NoAnswer::ErrorEvent(message.into())))
    }

    #[test]
    fn the_first_event_that_carries_the_answer_decides() {
        // (chunks, verdict after the last chunk)
        let mut both = ROLE.to_vec();
        both.extend_from_slice(OVERLOADED);
        let typed: &[u8] =
            b"event: error\ndata: {\"type\":\"error\",\"error\":{\"message\":\"busy\"}}\n\n";
        let spread: &[u8] =
            b"data: {\"error\":\ndata:  {\"message\":\"Quota exceeded\",\ndata:   \"code\":429}}\n\n";
        let table: [(&[&[u8]], Option<Judged>); 13] = [
            // The role chunk carries nothing yet: held.
            (&[ROLE], None),
            (&[ROLE, CONTENT], Some(Judged::Answer)),
            (&[ROLE, b": ping\n\n", CONTENT], Some(Judged::Answer)),
            // An error whose JSON is spread over several `data:` lines of one event.
            (&[spread], failed("Quota exceeded")),
            (&[OVERLOADED], failed("Overloaded")),
            (&[typed], failed("busy")),
            // An error after the role chunk, before any part of the answer: a failure.
            (&[&both], failed("Overloaded")),
            // An error after the answer began is the relay's business.
            (&[CONTENT, OVERLOADED], Some(Judged::Answer)),
            // Keep-alives come first and say nothing; the event after them decides.
            (
                &[b": PROCESSING\n\n", b": PROCESSING\n\n", OVERLOADED],
                failed("Overloaded"),
            ),
            // Incomplete: wait.
            (&[b"data: {\"error\":{\"mess"], None),
            (&[b": ping\n\n"], None),
            // A stream that says it is over before any part of the answer is no answer.
            (
                &[b"data: [DONE]\n\n"],
                Some(Judged::Failed(NoAnswer::Ended)),
            ),
            (
                &[ROLE, b"data: [DONE]\n\n"],
                Some(Judged::Failed(NoAnswer::Ended)),
            ),
        ];
        for (chunks, expected) in table {
            let mut o = Opening::new(Api::Chat, 0, 1000);
            let mut got = None;
            // The shell stops at the first verdict.
            for c in chunks {
                got = o.push(c.to_vec());
                if got.is_some() {
                    break;
                }
            }
            assert_eq!(got, expected, "{chunks:?}");
        }
    }

    #[test]
    fn a_responses_stream_is_held_through_its_lifecycle_events() {
        let ev = |kind: &str, data: &str| format!("event: {kind}\ndata: {data}\n\n").into_bytes();
        let created = ev(
            "response.created",
            r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","status":"in_progress","error":null,"output":[]}}"#,
        );
        let progress = ev(
            "response.in_progress",
            r#"{"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_1","error":null,"output":[]}}"#,
        );
        let added = ev(
            "response.output_item.added",
            r#"{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"type":"message","content":[]}}"#,
        );
        let delta = ev(
            "response.output_text.delta",
            r#"{"type":"response.output_text.delta","sequence_number":4,"delta":"Hi"}"#,
        );
        let flat = ev(
            "error",
            r#"{"type":"error","code":"server_error","message":"overloaded","param":null}"#,
        );
        let failed_event = ev(
            "response.failed",
            r#"{"type":"response.failed","response":{"status":"failed","error":{"code":"server_error","message":"boom"}}}"#,
        );
        let incomplete = ev(
            "response.incomplete",
            r#"{"type":"response.incomplete","response":{"output":[],"incomplete_details":{"reason":"max_output_tokens"}}}"#,
        );
        let cases: [(Vec<&[u8]>, Option<Judged>); 6] = [
            (vec![&created, &progress, &added], None),
            (
                vec![&created, &progress, &added, &delta],
                Some(Judged::Answer),
            ),
            (vec![&created, &progress, &flat], failed("overloaded")),
            (vec![&created, &failed_event], failed("boom")),
            (
                vec![&created, &incomplete],
                Some(Judged::Failed(NoAnswer::Terminal(
                    "response.incomplete with no output (max_output_tokens)".into(),
                ))),
            ),
            (vec![&created, &progress], None),
        ];
        for (chunks, expected) in cases {
            let mut o = Opening::new(Api::Responses, 0, 1000);
            let mut got = None;
            for c in &chunks {
                got = o.push(c.to_vec());
            }
            assert_eq!(got, expected, "{chunks:?}");
            if got.is_none() {
                // Held lifecycle events are signs of life: at the deadline, commit; at the
                // end, no answer.
                assert_eq!(o.at_deadline(), AtDeadline::Commit);
                assert_eq!(o.ended(), Judged::Failed(NoAnswer::Ended));
                let held: Vec<u8> = chunks.concat();
                assert_eq!(o.into_held(), held, "replayed unchanged");
            }
        }
    }

    #[test]
    fn an_event_split_anywhere_is_judged_once_whole() {
        let mut stream = b": ping\r\n\r\n".to_vec();
        stream.extend_from_slice(OVERLOADED);
        for size in 1..stream.len() {
            let mut o = Opening::new(Api::Chat, 0, 1000);
            let pieces: Vec<&[u8]> = stream.chunks(size).collect();
            for (n, piece) in pieces.iter().enumerate() {
                let got = o.push(piece.to_vec());
                if n + 1 < pieces.len() {
                    assert_eq!(got, None, "size {size}, piece {n}");
                } else {
                    assert_eq!(got, failed("Overloaded"), "size {size}");
                }
            }
        }
    }

    #[test]
    fn an_end_before_the_first_event_fails_the_attempt() {
        let o = Opening::new(Api::Chat, 0, 1000);
        assert_eq!(o.ended(), Judged::Failed(NoAnswer::Ended));
        let mut o = Opening::new(Api::Chat, 0, 1000);
        assert_eq!(o.push(b": ping\n\n".to_vec()), None);
        assert_eq!(o.ended(), Judged::Failed(NoAnswer::Ended));
        // An event the upstream did not end with a blank line is judged as it stands.
        let mut o = Opening::new(Api::Chat, 0, 1000);
        assert_eq!(o.push(b"data: {\"error\":\"gone\"}".to_vec()), None);
        assert_eq!(
            o.ended(),
            Judged::Failed(NoAnswer::ErrorEvent("gone".into()))
        );
        let mut o = Opening::new(Api::Chat, 0, 1000);
        assert_eq!(o.push(b"data: [DONE]".to_vec()), None);
        assert_eq!(o.ended(), Judged::Failed(NoAnswer::Ended));
        let mut o = Opening::new(Api::Chat, 0, 1000);
        assert_eq!(o.push(CONTENT[..CONTENT.len() - 2].to_vec()), None);
        assert_eq!(o.ended(), Judged::Answer);
        // The role chunk then the end: nothing of the answer came.
        let mut o = Opening::new(Api::Chat, 0, 1000);
        assert_eq!(o.push(ROLE.to_vec()), None);
        assert_eq!(o.ended(), Judged::Failed(NoAnswer::Ended));
        assert_eq!(o.into_held(), ROLE);
    }

    #[test]
    fn the_deadline_times_out_a_silent_upstream_and_commits_to_a_live_one() {
        // Sent at t = 10 000 with a 30 000 ms limit: the deadline is t = 40 000.
        let mut o = Opening::new(Api::Chat, 10_000, 30_000);
        assert_eq!(o.remaining_ms(10_000), 30_000);
        assert_eq!(o.remaining_ms(39_999), 1);
        assert_eq!(o.remaining_ms(40_000), 0);
        assert_eq!(o.remaining_ms(90_000), 0);
        assert_eq!(o.at_deadline(), AtDeadline::TimedOut);
        // Part of an event is not a sign of life: it may never finish.
        assert_eq!(o.push(b"data: {\"cho".to_vec()), None);
        assert_eq!(o.at_deadline(), AtDeadline::TimedOut);
        let mut o = Opening::new(Api::Chat, 10_000, 30_000);
        assert_eq!(o.push(b": OPENROUTER PROCESSING\n\n".to_vec()), None);
        assert_eq!(o.at_deadline(), AtDeadline::Commit);
        assert_eq!(o.into_held(), b": OPENROUTER PROCESSING\n\n");
    }

    #[test]
    fn an_opening_past_its_limit_is_committed_to_and_the_work_stays_linear() {
        let mut keep_alives = Vec::new();
        while keep_alives.len() <= MAX_OPENING {
            keep_alives.extend_from_slice(b": ping\n\n");
        }
        let mut long_event = b"data: ".to_vec();
        long_event.resize(MAX_OPENING + 10, b'x');
        for stream in [keep_alives, long_event] {
            for size in [1, 7, 4096] {
                let mut o = Opening::new(Api::Chat, 0, 1000);
                let mut fed = 0;
                let mut got = None;
                for piece in stream.chunks(size) {
                    fed += piece.len();
                    got = o.push(piece.to_vec());
                    if got.is_some() {
                        break;
                    }
                }
                // Judged by the chunk that took the opening past the limit, not before.
                assert_eq!(got, Some(Judged::Answer), "chunks of {size}");
                assert!(
                    fed > MAX_OPENING && fed - size <= MAX_OPENING,
                    "{size}: {fed}"
                );
                // Each byte is copied once, scanned once and read once at most: were the held
                // bytes rescanned on every chunk, 64 KiB in 1-byte chunks would cost ~2 GB.
                assert!(o.work <= 3 * stream.len(), "chunks of {size}: {}", o.work);
            }
        }
    }

    #[test]
    fn failures_read_as_sentences() {
        assert_eq!(
            NoAnswer::ErrorEvent("Overloaded".into()).to_string(),
            "began with an error event: Overloaded"
        );
        assert_eq!(
            NoAnswer::Ended.to_string(),
            "ended before any part of the answer"
        );
        assert_eq!(
            NoAnswer::Broke("reset".into()).to_string(),
            "broke before its first event: reset"
        );
    }
}
