//! The fallback policy: what to do after an attempt at the upstream.
//!
//! A green attempt that fails for a reason blue might not share (the model is unknown, rate
//! limited, overloaded, broken, slow or unreachable, or its stream fails before its first event)
//! is retried once on blue. Errors that are
//! the client's own (400, 401, 403, 413, 422 and every other 4xx not listed here) would fail on
//! blue too, so they are returned as they are. A request whose environment the client forced is
//! never moved: the client asked for that environment and gets its answer.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::environment::Environment;
use crate::request::breaker::{Finish, ShedReason};

/// What one attempt at the upstream came to, as far as the response headers and, for a stream,
/// its first event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The upstream answered with this status (for a stream: and its first event was part of
    /// an answer).
    Status(u16),
    /// No answer in time: no first event of a stream within `FIRST_BYTE_TIMEOUT_MS`, or no
    /// non-streamed answer within `COMPLETION_TIMEOUT_MS`.
    Timeout,
    /// The connection failed (refused, reset, DNS, TLS).
    Connect,
    /// A stream whose first event was an in-band error, or that ended or broke before its
    /// first event.
    StreamError,
    /// A 2xx whose body is not the API's answer object: not JSON (a proxy's HTML page), JSON
    /// without the answer (`choices`, `output`), or a response that says it failed.
    NotAnAnswer,
}

impl Attempt {
    /// How a green attempt that came to this ended, for the green breaker
    /// ([`crate::request::breaker`]): an answer that is used (2xx, 3xx, a client's 4xx), a failure
    /// green answered with (a status that falls back, a stream that failed before its first
    /// event), or no answer at all (no connection, or the router's own timeout).
    pub fn finish(self) -> Finish {
        match self {
            Attempt::Status(s) if is_retryable_status(s) => Finish::Error,
            Attempt::Status(_) => Finish::Ok,
            Attempt::StreamError | Attempt::NotAnAnswer => Finish::Error,
            Attempt::Timeout | Attempt::Connect => Finish::NoAnswer,
        }
    }
}

/// Why green's answer was not used; rendered as `status-503`, `timeout`, `connect`,
/// `stream-error`, `not-an-answer`, `green-ejected` or `green-abandoned` in the `x-bluegreen-fallback` header and
/// in outcome records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackReason {
    /// Green was tried, and its attempt came to this.
    Failed(Attempt),
    /// The green breaker moved the request to blue: green was not asked (ejected), or was
    /// given up on while it hung (abandoned).
    Breaker(ShedReason),
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FallbackReason::Failed(Attempt::Status(s)) => write!(f, "status-{s}"),
            FallbackReason::Failed(Attempt::Timeout) => f.write_str("timeout"),
            FallbackReason::Failed(Attempt::Connect) => f.write_str("connect"),
            FallbackReason::Failed(Attempt::StreamError) => f.write_str("stream-error"),
            FallbackReason::Failed(Attempt::NotAnAnswer) => f.write_str("not-an-answer"),
            FallbackReason::Breaker(shed) => f.write_str(shed.as_str()),
        }
    }
}

impl Serialize for FallbackReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// True for the upstream statuses that make a green attempt fall back to blue.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 404 | 408 | 429 | 500..=599)
}

/// What the proxy does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Return this attempt's response to the client.
    Serve,
    /// Send the same request to blue, once, with the blue model.
    RetryOnBlue(FallbackReason),
    /// There is no response to return: answer 502 (connect, stream error, not an answer) or
    /// 504 (timeout) ourselves.
    Fail(Attempt),
}

/// Decides after an attempt at `environment`. `forced` is true when the client chose the
/// environment with `x-bluegreen-environment`.
pub fn next_step(environment: Environment, forced: bool, attempt: Attempt) -> Next {
    let failed = match attempt {
        Attempt::Status(s) => is_retryable_status(s),
        Attempt::Timeout | Attempt::Connect | Attempt::StreamError | Attempt::NotAnAnswer => true,
    };
    match (environment, forced, failed, attempt) {
        (Environment::Green, false, true, _) => Next::RetryOnBlue(FallbackReason::Failed(attempt)),
        (_, _, _, Attempt::Status(_)) => Next::Serve,
        (_, _, _, other) => Next::Fail(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Attempt::*;
    use Environment::*;

    #[test]
    fn decision_table() {
        let retry = |a| Next::RetryOnBlue(FallbackReason::Failed(a));
        #[rustfmt::skip]
        let table = [
            // environment, forced, attempt, expected
            (Green, false, Status(200), Next::Serve),
            (Green, false, Status(201), Next::Serve),
            (Green, false, Status(400), Next::Serve),
            (Green, false, Status(401), Next::Serve),
            (Green, false, Status(403), Next::Serve),
            (Green, false, Status(413), Next::Serve),
            (Green, false, Status(422), Next::Serve),
            (Green, false, Status(404), retry(Status(404))),
            (Green, false, Status(408), retry(Status(408))),
            (Green, false, Status(429), retry(Status(429))),
            (Green, false, Status(500), retry(Status(500))),
            (Green, false, Status(503), retry(Status(503))),
            (Green, false, Status(599), retry(Status(599))),
            (Green, false, Timeout, retry(Timeout)),
            (Green, false, Connect, retry(Connect)),
            (Green, false, StreamError, retry(StreamError)),
            // A forced green is answered as it is.
            (Green, true, Status(503), Next::Serve),
            (Green, true, Timeout, Next::Fail(Timeout)),
            (Green, true, StreamError, Next::Fail(StreamError)),
            // Blue has nowhere to fall back to.
            (Blue, false, Status(503), Next::Serve),
            (Blue, false, Status(429), Next::Serve),
            (Blue, false, Timeout, Next::Fail(Timeout)),
            (Blue, false, Connect, Next::Fail(Connect)),
            (Blue, true, Connect, Next::Fail(Connect)),
            (Blue, false, StreamError, Next::Fail(StreamError)),
            (Green, false, NotAnAnswer, retry(NotAnAnswer)),
            (Green, true, NotAnAnswer, Next::Fail(NotAnAnswer)),
            (Blue, false, NotAnAnswer, Next::Fail(NotAnAnswer)),
        ];
        for (env, forced, attempt, expected) in table {
            assert_eq!(
                next_step(env, forced, attempt),
                expected,
                "{env:?} {forced} {attempt:?}"
            );
        }
    }

    #[test]
    fn reasons_render_as_header_values() {
        let failed = FallbackReason::Failed;
        assert_eq!(failed(Status(503)).to_string(), "status-503");
        assert_eq!(failed(Timeout).to_string(), "timeout");
        assert_eq!(failed(Connect).to_string(), "connect");
        assert_eq!(failed(StreamError).to_string(), "stream-error");
        assert_eq!(failed(NotAnAnswer).to_string(), "not-an-answer");
        let shed = FallbackReason::Breaker;
        assert_eq!(shed(ShedReason::Ejected).to_string(), "green-ejected");
        assert_eq!(shed(ShedReason::Abandoned).to_string(), "green-abandoned");
        assert_eq!(
            serde_json::to_string(&failed(Status(429))).unwrap(),
            "\"status-429\""
        );
    }

    #[test]
    fn how_a_green_attempt_ended_for_the_breaker() {
        #[rustfmt::skip]
        let table = [
            (Status(200), Finish::Ok),
            (Status(304), Finish::Ok),
            // A client's error is an answer: blue would give the same.
            (Status(400), Finish::Ok),
            (Status(422), Finish::Ok),
            (Status(404), Finish::Error),
            (Status(429), Finish::Error),
            (Status(503), Finish::Error),
            (StreamError, Finish::Error),
            (NotAnAnswer, Finish::Error),
            (Timeout, Finish::NoAnswer),
            (Connect, Finish::NoAnswer),
        ];
        for (attempt, finish) in table {
            assert_eq!(attempt.finish(), finish, "{attempt:?}");
        }
    }
}
