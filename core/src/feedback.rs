//! `POST /v1/feedback`: what an app says about an answer, attributed from the request id alone.
//!
//! The app sends `{"request_id": "<x-bluegreen-request-id>", "score": -1}`. The id says which
//! environment produced the answer and under which routing version ([`crate::request_id`]), so
//! the router neither trusts the client to say nor writes anything per request. A score below 0
//! is negative (a thumbs-down); 0 and above is not. The controller counts each id once.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::environment::Environment;
use crate::error::ApiError;
use crate::fields::Obj;
use crate::request_id::{self, IdError, Issued, Key};
use crate::stats::{BatchEntry, EnvStats, FeedbackCounts};

/// Largest feedback body read, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// One score, verified: what the router sends the controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// The request id scored: each is counted once.
    pub request_id: String,
    /// The environment whose model produced the answer.
    pub environment: Environment,
    /// The routing version the request was routed under.
    pub version: u64,
    /// Unix milliseconds the request arrived (to the second).
    pub at_ms: u64,
    /// Scored below 0.
    pub negative: bool,
    /// The request's environment was forced by its client: counted apart, never judged.
    #[serde(default)]
    pub forced: bool,
}

impl Feedback {
    /// Reads and verifies a feedback body against `key`, at `now_ms`, taking ids issued within
    /// `max_age_ms`.
    pub fn from_body(
        body: &[u8],
        key: &Key,
        now_ms: u64,
        max_age_ms: u64,
    ) -> Result<Feedback, ApiError> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(&e.to_string()))?;
        let o = Obj::new(&v, "")?;
        o.only(&["request_id", "score"])?;
        let request_id = o
            .string("request_id", 128)?
            .ok_or_else(|| ApiError::invalid_field("request_id", "is required"))?;
        let score = o
            .number("score", -1.0, 1.0)?
            .ok_or_else(|| ApiError::invalid_field("score", "is required"))?;
        let Issued {
            environment,
            version,
            at_ms,
            forced,
        } = request_id::verify(key, &request_id, now_ms, max_age_ms).map_err(refusal)?;
        Ok(Feedback {
            request_id,
            environment,
            version,
            at_ms,
            negative: score < 0.0,
            forced,
        })
    }

    /// The stats entry the controller adds, in the minute it arrives (`now_ms`), under the
    /// routing version the request was routed under.
    pub fn entry(&self, now_ms: u64) -> BatchEntry {
        BatchEntry {
            minute: now_ms / 60_000,
            env: self.environment,
            forced: self.forced,
            version: Some(self.version),
            stats: EnvStats {
                feedback: FeedbackCounts {
                    scored: 1,
                    negative: u64::from(self.negative),
                },
                ..EnvStats::default()
            },
        }
    }
}

/// The client's answer for an id that does not verify.
fn refusal(e: IdError) -> ApiError {
    let (status, code) = match e {
        IdError::Malformed | IdError::FromTheFuture => (400, "invalid_request_id"),
        IdError::Forged => (404, "unknown_request_id"),
        IdError::TooOld => (410, "request_id_expired"),
    };
    ApiError::feedback_id(status, code, e.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_764_201_600_000;
    const DAY: u64 = 86_400_000;

    fn id(key: &Key, env: Environment) -> String {
        request_id::issue(
            key,
            9,
            &Issued {
                environment: env,
                version: 12,
                at_ms: NOW - 60_000,
                forced: false,
            },
        )
    }

    fn body(request_id: &str, score: &str) -> Vec<u8> {
        format!(r#"{{"request_id": "{request_id}", "score": {score}}}"#).into_bytes()
    }

    #[test]
    fn a_score_is_attributed_from_the_id() {
        let key = Key::derive("k");
        let green = id(&key, Environment::Green);
        let f = Feedback::from_body(&body(&green, "-1"), &key, NOW, DAY).unwrap();
        assert_eq!(
            (f.environment, f.version, f.negative, f.at_ms),
            (Environment::Green, 12, true, (NOW - 60_000) / 1000 * 1000)
        );
        assert!(
            !Feedback::from_body(&body(&green, "0"), &key, NOW, DAY)
                .unwrap()
                .negative
        );
        assert!(
            !Feedback::from_body(&body(&green, "0.5"), &key, NOW, DAY)
                .unwrap()
                .negative
        );
        let e = f.entry(NOW);
        assert_eq!(
            (e.env, e.version, e.minute),
            (Environment::Green, Some(12), NOW / 60_000)
        );
        assert_eq!(
            (
                e.stats.requests,
                e.stats.feedback.scored,
                e.stats.feedback.negative
            ),
            (0, 1, 1)
        );
    }

    #[test]
    fn bad_scores_and_ids_get_a_clear_4xx() {
        let key = Key::derive("k");
        let good = id(&key, Environment::Blue);
        let forged = id(&Key::derive("other"), Environment::Green);
        let cases: Vec<(Vec<u8>, u16, &str)> = vec![
            (b"not json".to_vec(), 400, "invalid_json"),
            (br#"{"score": 1}"#.to_vec(), 400, "invalid_type"),
            (body(&good, "2"), 400, "invalid_value"),
            (body(&good, "\"up\""), 400, "invalid_value"),
            (
                format!(r#"{{"request_id": "{good}"}}"#).into_bytes(),
                400,
                "invalid_type",
            ),
            (
                format!(r#"{{"request_id": "{good}", "score": 1, "env": "blue"}}"#).into_bytes(),
                400,
                "invalid_value",
            ),
            (
                body("0123456789abcdef0123456789abcdef", "1"),
                400,
                "invalid_request_id",
            ),
            (body(&forged, "-1"), 404, "unknown_request_id"),
        ];
        for (b, status, code) in cases {
            let e = Feedback::from_body(&b, &key, NOW, DAY).unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (status, code),
                "{}",
                String::from_utf8_lossy(&b)
            );
        }
        let e = Feedback::from_body(&body(&good, "-1"), &key, NOW + 2 * DAY, DAY).unwrap_err();
        assert_eq!((e.status, e.code), (410, "request_id_expired"));
        assert_eq!(e.param.as_deref(), Some("request_id"));
    }
}
