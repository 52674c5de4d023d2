//! Judging a streamed answer by its first event, before the router commits to it.
//!
//! Many OpenAI-compatible providers and gateways answer overload with `200 text/event-stream`
//! whose first event is `data: {"error": {...}}`; the headers say nothing. So the router holds
//! the stream's opening bytes until its first event has arrived whole, and judges that event
//! ([`Opening::push`]): an event of the answer commits the router to this stream; an in-band
//! error fails the attempt, as does a stream that ends or breaks before its first event, while
//! the client has seen nothing and green can still fall back to blue. Keep-alive comments
//! (`: ...`) and events without data are held but are not a first event.
//!
//! The wait is bounded by a deadline: the attempt's start plus the first-byte limit
//! (`FIRST_BYTE_TIMEOUT_MS`), which covers the response headers and the first event together.
//! At the deadline ([`Opening::at_deadline`]) an upstream that sent keep-alives is alive and
//! thinking: the router commits to it (the idle limit bounds it from then on) rather than
//! turning a slow model into a timeout; one that sent nothing has timed out.
//!
//! Time comes in from outside: the shell passes `now` and races its reads against the wait
//! [`Opening::remaining_ms`] names. No clock, no I/O here. The work is linear in the bytes
//! held, which [`MAX_OPENING`] bounds.

use std::fmt;

use super::scan::{Boundaries, Said};

/// Most bytes held before a first event is complete (64 KiB). An error event is a few hundred
/// bytes; an opening longer than this is an answer (or keep-alives without end), and the router
/// commits to it rather than hold more.
pub const MAX_OPENING: usize = 64 << 10;

/// A streamed attempt's opening, held until its first event is judged.
#[derive(Debug)]
pub struct Opening {
    /// Unix ms by which the first event must have arrived.
    deadline_ms: u64,
    /// Everything read so far, forwarded as it is once the router commits.
    held: Vec<u8>,
    /// Line and event boundaries after the last byte held.
    bounds: Boundaries,
    /// Where the event not yet complete starts in `held`.
    event_start: usize,
    /// A keep-alive (a comment, or an event without data) arrived whole.
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
    /// The first event was an in-band error; holds its message.
    ErrorEvent(String),
    /// The stream ended cleanly before any event.
    Ended,
    /// The stream broke before its first event; holds the runtime's message.
    Broke(String),
}

impl fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoAnswer::ErrorEvent(message) => write!(f, "began with an error event: {message}"),
            NoAnswer::Ended => f.write_str("ended before its first event"),
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
    /// The opening of an attempt sent at `sent_at_ms` whose first event must arrive within
    /// `limit_ms`.
    pub fn new(sent_at_ms: u64, limit_ms: u64) -> Opening {
        Opening {
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
        let mut read = 0;
        self.bounds.feed(&held[from..], |i| {
            let end = from + i;
            if judged.is_none() {
                let mut said = Said::default();
                said.read(&held[*start..end]);
                read += end - *start;
                judged = judge(said);
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
        let mut said = Said::default();
        said.read(&self.held[self.event_start..]);
        judge(said).unwrap_or(Judged::Failed(NoAnswer::Ended))
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

/// An event's verdict: `None` for a keep-alive (no data, no error).
fn judge(said: Said) -> Option<Judged> {
    let data = said.data;
    match (said.failure(), data) {
        (Some(message), _) => Some(Judged::Failed(NoAnswer::ErrorEvent(message))),
        (None, true) => Some(Judged::Answer),
        (None, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &[u8] =
        b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
    const OVERLOADED: &[u8] =
        b"data: {\"error\":{\"message\":\"Overloaded\",\"type\":\"server_error\",\"code\":529}}\n\n";

    fn failed(message: &str) -> Option<Judged> {
        Some(Judged::Failed(NoAnswer::ErrorEvent(message.into())))
    }

    #[test]
    fn the_first_event_decides() {
        // (chunks, verdict after the last chunk)
        let mut both = ROLE.to_vec();
        both.extend_from_slice(OVERLOADED);
        let typed: &[u8] =
            b"event: error\ndata: {\"type\":\"error\",\"error\":{\"message\":\"busy\"}}\n\n";
        let spread: &[u8] =
            b"data: {\"error\":\ndata:  {\"message\":\"Quota exceeded\",\ndata:   \"code\":429}}\n\n";
        let table: [(&[&[u8]], Option<Judged>); 10] = [
            (&[ROLE], Some(Judged::Answer)),
            // An error whose JSON is spread over several `data:` lines of one event.
            (&[spread], failed("Quota exceeded")),
            (&[OVERLOADED], failed("Overloaded")),
            (&[typed], failed("busy")),
            // The first event counts: an error after it is the answer's business.
            (&[&both], Some(Judged::Answer)),
            // Keep-alives come first and say nothing; the event after them decides.
            (
                &[b": PROCESSING\n\n", b": PROCESSING\n\n", OVERLOADED],
                failed("Overloaded"),
            ),
            (
                &[b": ping\r\n\r\nevent: ping\r\n\r\n", ROLE],
                Some(Judged::Answer),
            ),
            // Incomplete: wait.
            (&[b"data: {\"error\":{\"mess"], None),
            (&[b": ping\n\n"], None),
            // `data: [DONE]` is what the upstream says the answer is.
            (&[b"data: [DONE]\n\n"], Some(Judged::Answer)),
        ];
        for (chunks, expected) in table {
            let mut o = Opening::new(0, 1000);
            let mut got = None;
            for c in chunks {
                got = o.push(c.to_vec());
            }
            assert_eq!(got, expected, "{chunks:?}");
        }
    }

    #[test]
    fn an_event_split_anywhere_is_judged_once_whole() {
        let mut stream = b": ping\r\n\r\n".to_vec();
        stream.extend_from_slice(OVERLOADED);
        for size in 1..stream.len() {
            let mut o = Opening::new(0, 1000);
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
        let o = Opening::new(0, 1000);
        assert_eq!(o.ended(), Judged::Failed(NoAnswer::Ended));
        let mut o = Opening::new(0, 1000);
        assert_eq!(o.push(b": ping\n\n".to_vec()), None);
        assert_eq!(o.ended(), Judged::Failed(NoAnswer::Ended));
        // An event the upstream did not end with a blank line is judged as it stands.
        let mut o = Opening::new(0, 1000);
        assert_eq!(o.push(b"data: {\"error\":\"gone\"}".to_vec()), None);
        assert_eq!(
            o.ended(),
            Judged::Failed(NoAnswer::ErrorEvent("gone".into()))
        );
        let mut o = Opening::new(0, 1000);
        assert_eq!(o.push(b"data: [DONE]".to_vec()), None);
        assert_eq!(o.ended(), Judged::Answer);
        assert_eq!(o.into_held(), b"data: [DONE]");
    }

    #[test]
    fn the_deadline_times_out_a_silent_upstream_and_commits_to_a_live_one() {
        // Sent at t = 10 000 with a 30 000 ms limit: the deadline is t = 40 000.
        let mut o = Opening::new(10_000, 30_000);
        assert_eq!(o.remaining_ms(10_000), 30_000);
        assert_eq!(o.remaining_ms(39_999), 1);
        assert_eq!(o.remaining_ms(40_000), 0);
        assert_eq!(o.remaining_ms(90_000), 0);
        assert_eq!(o.at_deadline(), AtDeadline::TimedOut);
        // Part of an event is not a sign of life: it may never finish.
        assert_eq!(o.push(b"data: {\"cho".to_vec()), None);
        assert_eq!(o.at_deadline(), AtDeadline::TimedOut);
        let mut o = Opening::new(10_000, 30_000);
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
                let mut o = Opening::new(0, 1000);
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
        assert_eq!(NoAnswer::Ended.to_string(), "ended before its first event");
        assert_eq!(
            NoAnswer::Broke("reset".into()).to_string(),
            "broke before its first event: reset"
        );
    }
}
