//! The outcome record: one per proxied request, describing what happened to it.
//!
//! The shell fills in measurements (times, usage) and logs the record; the rollout controller
//! aggregates them into per-environment stats. The record says which environment *served*;
//! when green failed first, `fallback` holds why, and that failure counts against green.

use serde::Serialize;

use crate::api::defects::Defect;
use crate::api::usage::Usage;
use crate::api::Api;
use crate::environment::Environment;
use crate::request::breaker::Charge;
use crate::request::fallback::{Attempt, FallbackReason};
use crate::request::split::Basis;

/// How a request ended, as the stats see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusClass {
    /// 1xx–3xx from the upstream.
    Ok,
    /// 4xx other than 404, 408 and 429: the client's fault, not the model's.
    ClientError,
    /// 404 or 408: the upstream refused or gave up on the request.
    UpstreamError,
    /// 429.
    RateLimited,
    /// 5xx.
    ServerError,
    /// No response headers in time.
    Timeout,
    /// The upstream could not be reached.
    Connect,
    /// A stream failed before its first event: an in-band error, or it ended or broke.
    StreamError,
    /// A 2xx whose body is not the API's answer object (see [`Attempt::NotAnAnswer`]).
    NotAnAnswer,
    /// Green was not asked: its breaker had ejected it ([`crate::request::breaker`]). Only ever the
    /// class of a fallback, never of a serving attempt.
    Ejected,
}

impl StatusClass {
    /// Classifies an attempt.
    pub fn of(attempt: Attempt) -> StatusClass {
        match attempt {
            Attempt::Status(429) => StatusClass::RateLimited,
            Attempt::Status(404 | 408) => StatusClass::UpstreamError,
            Attempt::Status(s) if s >= 500 => StatusClass::ServerError,
            Attempt::Status(s) if s >= 400 => StatusClass::ClientError,
            Attempt::Status(_) => StatusClass::Ok,
            Attempt::Timeout => StatusClass::Timeout,
            Attempt::Connect => StatusClass::Connect,
            Attempt::StreamError => StatusClass::StreamError,
            Attempt::NotAnAnswer => StatusClass::NotAnAnswer,
        }
    }

    /// The class a fallback counts against green with: its failed attempt's, or for a request
    /// the breaker moved, `ejected` (never sent) or `timeout` (given up while it hung).
    pub fn of_fallback(reason: FallbackReason) -> StatusClass {
        match reason {
            FallbackReason::Failed(attempt) => StatusClass::of(attempt),
            FallbackReason::Breaker(shed) => match shed.charge() {
                Charge::Ejected => StatusClass::Ejected,
                Charge::Timeout => StatusClass::Timeout,
            },
        }
    }

    /// True for classes that count against the environment's health.
    pub fn is_upstream_failure(self) -> bool {
        !matches!(self, StatusClass::Ok | StatusClass::ClientError)
    }
}

/// Everything the stats need to know about one proxied request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The id sent back in `x-bluegreen-request-id`.
    pub request_id: String,
    /// Unix milliseconds when the request arrived.
    pub at_ms: u64,
    /// The route that served it (`default` for a model no route is named after).
    pub route: String,
    /// The API it was a call of.
    pub api: Api,
    /// The environment that served the answer.
    pub environment: Environment,
    /// The model that served it.
    pub model: String,
    /// What decided the first environment.
    pub basis: Basis,
    /// The version of the routing document the request was routed under (0: the vars' split).
    pub routing_version: u64,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The status the client received.
    pub status: u16,
    /// The serving attempt's class.
    pub class: StatusClass,
    /// Why green's attempt was abandoned, when blue served after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackReason>,
    /// Milliseconds from arrival to the serving attempt's response headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_byte_ms: Option<u64>,
    /// Milliseconds from arrival to the last byte sent to the client.
    pub total_ms: u64,
    /// Usage reported by the upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// What makes a successful answer unusable, when something does (see [`crate::api::defects`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defect: Option<Defect>,
    /// An embeddings answer's vector length, when its vectors have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_length: Option<u64>,
    /// True when the upstream's stream failed after it began: it broke, went silent for
    /// `STREAM_IDLE_TIMEOUT_MS` (the client got the router's SSE `error` event either way), or
    /// sent an in-band error event (relayed as it is). Counts against the environment.
    pub interrupted: bool,
    /// True when the client went away before the answer was complete. Not the model's fault,
    /// so it is not an error in the stats.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub client_gone: bool,
}

impl Outcome {
    /// One-line JSON for the log.
    pub fn to_json(&self) -> String {
        // Strings, integers and flags in plain structs: it cannot fail (and the wasm then
        // carries no formatting of serde's error for it).
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        use StatusClass::*;
        let table = [
            (Attempt::Status(200), Ok),
            (Attempt::Status(304), Ok),
            (Attempt::Status(400), ClientError),
            (Attempt::Status(422), ClientError),
            (Attempt::Status(404), UpstreamError),
            (Attempt::Status(408), UpstreamError),
            (Attempt::Status(429), RateLimited),
            (Attempt::Status(500), ServerError),
            (Attempt::Status(503), ServerError),
            (Attempt::Timeout, Timeout),
            (Attempt::Connect, Connect),
            (Attempt::StreamError, StreamError),
        ];
        for (a, c) in table {
            assert_eq!(StatusClass::of(a), c, "{a:?}");
        }
        use crate::request::breaker::ShedReason;
        let shed = |r| StatusClass::of_fallback(FallbackReason::Breaker(r));
        assert_eq!(shed(ShedReason::Ejected), Ejected);
        assert_eq!(shed(ShedReason::Abandoned), Timeout);
        let failed = StatusClass::of_fallback(FallbackReason::Failed(Attempt::Status(503)));
        assert_eq!(failed, ServerError);
        assert!(Ejected.is_upstream_failure());
        assert!(!Ok.is_upstream_failure());
        assert!(!ClientError.is_upstream_failure());
        assert!(RateLimited.is_upstream_failure());
        assert!(Timeout.is_upstream_failure());
    }

    #[test]
    fn record_json() {
        let o = Outcome {
            request_id: "r1".into(),
            at_ms: 5,
            route: "chat".into(),
            api: crate::api::Api::Chat,
            environment: Environment::Blue,
            model: "deepseek-v3".into(),
            basis: Basis::Random,
            routing_version: 0,
            stream: false,
            status: 200,
            class: StatusClass::Ok,
            fallback: Some(FallbackReason::Failed(Attempt::Status(503))),
            first_byte_ms: Some(20),
            total_ms: 25,
            usage: Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
            }),
            interrupted: false,
            defect: None,
            vector_length: None,
            client_gone: false,
        };
        let v: serde_json::Value = serde_json::from_str(&o.to_json()).unwrap();
        assert_eq!(v["environment"], "blue");
        assert_eq!(v["route"], "chat");
        assert_eq!(v["fallback"], "status-503");
        assert_eq!(v["class"], "ok");
        assert_eq!(v["usage"]["completion_tokens"], 4);
    }
}
