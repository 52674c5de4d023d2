//! `POST /v1/feedback`: what an app says about an answer, attributed from the request id alone.
//!
//! The app sends `{"request_id": "<x-bluegreen-request-id>", "score": -1}`. The id says which
//! environment produced the answer and under which routing version ([`crate::request::request_id`]), so
//! the router neither trusts the client to say nor writes anything per request. A score below 0
//! is negative (a thumbs-down); 0 and above is not. The controller counts each id once.
//!
//! Who may score ([`credential`]): only a holder of a credential the deployment trusts, a
//! router key or `FEEDBACK_TOKEN`, sent as a bearer token. A request id alone is never one:
//! every client of the app sees ids, and ids are issued only for answers the app received as
//! answers (2xx), so that nobody can mint ids by sending requests the upstream refuses.
//!
//! How much ([`Intake`]): an isolate remembers the ids it saw counted and answers a replay
//! itself, and sends on at most `FEEDBACK_MAX_PER_MINUTE` scores a minute per credential; the
//! controller takes at most [`CONTROLLER_PER_MINUTE`] (in bursts of [`CONTROLLER_BURST`]), so
//! that a flood of scores cannot starve its ticks, stats and admin API. What is refused is
//! counted ([`Refused`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::environment::Environment;
use crate::error::fields::Obj;
use crate::error::ApiError;
use crate::request::auth::{bearer, position_of, AuthMode};
use crate::request::request_id::{self, IdError, Issued, Keys};
use crate::stats::{BatchEntry, EnvStats, FeedbackCounts};
use crate::util::rate::TokenBucket;

/// Scores the controller takes a minute, from all isolates together: 100 a second, far above
/// what any verdict needs (a few hundred scores decide one) and far below what would hold up
/// its ticks (each score is a read and a write of its SQLite storage).
pub const CONTROLLER_PER_MINUTE: u32 = 6_000;

/// Scores the controller takes at once after a quiet spell: a second's worth.
pub const CONTROLLER_BURST: u32 = 100;

/// Scored ids an isolate remembers (8 bytes each): a replay of one of them is answered without
/// the controller.
pub const REMEMBERED_IDS: usize = 8_192;

/// Why a verified score was not sent on to be counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The id was scored already and the isolate remembers it: a 409 of its own.
    Replay,
    /// Over a rate bound (the credential's in the isolate, or the controller's intake): a 429.
    Limited,
}

/// Which credential a score came with: its place among those the deployment trusts
/// (`FEEDBACK_TOKEN` first, then each router key), for its rate bound. Called before the body
/// is read.
pub fn credential(
    auth: &AuthMode,
    token: Option<&str>,
    authorization: Option<&str>,
) -> Result<usize, ApiError> {
    let keys: &[String] = match auth {
        AuthMode::RouterKeys { client_keys, .. } => client_keys,
        AuthMode::Passthrough => &[],
    };
    if keys.is_empty() && token.is_none() {
        return Err(ApiError::feedback_needs_credential());
    }
    let presented = bearer(authorization).ok_or_else(ApiError::feedback_unauthorized)?;
    let trusted = token.into_iter().chain(keys.iter().map(String::as_str));
    position_of(trusted, presented).ok_or_else(ApiError::feedback_unauthorized)
}

/// What an isolate does with a verified score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Send it to the controller.
    Send,
    /// Answer it here.
    Refuse(Refused),
}

/// An isolate's bounds on the scores it sends on: the ids it saw counted, and a token bucket
/// per credential. One per isolate, kept by the shell.
#[derive(Debug, Default)]
pub struct Intake {
    /// Hashes of the ids counted, in a ring of [`REMEMBERED_IDS`]: the newest overwrites the
    /// oldest. A plain scan finds one (8 192 words, a few microseconds, only for a score).
    seen: Vec<u64>,
    /// Where the next goes once the ring is full.
    next: usize,
    /// By credential (as [`credential`] numbers them; a handful).
    buckets: Vec<TokenBucket>,
}

/// What an id is remembered by: its MAC, the keyed PRF of all the rest of it, so that two
/// different ids (which a client cannot make without the key) share one only by chance, 2⁻⁶⁴
/// a pair. Remembering it is as good as remembering the id, in 8 bytes. Only verified ids get
/// here; anything else is remembered by an FNV-1a hash of its bytes.
fn id_hash(request_id: &str) -> u64 {
    let mac = request_id.rsplit('.').next().unwrap_or("");
    if mac.len() == 16 {
        if let Ok(mac) = u64::from_str_radix(mac, 16) {
            return mac;
        }
    }
    request_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Intake {
    /// Whether a score for `request_id` that came with `credential` at `now_ms` goes on to the
    /// controller, at most `per_minute` a minute per credential (a minute's worth at once).
    pub fn admit(
        &mut self,
        credential: usize,
        request_id: &str,
        now_ms: u64,
        per_minute: u32,
    ) -> Admit {
        if self.seen.contains(&id_hash(request_id)) {
            return Admit::Refuse(Refused::Replay);
        }
        if self.buckets.len() <= credential {
            self.buckets.resize(credential + 1, TokenBucket::default());
        }
        if self.buckets[credential].take(now_ms, per_minute, per_minute) {
            Admit::Send
        } else {
            Admit::Refuse(Refused::Limited)
        }
    }

    /// The controller counted `request_id`, or had counted it before: a replay is answered
    /// here from now on.
    pub fn counted(&mut self, request_id: &str) {
        let h = id_hash(request_id);
        if self.seen.contains(&h) {
            return;
        }
        if self.seen.len() < REMEMBERED_IDS {
            self.seen.push(h);
        } else {
            self.seen[self.next] = h;
            self.next = (self.next + 1) % REMEMBERED_IDS;
        }
    }
}

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
    /// The route that served the request, named by its id: the score goes to that route's
    /// controller only. Not sent: the controller it goes to is the route's.
    #[serde(skip, default = "default_route")]
    pub route: String,
}

fn default_route() -> String {
    crate::route::DEFAULT.into()
}

impl Feedback {
    /// Reads and verifies a feedback body against `key`, at `now_ms`, taking ids issued within
    /// `max_age_ms`.
    pub fn from_body(
        body: &[u8],
        key: &Keys,
        now_ms: u64,
        max_age_ms: u64,
    ) -> Result<Feedback, ApiError> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(&e.to_string()))?;
        let o = Obj::new(&v, "")?;
        o.only(&["request_id", "score"])?;
        let request_id = o
            .string("request_id", 256)?
            .ok_or_else(|| ApiError::invalid_field("request_id", "is required"))?;
        let score = o
            .number("score", -1.0, 1.0)?
            .ok_or_else(|| ApiError::invalid_field("score", "is required"))?;
        let Issued {
            route,
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
            route,
        })
    }

    /// The stats entry the controller adds, in the minute it arrives (`now_ms`), under the
    /// routing version the request was routed under.
    pub fn entry(&self, now_ms: u64) -> BatchEntry {
        self.entry_of(
            now_ms,
            FeedbackCounts {
                scored: 1,
                negative: u64::from(self.negative),
                ..FeedbackCounts::default()
            },
        )
    }

    /// The stats entry that counts this score as refused, at `now_ms`: in the isolate's next
    /// stats batch, under the environment and version its id names.
    pub fn refused_entry(&self, now_ms: u64, why: Refused) -> BatchEntry {
        let mut counts = FeedbackCounts::default();
        match why {
            Refused::Replay => counts.replayed = 1,
            Refused::Limited => counts.limited = 1,
        }
        self.entry_of(now_ms, counts)
    }

    fn entry_of(&self, now_ms: u64, feedback: FeedbackCounts) -> BatchEntry {
        BatchEntry {
            minute: now_ms / 60_000,
            env: self.environment,
            forced: self.forced,
            version: Some(self.version),
            stats: EnvStats {
                feedback,
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
    const SECRET: &str = "a-secret-of-at-least-32-bytes-0123";

    fn id(key: &Keys, env: Environment) -> String {
        request_id::issue(
            key,
            9,
            &Issued {
                route: "default".into(),
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
        let key = Keys::derive(SECRET, "d");
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
        let key = Keys::derive(SECRET, "d");
        let good = id(&key, Environment::Blue);
        let forged = id(
            &Keys::derive("another secret of at least 32 bytes", "d"),
            Environment::Green,
        );
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

    #[test]
    fn only_a_trusted_credential_may_score() {
        let keys = AuthMode::RouterKeys {
            upstream_key: "sk-up".into(),
            client_keys: vec!["rk-1".into(), "rk-2".into()],
        };
        let pass = AuthMode::Passthrough;
        // (auth mode, FEEDBACK_TOKEN, Authorization) → credential, or status and code.
        type Row<'a> = (
            &'a AuthMode,
            Option<&'a str>,
            Option<&'a str>,
            Result<usize, (u16, &'a str)>,
        );
        let table: [Row; 11] = [
            (
                &pass,
                None,
                Some("Bearer anything"),
                Err((503, "feedback_credential_unset")),
            ),
            (&pass, None, None, Err((503, "feedback_credential_unset"))),
            (&pass, Some("fb-tok"), None, Err((401, "invalid_api_key"))),
            (
                &pass,
                Some("fb-tok"),
                Some("Bearer sk-someones-upstream-key"),
                Err((401, "invalid_api_key")),
            ),
            (
                &pass,
                Some("fb-tok"),
                Some("fb-tok"),
                Err((401, "invalid_api_key")),
            ),
            (&pass, Some("fb-tok"), Some("bearer  fb-tok "), Ok(0)),
            (&keys, None, Some("Bearer rk-2"), Ok(1)),
            (&keys, Some("fb-tok"), Some("Bearer rk-2"), Ok(2)),
            (&keys, Some("fb-tok"), Some("Bearer fb-tok"), Ok(0)),
            (
                &keys,
                Some("fb-tok"),
                Some("Bearer sk-up"),
                Err((401, "invalid_api_key")),
            ),
            (&keys, None, None, Err((401, "invalid_api_key"))),
        ];
        for (mode, token, header, want) in table {
            let got = credential(mode, token, header).map_err(|e| (e.status, e.code));
            assert_eq!(got, want, "{mode:?} {token:?} {header:?}");
        }
        assert!(ApiError::feedback_needs_credential()
            .message
            .contains("FEEDBACK_TOKEN"));
    }

    #[test]
    fn an_isolate_answers_replays_and_bounds_each_credential() {
        let mut intake = Intake::default();
        // 60 a minute: a minute's worth at once, then one a second.
        for i in 0..60 {
            assert_eq!(intake.admit(0, &format!("id{i}"), NOW, 60), Admit::Send);
        }
        assert_eq!(
            intake.admit(0, "id60", NOW, 60),
            Admit::Refuse(Refused::Limited)
        );
        // Another credential has a bucket of its own.
        assert_eq!(intake.admit(3, "other", NOW, 60), Admit::Send);
        assert_eq!(intake.admit(0, "id60", NOW + 1000, 60), Admit::Send);
        // Once counted, a replay is answered here, whatever the bucket holds.
        intake.counted("id1");
        intake.counted("id1");
        assert_eq!(intake.seen.len(), 1);
        assert_eq!(
            intake.admit(0, "id1", NOW, 60),
            Admit::Refuse(Refused::Replay)
        );
        assert_eq!(
            intake.admit(0, "id1", NOW + DAY, 60),
            Admit::Refuse(Refused::Replay)
        );
    }

    #[test]
    fn an_isolate_remembers_a_bounded_number_of_ids_forgetting_the_oldest() {
        let mut intake = Intake::default();
        for i in 0..REMEMBERED_IDS + 10 {
            intake.counted(&format!("bg2.g1.1.0.{i:016x}"));
        }
        assert_eq!(intake.seen.len(), REMEMBERED_IDS);
        // The ten oldest are forgotten (the controller still refuses them), the newest kept.
        let first = format!("bg2.g1.1.0.{:016x}", 0);
        let last = format!("bg2.g1.1.0.{:016x}", REMEMBERED_IDS + 9);
        assert_eq!(intake.admit(0, &first, NOW, 60), Admit::Send);
        assert_eq!(
            intake.admit(0, &last, NOW, 60),
            Admit::Refuse(Refused::Replay)
        );
    }

    #[test]
    fn a_refused_score_is_counted_apart_under_the_ids_environment() {
        let key = Keys::derive(SECRET, "d");
        let f = Feedback::from_body(&body(&id(&key, Environment::Green), "-1"), &key, NOW, DAY)
            .unwrap();
        let e = f.refused_entry(NOW, Refused::Replay);
        assert_eq!(
            (e.env, e.version, e.minute),
            (Environment::Green, Some(12), NOW / 60_000)
        );
        let c = &e.stats.feedback;
        assert_eq!((c.scored, c.negative, c.replayed, c.limited), (0, 0, 1, 0));
        let c = f.refused_entry(NOW, Refused::Limited).stats.feedback;
        assert_eq!((c.scored, c.replayed, c.limited), (0, 0, 1));
    }
}
