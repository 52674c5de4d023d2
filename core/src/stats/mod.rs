//! Per-environment request statistics: what the controller counts, merges and judges.
//!
//! Stats are grouped by the environment a request was *routed* to, so that blue's and green's
//! `requests` add up to the requests answered. A request green failed and blue then served
//! counts once, in green: as a request, an error of green's failure class and a fallback; its
//! latency is what that user waited, and its tokens are priced at the model that produced them.
//!
//! Everything here merges by addition, so an isolate can pre-aggregate its requests into a
//! [`Batch`] per minute and environment, and the controller can add batches into as many
//! windows (the evaluation window, the step, the rollout, the minute) as it keeps. This module
//! does not decide anything about health; [`crate::verdict::health`] reads these numbers.

pub mod hist;
pub mod judged;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::defects::Defect;
use crate::api::usage::Usage;
use crate::environment::Environment;
use crate::request::outcome::{Outcome, StatusClass};
use crate::request::split::Basis;
use crate::stats::hist::Histogram;
use crate::stats::judged::JudgedCounts;
use crate::util::json;

/// An upstream failure's class: one counter of [`ErrorCounts`] each. [`ErrorClass::ALL`] is the
/// one list that everything iterating the classes reads (totals, merges, metrics), so a class
/// added here appears everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 5xx answers.
    ServerError,
    /// 429 answers.
    RateLimited,
    /// No response headers within the first-byte timeout.
    Timeout,
    /// The upstream could not be reached.
    Connection,
    /// 404 or 408: the upstream refused or gave up on the request.
    UpstreamOther,
    /// A stream that failed after it began.
    Interrupted,
    /// A stream that failed before its first event.
    StreamError,
    /// A 2xx whose body is not the API's answer object.
    NotAnAnswer,
    /// Never sent: green was ejected by the isolate's breaker.
    Ejected,
}

impl ErrorClass {
    /// Every class, in the order the status shows them.
    pub const ALL: [ErrorClass; 9] = [
        ErrorClass::ServerError,
        ErrorClass::RateLimited,
        ErrorClass::Timeout,
        ErrorClass::Connection,
        ErrorClass::UpstreamOther,
        ErrorClass::Interrupted,
        ErrorClass::StreamError,
        ErrorClass::NotAnAnswer,
        ErrorClass::Ejected,
    ];

    /// The class's name: its field in [`ErrorCounts`]' JSON, and its label in the metrics.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::ServerError => "server_error",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Connection => "connection",
            ErrorClass::UpstreamOther => "upstream_other",
            ErrorClass::Interrupted => "interrupted",
            ErrorClass::StreamError => "stream_error",
            ErrorClass::NotAnAnswer => "not_an_answer",
            ErrorClass::Ejected => "ejected",
        }
    }

    /// The failure class of an attempt that ended as `class`, `interrupted` when its stream
    /// broke after it began; `None` for an answer that is not the upstream's failure (a
    /// success, or the client's own error).
    pub fn of(class: StatusClass, interrupted: bool) -> Option<ErrorClass> {
        match class {
            StatusClass::ServerError => Some(ErrorClass::ServerError),
            StatusClass::RateLimited => Some(ErrorClass::RateLimited),
            StatusClass::Timeout => Some(ErrorClass::Timeout),
            StatusClass::Connect => Some(ErrorClass::Connection),
            StatusClass::UpstreamError => Some(ErrorClass::UpstreamOther),
            StatusClass::StreamError => Some(ErrorClass::StreamError),
            StatusClass::NotAnAnswer => Some(ErrorClass::NotAnAnswer),
            StatusClass::Ejected => Some(ErrorClass::Ejected),
            StatusClass::Ok if interrupted => Some(ErrorClass::Interrupted),
            StatusClass::Ok | StatusClass::ClientError => None,
        }
    }
}

/// Upstream failures by class. Every one counts against the environment's error rate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorCounts {
    /// 5xx answers.
    pub server_error: u64,
    /// 429 answers.
    pub rate_limited: u64,
    /// No answer in time: a stream's first event, or a non-streamed answer.
    pub timeout: u64,
    /// The upstream could not be reached.
    pub connection: u64,
    /// 404 or 408: the upstream refused or gave up on the request.
    pub upstream_other: u64,
    /// A stream that failed after it began: broken, silent past the idle limit, or carrying an
    /// in-band error event.
    pub interrupted: u64,
    /// A stream that failed before its first event: an in-band error event first, or it ended
    /// or broke before any event. Absent (0) in what versions before it stored.
    #[serde(default)]
    pub stream_error: u64,
    /// A 2xx whose body is not the API's answer object: not JSON (a proxy's HTML page), JSON
    /// without `choices` (chat) or `output` (Responses), or a response that says it failed.
    /// Absent (0) in what versions before it stored.
    #[serde(default)]
    pub not_an_answer: u64,
    /// Green requests its breaker sent to blue without asking green, while green was ejected
    /// for failing or hanging ([`crate::request::breaker`]): green's failure predicted from its own
    /// failures just before, not observed. Absent (0) in what versions before it stored.
    #[serde(default)]
    pub ejected: u64,
}

impl ErrorCounts {
    /// The count of one class.
    pub fn get(&self, c: ErrorClass) -> u64 {
        match c {
            ErrorClass::ServerError => self.server_error,
            ErrorClass::RateLimited => self.rate_limited,
            ErrorClass::Timeout => self.timeout,
            ErrorClass::Connection => self.connection,
            ErrorClass::UpstreamOther => self.upstream_other,
            ErrorClass::Interrupted => self.interrupted,
            ErrorClass::StreamError => self.stream_error,
            ErrorClass::NotAnAnswer => self.not_an_answer,
            ErrorClass::Ejected => self.ejected,
        }
    }

    fn slot_mut(&mut self, c: ErrorClass) -> &mut u64 {
        match c {
            ErrorClass::ServerError => &mut self.server_error,
            ErrorClass::RateLimited => &mut self.rate_limited,
            ErrorClass::Timeout => &mut self.timeout,
            ErrorClass::Connection => &mut self.connection,
            ErrorClass::UpstreamOther => &mut self.upstream_other,
            ErrorClass::Interrupted => &mut self.interrupted,
            ErrorClass::StreamError => &mut self.stream_error,
            ErrorClass::NotAnAnswer => &mut self.not_an_answer,
            ErrorClass::Ejected => &mut self.ejected,
        }
    }

    /// Counts one failure of class `c`.
    pub fn add(&mut self, c: ErrorClass) {
        let slot = self.slot_mut(c);
        *slot = slot.saturating_add(1);
    }

    /// All failures.
    pub fn total(&self) -> u64 {
        ErrorClass::ALL
            .into_iter()
            .map(|c| self.get(c))
            .fold(0u64, u64::saturating_add)
    }

    /// True when every count is 0 (such counts are left out of stored documents).
    pub fn is_zero(&self) -> bool {
        ErrorClass::ALL.into_iter().all(|c| self.get(c) == 0)
    }

    fn merge(&mut self, o: &ErrorCounts) {
        // Counters saturate rather than wrap: a count can only ever be too low, never restart.
        for c in ErrorClass::ALL {
            let slot = self.slot_mut(c);
            *slot = slot.saturating_add(o.get(c));
        }
    }
}

/// Successful answers the app cannot use, by class (see [`crate::api::defects`]). A request counts
/// in one class at most.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DefectCounts {
    pub content_filter: u64,
    pub refusal: u64,
    pub truncated: u64,
    pub empty: u64,
    pub invalid_tool_call: u64,
    pub invalid_json: u64,
    pub dimension_mismatch: u64,
}

impl DefectCounts {
    /// The count of one class.
    pub fn get(&self, d: Defect) -> u64 {
        *self.slot(d)
    }

    fn slot(&self, d: Defect) -> &u64 {
        match d {
            Defect::ContentFilter => &self.content_filter,
            Defect::Refusal => &self.refusal,
            Defect::Truncated => &self.truncated,
            Defect::Empty => &self.empty,
            Defect::InvalidToolCall => &self.invalid_tool_call,
            Defect::InvalidJson => &self.invalid_json,
            Defect::DimensionMismatch => &self.dimension_mismatch,
        }
    }

    fn slot_mut(&mut self, d: Defect) -> &mut u64 {
        match d {
            Defect::ContentFilter => &mut self.content_filter,
            Defect::Refusal => &mut self.refusal,
            Defect::Truncated => &mut self.truncated,
            Defect::Empty => &mut self.empty,
            Defect::InvalidToolCall => &mut self.invalid_tool_call,
            Defect::InvalidJson => &mut self.invalid_json,
            Defect::DimensionMismatch => &mut self.dimension_mismatch,
        }
    }

    /// Answers with a defect of any class.
    pub fn total(&self) -> u64 {
        self.judged(&[])
    }

    /// Answers with a defect of a class not in `ignored`: what a verdict judges.
    pub fn judged(&self, ignored: &[Defect]) -> u64 {
        Defect::ALL
            .into_iter()
            .filter(|d| !ignored.contains(d))
            .map(|d| self.get(d))
            .fold(0, u64::saturating_add)
    }

    fn merge(&mut self, o: &DefectCounts) {
        for d in Defect::ALL {
            let slot = self.slot_mut(d);
            *slot = slot.saturating_add(o.get(d));
        }
    }
}

/// What apps said about the answers (`POST /v1/feedback`), attributed to the environment whose
/// model produced each answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeedbackCounts {
    /// Answers scored.
    pub scored: u64,
    /// Of them, scored negative (below 0: a thumbs-down).
    pub negative: u64,
    /// Scores for answers already scored that an isolate answered itself (never counted).
    /// Absent (0) in what versions before it stored, and left out while 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub replayed: u64,
    /// Scores refused by a rate bound, the credential's in an isolate or the controller's
    /// intake (never counted). Absent (0) before, and left out while 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub limited: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl FeedbackCounts {
    fn merge(&mut self, o: &FeedbackCounts) {
        self.scored = self.scored.saturating_add(o.scored);
        self.negative = self.negative.saturating_add(o.negative);
        self.replayed = self.replayed.saturating_add(o.replayed);
        self.limited = self.limited.saturating_add(o.limited);
    }
}

/// One environment's numbers over some window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EnvStats {
    /// Requests routed to this environment.
    pub requests: u64,
    /// Of them, those routed by a random draw (`split::Basis::Random`: no sticky key, or
    /// stickiness off), the only ones whose environment is an independent draw at the split's
    /// share: what the split check counts. Absent (0) in what versions before it stored.
    pub random_requests: u64,
    /// Upstream failures by class.
    pub errors: ErrorCounts,
    /// 4xx answers that are the client's fault (not 404, 408 or 429); not failures.
    pub client_errors: u64,
    /// Green requests that blue served after green failed (always 0 for blue).
    pub fallbacks: u64,
    /// Its own successful answers read whole (not cut, not a fallback's, the client stayed):
    /// those whose defects are judged, and so what a defect rate is a rate of. Absent (0) in
    /// what versions before it stored.
    pub answers: u64,
    /// The same fallbacks by the class of green's failure. Absent (all 0) in documents stored
    /// before they were told apart, whose fallbacks are then unclassified.
    #[serde(skip_serializing_if = "ErrorCounts::is_zero")]
    pub fallbacks_by_class: ErrorCounts,
    /// Successful answers with a defect, by class.
    pub defects: DefectCounts,
    /// Feedback apps sent about its answers.
    pub feedback: FeedbackCounts,
    /// Prompt tokens reported by the upstream.
    pub prompt_tokens: u64,
    /// Completion tokens reported by the upstream.
    pub completion_tokens: u64,
    /// Estimated spend from the price table, in USD. Always finite: prices are bounded; a
    /// `null` the first release stored for an overflowed cost reads as 0.
    #[serde(deserialize_with = "finite_or_zero")]
    pub cost_usd: f64,
    /// Milliseconds from arrival to the serving answer's headers.
    pub first_byte: Histogram,
    /// Milliseconds from arrival to the last byte sent.
    pub total: Histogram,
    /// The shortest and longest vectors of its embeddings answers; absent without any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_lengths: Option<Lengths>,
    /// The grader's verdicts on pairs of this environment's answers against the other's (green's
    /// only); absent while nothing was sent to the grader, and in what versions before it stored.
    #[serde(skip_serializing_if = "JudgedCounts::is_empty")]
    pub judged: JudgedCounts,
}

/// The range of vector lengths an environment's embeddings answers had: an index holds one.
/// Merged by taking the wider range, in any order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lengths {
    pub min: u64,
    pub max: u64,
}

impl Lengths {
    /// `a` widened to hold `b`.
    pub fn widen(a: Option<Lengths>, b: Option<Lengths>) -> Option<Lengths> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Lengths {
                min: a.min.min(b.min),
                max: a.max.max(b.max),
            }),
            (a, b) => a.or(b),
        }
    }
}

impl EnvStats {
    /// Failures of every class.
    pub fn errors(&self) -> u64 {
        self.errors.total()
    }

    /// Failures over requests; `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors() as f64 / self.requests as f64)
    }

    /// Adds `o` into this.
    pub fn merge(&mut self, o: &EnvStats) {
        self.requests = self.requests.saturating_add(o.requests);
        self.random_requests = self.random_requests.saturating_add(o.random_requests);
        self.errors.merge(&o.errors);
        self.client_errors = self.client_errors.saturating_add(o.client_errors);
        self.fallbacks = self.fallbacks.saturating_add(o.fallbacks);
        self.answers = self.answers.saturating_add(o.answers);
        self.fallbacks_by_class.merge(&o.fallbacks_by_class);
        self.defects.merge(&o.defects);
        self.feedback.merge(&o.feedback);
        self.prompt_tokens = self.prompt_tokens.saturating_add(o.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(o.completion_tokens);
        self.cost_usd = finite_sum(self.cost_usd, o.cost_usd);
        self.first_byte.merge(&o.first_byte);
        self.total.merge(&o.total);
        self.vector_lengths = Lengths::widen(self.vector_lengths, o.vector_lengths);
        self.judged.merge(&o.judged);
    }

    /// The reason green's embeddings answers cannot make one index: their vectors came in
    /// more than one length.
    pub fn mixed_lengths(&self) -> Option<String> {
        let l = self.vector_lengths.filter(|l| l.min != l.max)?;
        Some(format!(
            "green's vectors came in lengths from {} to {}: an index holds one length",
            l.min, l.max
        ))
    }

    /// The figures the admin API shows.
    pub fn summary(&self) -> Summary {
        Summary {
            requests: self.requests,
            errors: self.errors(),
            fallbacks: self.fallbacks,
            fallbacks_by_class: self.fallbacks_by_class.clone(),
            error_rate: self.error_rate().map(|r| round(r, 6)),
            p50_ms: self.total.quantile_ms(0.50),
            p95_ms: self.total.quantile_ms(0.95),
            p99_ms: self.total.quantile_ms(0.99),
            first_byte_p50_ms: self.first_byte.quantile_ms(0.50),
            first_byte_p95_ms: self.first_byte.quantile_ms(0.95),
            first_byte_p99_ms: self.first_byte.quantile_ms(0.99),
            mean_ms: self.total.mean_ms().map(|m| round(m, 1)),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cost_usd: round(self.cost_usd, 6),
            completion_tokens_per_request: (self.requests > 0)
                .then(|| round(self.completion_tokens as f64 / self.requests as f64, 1)),
            cost_per_request_usd: (self.requests > 0)
                .then(|| round(self.cost_usd / self.requests as f64, 8)),
            client_errors: self.client_errors,
            vector_lengths: self.vector_lengths,
            errors_by_class: self.errors.clone(),
            answers: self.answers,
            defects: self.defects.total(),
            // A share of the answers read whole (of the requests, in stats stored before those
            // were counted).
            defect_rate: {
                let of = if self.answers > 0 {
                    self.answers
                } else {
                    self.requests
                };
                (of > 0).then(|| round(self.defects.total() as f64 / of as f64, 6))
            },
            defects_by_class: self.defects.clone(),
            feedback_scored: self.feedback.scored,
            feedback_negative: self.feedback.negative,
            negative_rate: (self.feedback.scored > 0).then(|| {
                round(
                    self.feedback.negative as f64 / self.feedback.scored as f64,
                    6,
                )
            }),
        }
    }
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// What `/admin/status` shows for one environment. Latencies are whole milliseconds, total
/// time unless named `first_byte_`; `null` when there were no requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub requests: u64,
    pub errors: u64,
    pub fallbacks: u64,
    /// Fallbacks by the class of green's failure.
    pub fallbacks_by_class: ErrorCounts,
    pub error_rate: Option<f64>,
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    pub first_byte_p50_ms: Option<u64>,
    pub first_byte_p95_ms: Option<u64>,
    pub first_byte_p99_ms: Option<u64>,
    pub mean_ms: Option<f64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    /// Means per request, for comparing the two models side by side; `null` without requests.
    pub completion_tokens_per_request: Option<f64>,
    pub cost_per_request_usd: Option<f64>,
    pub client_errors: u64,
    pub errors_by_class: ErrorCounts,
    /// Successful answers read whole: what `defect_rate` is a share of.
    pub answers: u64,
    /// Successful answers the app cannot use (see `defects_by_class`).
    pub defects: u64,
    pub defect_rate: Option<f64>,
    pub defects_by_class: DefectCounts,
    /// Answers apps scored, and how many of them negatively.
    pub feedback_scored: u64,
    pub feedback_negative: u64,
    pub negative_rate: Option<f64>,
    /// The shortest and longest vectors of its embeddings answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector_lengths: Option<Lengths>,
}

/// A value per environment, serialized as `{"blue": ..., "green": ...}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pair<T> {
    pub blue: T,
    pub green: T,
}

impl<T> Pair<T> {
    /// The value for `env`.
    pub fn get(&self, env: Environment) -> &T {
        match env {
            Environment::Blue => &self.blue,
            Environment::Green => &self.green,
        }
    }

    /// The value for `env`, mutably.
    pub fn get_mut(&mut self, env: Environment) -> &mut T {
        match env {
            Environment::Blue => &mut self.blue,
            Environment::Green => &mut self.green,
        }
    }

    /// Applies `f` to both.
    pub fn map<U>(&self, f: impl Fn(&T) -> U) -> Pair<U> {
        Pair {
            blue: f(&self.blue),
            green: f(&self.green),
        }
    }
}

impl Pair<EnvStats> {
    /// Adds both sides of `o`.
    pub fn merge(&mut self, o: &Pair<EnvStats>) {
        self.blue.merge(&o.blue);
        self.green.merge(&o.green);
    }
}

/// Reads a stored number that an older version may have written as `null` (JSON's stand-in for
/// a non-finite float) as 0.
fn finite_or_zero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v: Option<f64> = Option::deserialize(d)?;
    Ok(v.filter(|x| x.is_finite()).unwrap_or(0.0))
}

/// `a + b`, held at `f64::MAX`: a stored cost is always finite.
fn finite_sum(a: f64, b: f64) -> f64 {
    (a + b).min(f64::MAX)
}

/// Highest price accepted, in USD per million tokens: a dollar a token, far above any model's,
/// so that no count of tokens can make a cost overflow.
pub const MAX_PRICE: f64 = 1_000_000.0;

/// A model's price in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Prompt (input) tokens.
    pub input: f64,
    /// Completion (output) tokens.
    pub output: f64,
}

/// Prices by model name, from the `MODEL_PRICES` setting. Models without a price cost 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Prices(BTreeMap<String, Price>);

impl Prices {
    /// Parses `{"model": {"input": 0.27, "output": 1.10}, ...}`; every price must be a finite
    /// number ≥ 0. A price above [`MAX_PRICE`] is taken as `MAX_PRICE` (refusing it would turn
    /// a setting an earlier version accepted into a 500 on every request after a deploy).
    pub fn parse(json: &str) -> Result<Prices, String> {
        // The messages say where, never what: a setting's errors do not echo its value.
        let map: BTreeMap<String, Price> = json::parse(json).map_err(|e| {
            format!(
                "must be JSON like {{\"model\": {{\"input\": 0.27, \"output\": 1.1}}}} \
                 (the first problem is at line {}, column {})",
                e.line(),
                e.column()
            )
        })?;
        let mut map = map;
        for (i, p) in map.values_mut().enumerate() {
            for (side, v) in [("input", &mut p.input), ("output", &mut p.output)] {
                if !(v.is_finite() && *v >= 0.0) {
                    return Err(format!(
                        "must give every model finite prices ≥ 0; the {side} price of model \
                         {} (in name order) is not",
                        i + 1
                    ));
                }
                *v = v.min(MAX_PRICE);
            }
        }
        Ok(Prices(map))
    }

    /// Estimated cost of `usage` on `model`, in USD.
    pub fn cost(&self, model: &str, usage: &Usage) -> f64 {
        self.0.get(model).map_or(0.0, |p| {
            (usage.prompt_tokens as f64 * p.input + usage.completion_tokens as f64 * p.output)
                / 1_000_000.0
        })
    }
}

/// The environment an outcome counts against: green when green failed and blue served.
pub fn routed_environment(o: &Outcome) -> Environment {
    if o.fallback.is_some() {
        Environment::Green
    } else {
        o.environment
    }
}

impl EnvStats {
    /// Adds one request's outcome. The caller picks the environment with
    /// [`routed_environment`].
    pub fn record(&mut self, o: &Outcome, prices: &Prices) {
        self.requests = self.requests.saturating_add(1);
        if o.basis == Basis::Random {
            self.random_requests = self.random_requests.saturating_add(1);
        }
        let class = match o.fallback {
            Some(reason) => StatusClass::of_fallback(reason),
            None => o.class,
        };
        match ErrorClass::of(class, o.interrupted) {
            Some(c) => self.errors.add(c),
            None if class == StatusClass::ClientError => {
                self.client_errors = self.client_errors.saturating_add(1)
            }
            None => {}
        }
        if o.fallback.is_some() {
            self.fallbacks = self.fallbacks.saturating_add(1);
            // Green's failure, whatever became of blue's answer.
            if let Some(c) = ErrorClass::of(class, false) {
                self.fallbacks_by_class.add(c);
            }
        }
        // Only the routed environment's own successful answers: a fallback's answer is blue's.
        let whole = o.fallback.is_none() && o.class == StatusClass::Ok && !o.interrupted;
        if whole && !o.client_gone {
            self.answers = self.answers.saturating_add(1);
        }
        if let (Some(d), true) = (o.defect, whole) {
            let slot = self.defects.slot_mut(d);
            *slot = slot.saturating_add(1);
        }
        if let (Some(n), true) = (o.vector_length, whole) {
            let one = Some(Lengths { min: n, max: n });
            self.vector_lengths = Lengths::widen(self.vector_lengths, one);
        }
        if let Some(ms) = o.first_byte_ms {
            self.first_byte.record(ms);
        }
        self.total.record(o.total_ms);
        if let Some(u) = &o.usage {
            self.prompt_tokens = self.prompt_tokens.saturating_add(u.prompt_tokens);
            self.completion_tokens = self.completion_tokens.saturating_add(u.completion_tokens);
            self.cost_usd = finite_sum(self.cost_usd, prices.cost(&o.model, u));
        }
    }
}

/// One minute's stats for one environment, as an isolate sends them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchEntry {
    /// Unix minute (ms / 60 000) the requests arrived in.
    pub minute: u64,
    /// The environment they were routed to.
    pub env: Environment,
    /// Whether a client forced them there (`x-bluegreen-environment`): counted apart, never
    /// judged. Absent (false) in batches of versions that did not tell them apart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
    /// The routing document version they were routed under (0: the vars' split, before any
    /// document). Absent in batches of versions that did not send it: the controller then
    /// takes the split in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Their stats.
    pub stats: EnvStats,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolate::batch::{Accumulator, Batch};
    use crate::request::fallback::{Attempt, FallbackReason};
    use crate::request::split::Basis;

    fn outcome(env: Environment, class: StatusClass) -> Outcome {
        Outcome {
            request_id: "r".into(),
            at_ms: 120_500,
            route: "default".into(),
            api: crate::api::Api::Chat,
            environment: env,
            model: if env == Environment::Blue {
                "blue-m"
            } else {
                "green-m"
            }
            .into(),
            basis: Basis::Random,
            routing_version: 0,
            stream: false,
            status: 200,
            class,
            fallback: None,
            first_byte_ms: Some(40),
            total_ms: 50,
            usage: Some(Usage {
                prompt_tokens: 1000,
                completion_tokens: 500,
            }),
            interrupted: false,
            defect: None,
            vector_length: None,
            client_gone: false,
        }
    }

    fn prices() -> Prices {
        Prices::parse(
            r#"{"blue-m": {"input": 0.5, "output": 2}, "green-m": {"input": 1, "output": 4}}"#,
        )
        .unwrap()
    }

    /// Vector lengths merge into the widest range, in any order and grouping, and are counted
    /// only from whole answers; stats without any store none.
    #[test]
    fn vector_lengths_merge_into_one_range_in_any_order() {
        let with = |n: Option<u64>, class: StatusClass| {
            let mut s = EnvStats::default();
            let mut o = outcome(Environment::Green, class);
            o.vector_length = n;
            s.record(&o, &prices());
            s
        };
        let parts = [
            with(Some(1536), StatusClass::Ok),
            with(None, StatusClass::Ok),
            with(Some(u64::MAX), StatusClass::Ok),
            with(Some(0), StatusClass::Ok),
            with(Some(7), StatusClass::ServerError),
        ];
        let want = Some(Lengths {
            min: 0,
            max: u64::MAX,
        });
        // Every rotation, and a split into two groups merged first.
        for k in 0..parts.len() {
            let mut all = EnvStats::default();
            for p in parts.iter().cycle().skip(k).take(parts.len()) {
                all.merge(p);
            }
            assert_eq!(all.vector_lengths, want, "rotation {k}");
            let (mut a, mut b) = (EnvStats::default(), EnvStats::default());
            for (i, p) in parts.iter().enumerate() {
                if i < k {
                    a.merge(p)
                } else {
                    b.merge(p)
                }
            }
            b.merge(&a);
            assert_eq!(b.vector_lengths, want, "groups at {k}");
        }
        assert_eq!(
            parts[4].vector_lengths, None,
            "a failed answer has no vectors"
        );
        assert!(!serde_json::to_string(&parts[1])
            .unwrap()
            .contains("vector_lengths"));
        let one = with(Some(1536), StatusClass::Ok);
        assert_eq!(one.mixed_lengths(), None);
        let mut two = one.clone();
        two.merge(&with(Some(3072), StatusClass::Ok));
        assert!(two.mixed_lengths().unwrap().contains("from 1536 to 3072"));
    }

    #[test]
    fn a_fallback_counts_once_against_green_priced_at_blue() {
        let mut o = outcome(Environment::Blue, StatusClass::Ok);
        o.fallback = Some(FallbackReason::Failed(Attempt::Status(503)));
        assert_eq!(routed_environment(&o), Environment::Green);
        let mut s = EnvStats::default();
        s.record(&o, &prices());
        assert_eq!((s.requests, s.errors(), s.fallbacks), (1, 1, 1));
        assert_eq!(s.errors.server_error, 1);
        assert_eq!(s.fallbacks_by_class.server_error, 1);
        // Served by blue-m: 1000 × 0.5 + 500 × 2 = 1500 µUSD.
        assert!((s.cost_usd - 0.0015).abs() < 1e-12);
    }

    #[test]
    fn every_error_class_is_listed_once_under_its_json_name() {
        // Each class set alone serializes as exactly its own field: ALL names every field of
        // ErrorCounts, so a class added later is in every total, merge and metric.
        let fields = serde_json::to_value(ErrorCounts::default()).unwrap();
        assert_eq!(fields.as_object().unwrap().len(), ErrorClass::ALL.len());
        for c in ErrorClass::ALL {
            let mut e = ErrorCounts::default();
            e.add(c);
            let v = serde_json::to_value(&e).unwrap();
            assert_eq!(v[c.name()], 1, "{c:?}");
            assert_eq!((e.total(), e.get(c), e.is_zero()), (1, 1, false));
        }
    }

    #[test]
    fn fallbacks_count_by_the_class_of_greens_failure() {
        use crate::request::fallback::Attempt::{Connect, Status, Timeout};
        let p = prices();
        let mut s = EnvStats::default();
        // (green's attempt, blue's answer class, blue's stream cut)
        let cases = [
            (Status(503), StatusClass::Ok, false),
            (Status(500), StatusClass::Ok, true),
            (Status(429), StatusClass::Ok, false),
            (Status(404), StatusClass::ServerError, false),
            (Timeout, StatusClass::Ok, false),
            (Timeout, StatusClass::Ok, false),
            (Connect, StatusClass::ClientError, false),
        ];
        for (attempt, class, interrupted) in cases {
            let mut o = outcome(Environment::Blue, class);
            o.fallback = Some(FallbackReason::Failed(attempt));
            o.interrupted = interrupted;
            s.record(&o, &p);
        }
        let by = &s.fallbacks_by_class;
        let counts = [
            by.server_error,
            by.rate_limited,
            by.timeout,
            by.connection,
            by.upstream_other,
            by.interrupted,
        ];
        assert_eq!(counts, [2, 1, 2, 1, 1, 0]);
        assert_eq!(
            (s.fallbacks, by.total(), s.errors.clone()),
            (7, 7, by.clone())
        );
        // Stored documents leave the field out while it is all zeros, and read it back.
        let blue = EnvStats::default();
        assert!(!serde_json::to_string(&blue)
            .unwrap()
            .contains("fallbacks_by_class"));
        let back: EnvStats = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn classes_land_in_their_counters() {
        let p = prices();
        let mut s = EnvStats::default();
        for class in [
            StatusClass::Ok,
            StatusClass::ClientError,
            StatusClass::ServerError,
            StatusClass::RateLimited,
            StatusClass::Timeout,
            StatusClass::Connect,
            StatusClass::UpstreamError,
            StatusClass::StreamError,
            StatusClass::NotAnAnswer,
            StatusClass::Ejected,
        ] {
            s.record(&outcome(Environment::Green, class), &p);
        }
        let mut cut = outcome(Environment::Green, StatusClass::Ok);
        cut.interrupted = true;
        s.record(&cut, &p);
        assert_eq!(s.requests, 11);
        assert_eq!(s.client_errors, 1);
        // Everything but Ok and ClientError: 9 of 11, one in each class.
        assert_eq!(s.errors(), 9);
        assert_eq!(s.error_rate(), Some(9.0 / 11.0));
        let e = &s.errors;
        let each = [
            e.server_error,
            e.rate_limited,
            e.timeout,
            e.connection,
            e.upstream_other,
            e.interrupted,
            e.stream_error,
            e.not_an_answer,
            e.ejected,
        ];
        assert_eq!(each, [1; 9]);
        let sum = s.summary();
        assert_eq!((sum.p50_ms, sum.first_byte_p95_ms), (Some(50), Some(40)));
        // 11 × (1000 × 1 + 500 × 4) / 1e6 = 0.033.
        assert_eq!(sum.cost_usd, 0.033);
        assert_eq!(sum.prompt_tokens, 11000);
    }

    #[test]
    fn a_green_stream_that_failed_before_its_first_event_counts_as_greens_stream_error() {
        let mut o = outcome(Environment::Blue, StatusClass::Ok);
        o.stream = true;
        o.fallback = Some(FallbackReason::Failed(Attempt::StreamError));
        assert_eq!(routed_environment(&o), Environment::Green);
        let mut s = EnvStats::default();
        s.record(&o, &prices());
        assert_eq!((s.requests, s.errors(), s.fallbacks), (1, 1, 1));
        assert_eq!(s.errors.stream_error, 1);
        let json = serde_json::to_value(s.summary()).unwrap();
        assert_eq!(json["errors_by_class"]["stream_error"], 1);
    }

    /// A breaker never hides a broken green: every request it moved to blue counts in green,
    /// as a request, a fallback and an error (`ejected` when green was not asked, `timeout`
    /// when it was given up on).
    #[test]
    fn requests_the_breaker_moved_count_as_green_errors() {
        use crate::request::breaker::ShedReason;
        let mut s = EnvStats::default();
        for reason in [
            ShedReason::Ejected,
            ShedReason::Ejected,
            ShedReason::Abandoned,
        ] {
            let mut o = outcome(Environment::Blue, StatusClass::Ok);
            o.fallback = Some(FallbackReason::Breaker(reason));
            assert_eq!(routed_environment(&o), Environment::Green);
            s.record(&o, &prices());
        }
        assert_eq!((s.requests, s.errors(), s.fallbacks), (3, 3, 3));
        assert_eq!((s.errors.ejected, s.errors.timeout), (2, 1));
        let json = serde_json::to_value(s.summary()).unwrap();
        assert_eq!(json["errors_by_class"]["ejected"], 2);
    }

    #[test]
    fn accumulator_splits_by_minute_and_environment_and_merges_back() {
        let p = prices();
        let mut acc = Accumulator::default();
        assert!(acc.is_empty());
        let mut late = outcome(Environment::Blue, StatusClass::Ok);
        late.at_ms = 180_000;
        for o in [
            outcome(Environment::Blue, StatusClass::Ok),
            outcome(Environment::Green, StatusClass::Ok),
            outcome(Environment::Blue, StatusClass::ServerError),
            late,
        ] {
            acc.add(&o, &p);
        }
        let batch = acc.take("b1".into());
        assert!(acc.is_empty());
        assert_eq!(batch.requests(), 4);
        let keys: Vec<(u64, Environment)> =
            batch.entries.iter().map(|e| (e.minute, e.env)).collect();
        assert_eq!(
            keys,
            [
                (2, Environment::Blue),
                (2, Environment::Green),
                (3, Environment::Blue)
            ]
        );
        let json = serde_json::to_string(&batch).unwrap();
        let back: Batch = serde_json::from_str(&json).unwrap();
        assert_eq!(back, batch);
        let mut pair = Pair::<EnvStats>::default();
        for e in &back.entries {
            pair.get_mut(e.env).merge(&e.stats);
        }
        assert_eq!((pair.blue.requests, pair.blue.errors()), (3, 1));
        assert_eq!(pair.green.requests, 1);
    }

    #[test]
    fn forced_requests_go_in_entries_of_their_own() {
        let p = prices();
        let mut acc = Accumulator::default();
        let mut forced = outcome(Environment::Green, StatusClass::ServerError);
        forced.basis = Basis::Forced;
        acc.add(&forced, &p);
        acc.add(&forced, &p);
        acc.add(&outcome(Environment::Green, StatusClass::Ok), &p);
        let batch = acc.take("b2".into());
        // (environment, forced, requests, errors)
        let entries: Vec<(Environment, bool, u64, u64)> = batch
            .entries
            .iter()
            .map(|e| (e.env, e.forced, e.stats.requests, e.stats.errors()))
            .collect();
        assert_eq!(
            entries,
            [
                (Environment::Green, false, 1, 0),
                (Environment::Green, true, 2, 2)
            ]
        );
        // An entry of a version that did not tell them apart reads as not forced.
        let old: BatchEntry =
            serde_json::from_str(r#"{"minute": 2, "env": "green", "stats": {"requests": 1}}"#)
                .unwrap();
        assert!(!old.forced);
    }

    #[test]
    fn only_randomly_routed_requests_count_as_random() {
        let p = prices();
        let mut s = EnvStats::default();
        for basis in [Basis::Random, Basis::Sticky, Basis::Forced, Basis::Random] {
            let mut o = outcome(Environment::Green, StatusClass::Ok);
            o.basis = basis;
            s.record(&o, &p);
        }
        assert_eq!((s.requests, s.random_requests), (4, 2));
        let mut merged = s.clone();
        merged.merge(&s);
        assert_eq!((merged.requests, merged.random_requests), (8, 4));
        // Stats of a version that did not count them read as none random.
        let old: EnvStats = serde_json::from_str(r#"{"requests": 3}"#).unwrap();
        assert_eq!(old.random_requests, 0);
    }

    #[test]
    fn prices_are_validated() {
        assert!(Prices::parse("{}").is_ok());
        assert!(Prices::parse(r#"{"m": {"input": -1, "output": 1}}"#).is_err());
        // An absurd price is held at the highest, so that no cost can overflow.
        let huge = Prices::parse(r#"{"m": {"input": 1e308, "output": 1}}"#).unwrap();
        let tokens = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 0,
        };
        assert_eq!(huge.cost("m", &tokens), MAX_PRICE);
        assert!(Prices::parse(r#"{"m": {"input": 1}}"#).is_err());
        assert!(Prices::parse(r#"{"m": {"input": 1, "output": 1, "x": 2}}"#).is_err());
        assert!(Prices::parse("[1]").is_err());
        let p = Prices::parse(r#"{"m": {"input": 1, "output": 1}}"#).unwrap();
        assert_eq!(p.cost("other", &Usage::default()), 0.0);
    }
}
