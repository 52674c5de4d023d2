//! The metrics endpoint's body: the controller's numbers in Prometheus' text exposition format
//! (version 0.0.4), built from plain values. The shell authorizes the scrape and serves the
//! text; nothing here reads a clock, storage or the network.
//!
//! Counters come from the lifetime counters ([`crate::controller::lifetime`]), which only grow for the life
//! of the deployment, labelled by `environment` and `model`. Latency and time to first byte are
//! Prometheus histograms whose `le` edges ([`LE_MS`]) are bucket boundaries of the controller's
//! own log-linear histograms ([`crate::stats::hist`]), so every cumulative count is exact, not
//! interpolated. Times are recorded in whole milliseconds, and a recorded `v` stands for
//! `[v, v+1)` ms: the bucket `le="0.1"` counts the requests recorded at 99 ms or less. Gauges
//! describe the rollout now: the split, the phase, the step, the latest verdict and its
//! evidence (as natural logs, like the status), the routing document's sync and the last tick.
//!
//! Every sample is finite (a value that is not is left out), label values are escaped as the
//! format asks (a model name may hold quotes or backslashes), and a family with no sample is
//! left out whole. The text grows with the number of lifetime series, which is bounded
//! ([`crate::controller::lifetime::MAX_SERIES`]): a scrape's cost is bounded too.

use std::fmt::Write;

use crate::api::defects::Defect;
use crate::controller::lifetime::Series;
use crate::controller::rollout::{Phase, State};
use crate::controller::windows::Scopes;
use crate::environment::Environment;
use crate::stats::hist::Histogram;
use crate::stats::{EnvStats, ErrorClass, Pair};
use crate::verdict::health::VerdictStatus;

mod merge;
pub use merge::{merge, route_scrape_family};

/// The content type of the body.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The histograms' `le` edges in milliseconds: 25 ms doubling to 409.6 s. Each is 50 × 2^k or
/// 25 ms, a bucket boundary of [`crate::stats::hist`] (50 × 2^k lies in the octave [32, 64) × 2^k,
/// whose buckets are 2^k wide), so the counts below them are exact.
pub const LE_MS: [u64; 15] = [
    25, 50, 100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 51_200, 102_400, 204_800,
    409_600,
];

/// One test of the sequential verdict's evidence, as logs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestEvidence {
    /// `errors`, `latency`, `defects`, `guard` or `judge`.
    pub test: &'static str,
    /// Natural log of the likelihood ratio against green.
    pub log_evidence: f64,
    /// Natural log of the ratio at which green is rolled back.
    pub log_rollback_at: f64,
}

/// Everything the endpoint shows, as plain values.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot<'a> {
    /// The route whose controller this is: every sample carries it as its `route` label.
    pub route: &'a str,
    /// The lifetime counters' routed series, by environment and model.
    pub series: &'a [Series],
    /// Requests clients forced to an environment, over the same life.
    pub forced: Pair<u64>,
    /// Shadow copies green answered, by green's model, and the copies given up unfinished and
    /// not made (capped), over the same life.
    pub shadow: &'a [Series],
    pub shadow_unfinished: u64,
    pub shadow_capped: u64,
    /// The split in force.
    pub blue_model: &'a str,
    pub green_model: &'a str,
    pub green_percent: f64,
    pub phase: Phase,
    /// The current step (1-based) while a rollout is progressing or paused.
    pub step: Option<usize>,
    /// The latest verdict of the current (or last) rollout.
    pub verdict: Option<VerdictStatus>,
    /// Its sequential evidence; empty for the threshold method or before a verdict.
    pub evidence: Vec<TestEvidence>,
    /// The routing document in KV holds the split in force (as in the status).
    pub routing_synced: bool,
    /// The stored rollout state cannot be read (the status's `storage_problem`).
    pub storage_problem: bool,
    /// When the last tick ran, unix milliseconds; `None` before the first.
    pub last_tick_ms: Option<u64>,
    /// How isolates' stats reach the controller (`direct`, or `queue` with a stats queue
    /// bound), as in the status.
    pub stats_transport: &'a str,
    /// Through the queue: the age of the oldest batch at the last intake (the status's
    /// `stats_queue_lag_ms`).
    pub stats_queue_lag_ms: Option<u64>,
    /// Through the queue: when that last intake was, unix milliseconds.
    pub stats_queue_intake_ms: Option<u64>,
}

impl<'a> Snapshot<'a> {
    /// The controller's numbers now: its state, its windows' lifetime counters, and what the
    /// shell knows beside them.
    pub fn of(
        state: &'a State,
        scopes: &'a Scopes,
        routing_synced: bool,
        storage_problem: bool,
        last_tick_ms: Option<u64>,
    ) -> Snapshot<'a> {
        let split = state.split();
        let verdict = state.verdict().map(|v| &v.verdict);
        let evidence = verdict
            .and_then(|v| v.evidence.as_ref())
            .map(|r| {
                let mut tests = vec![("errors", &r.errors), ("latency", &r.latency)];
                tests.extend(r.defects.as_ref().map(|d| ("defects", d)));
                let mut out: Vec<TestEvidence> = tests
                    .into_iter()
                    .map(|(test, t)| TestEvidence {
                        test,
                        log_evidence: t.log_evidence,
                        log_rollback_at: t.rollback_at.ln(),
                    })
                    .collect();
                out.push(TestEvidence {
                    test: "guard",
                    log_evidence: r.guard_log_evidence,
                    log_rollback_at: r.guard_rollback_at.ln(),
                });
                out.extend(r.judge.as_ref().map(|j| TestEvidence {
                    test: "judge",
                    log_evidence: j.log_evidence,
                    log_rollback_at: j.rollback_at.ln(),
                }));
                out
            })
            .unwrap_or_default();
        Snapshot {
            route: crate::route::DEFAULT,
            series: &scopes.lifetime.series,
            forced: scopes.lifetime.forced.clone(),
            shadow: &scopes.lifetime.shadow,
            shadow_unfinished: scopes.lifetime.shadow_unfinished,
            shadow_capped: scopes.lifetime.shadow_capped,
            blue_model: &split.blue_model,
            green_model: &split.green_model,
            green_percent: split.green_percent,
            phase: state.phase(),
            step: state.step_number(),
            verdict: verdict.map(|v| v.status),
            evidence,
            routing_synced,
            storage_problem,
            last_tick_ms,
            stats_transport: "direct",
            stats_queue_lag_ms: None,
            stats_queue_intake_ms: None,
        }
    }
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A float as the format reads it (Go's `ParseFloat`): whole numbers without a fraction, the
/// rest in the shortest form that reads back the same (`0.0015`, `1e300`), written by the
/// JSON serializer the worker already carries. `None` when not finite.
fn real(x: f64) -> Option<String> {
    if !x.is_finite() {
        return None;
    }
    if x.fract() == 0.0 && x.abs() < 1e15 {
        return Some((x as i64).to_string());
    }
    serde_json::to_string(&x).ok()
}

/// An `le` edge in seconds, from milliseconds, without float rounding: `0.025`, `1.6`.
fn le_label(ms: u64) -> String {
    let (s, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        return s.to_string();
    }
    let digits = format!("{frac:03}");
    format!("{s}.{}", digits.trim_end_matches('0'))
}

/// A sample's value: counts exactly, measurements as floats.
#[derive(Debug, Clone, Copy)]
enum Value {
    Count(u64),
    Real(f64),
}

/// The exposition text, written family by family. Samples go straight into the text (a
/// scrape builds no intermediate structure); a family left without samples is taken out again.
struct Text {
    out: String,
    /// `route="<name>"`, escaped once: the first label of every sample.
    route: String,
    /// The family being written, where it began, and how many samples it has (1 while no
    /// family is open, so that ending none takes nothing out).
    name: &'static str,
    start: usize,
    samples: usize,
}

impl Text {
    /// Ends the family being written (taking it out when it got no sample) and begins `name`
    /// with its HELP and TYPE lines. `help` holds no backslash or line feed (a test checks).
    fn family(&mut self, name: &'static str, kind: &str, help: &str) {
        self.end();
        self.name = name;
        self.start = self.out.len();
        self.samples = 0;
        // Writing to a String cannot fail. (HELP texts are ours, with nothing to escape.)
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// Writes `name{suffix}{labels} value`; nothing for a value that is not finite.
    fn sample(&mut self, suffix: &str, labels: &[(&str, &str)], value: Value) {
        let value = match value {
            Value::Count(n) => n.to_string(),
            Value::Real(x) => match real(x) {
                Some(v) => v,
                None => return,
            },
        };
        let out = &mut self.out;
        out.push_str(self.name);
        out.push_str(suffix);
        out.push('{');
        out.push_str(&self.route);
        for (k, v) in labels {
            let _ = write!(out, ",{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
        let _ = writeln!(out, " {value}");
        self.samples += 1;
    }

    /// Ends the family being written, taking it out when it got no sample.
    fn end(&mut self) {
        if self.samples == 0 {
            self.out.truncate(self.start);
        }
        self.samples = 1;
    }
}

/// The counts of a series' stats that a per-series counter family shows, by label value.
type Counts = fn(&EnvStats) -> Vec<(&'static str, u64)>;

impl Text {
    /// One sample per series and `(label value, count)` that `counts` gives.
    fn per_series(&mut self, series: &[&Series], label: &str, counts: Counts) {
        for s in series {
            for (value, n) in counts(&s.stats) {
                let labels = [
                    ("environment", s.environment.as_str()),
                    ("model", &s.model),
                    (label, value),
                ];
                self.sample("", &labels, Value::Count(n));
            }
        }
    }

    /// A Prometheus histogram per series, from `hist(stats)`, in seconds.
    fn histograms(&mut self, series: &[&Series], hist: fn(&EnvStats) -> &Histogram) {
        for s in series {
            let h = hist(&s.stats);
            let env = s.environment.as_str();
            let below = h.counts_below(&LE_MS);
            let last = below.last().copied().unwrap_or(0);
            for (ms, n) in LE_MS.iter().zip(below) {
                let le = le_label(*ms);
                let labels = [("environment", env), ("model", &s.model), ("le", &le)];
                self.sample("_bucket", &labels, Value::Count(n));
            }
            let count = h.count().max(last);
            let labels = [("environment", env), ("model", &s.model), ("le", "+Inf")];
            self.sample("_bucket", &labels, Value::Count(count));
            let labels = [("environment", env), ("model", s.model.as_str())];
            self.sample("_sum", &labels, Value::Real(h.sum_ms() as f64 / 1000.0));
            self.sample("_count", &labels, Value::Count(count));
        }
    }

    /// Each series' spend, labelled by environment and model.
    fn costs(&mut self, series: &[&Series]) {
        for s in series {
            let labels = [
                ("environment", s.environment.as_str()),
                ("model", s.model.as_str()),
            ];
            self.sample("", &labels, Value::Real(s.stats.cost_usd));
        }
    }

    /// A 0/1 gauge sample per name, 1 for `now`.
    fn one_of(&mut self, label: &str, names: &[&str], now: &str) {
        for name in names {
            self.sample("", &[(label, name)], Value::Count(u64::from(*name == now)));
        }
    }
}

/// The exposition text for `snap`.
pub fn render(snap: &Snapshot) -> String {
    let series = ordered(snap.series);
    let green: Vec<&Series> = series
        .iter()
        .copied()
        .filter(|s| s.environment == Environment::Green)
        .collect();
    let mut t = Text {
        out: String::with_capacity(4096 + 6000 * series.len()),
        route: format!("route=\"{}\"", escape_label(snap.route)),
        name: "",
        start: 0,
        samples: 1,
    };
    counters(&mut t, &series, &green, &snap.forced);
    t.family(
        "bluegreen_request_duration_seconds",
        "histogram",
        "Time from a request's arrival to the last byte of its answer, as the client saw it.",
    );
    t.histograms(&series, |s| &s.total);
    t.family(
        "bluegreen_time_to_first_byte_seconds",
        "histogram",
        "Time from a request's arrival to the serving answer's response headers.",
    );
    t.histograms(&series, |s| &s.first_byte);
    shadow(&mut t, snap);
    judged(&mut t, &green);
    gauges(&mut t, snap);
    t.end();
    t.out
}

/// `series` blue first, then by model: an insertion sort, as there are at most a few series
/// (and the standard sorts would add kilobytes of wasm for this one ordering).
fn ordered(series: &[Series]) -> Vec<&Series> {
    fn key(s: &Series) -> (bool, &str) {
        (s.environment == Environment::Green, &s.model)
    }
    let mut out: Vec<&Series> = series.iter().collect();
    for i in 1..out.len() {
        let mut j = i;
        while j > 0 && key(out[j - 1]) > key(out[j]) {
            out.swap(j - 1, j);
            j -= 1;
        }
    }
    out
}

/// Requests by how they ended: ok, client_error, or the class of the upstream failure.
fn by_class(s: &EnvStats) -> Vec<(&'static str, u64)> {
    let failed = s.errors.total().saturating_add(s.client_errors);
    let mut v = vec![
        ("ok", s.requests.saturating_sub(failed)),
        ("client_error", s.client_errors),
    ];
    v.extend(ErrorClass::ALL.map(|c| (c.name(), s.errors.get(c))));
    v
}

fn by_defect(s: &EnvStats) -> Vec<(&'static str, u64)> {
    Defect::ALL.map(|d| (d.name(), s.defects.get(d))).into()
}

fn by_token_kind(s: &EnvStats) -> Vec<(&'static str, u64)> {
    vec![
        ("prompt", s.prompt_tokens),
        ("completion", s.completion_tokens),
    ]
}

/// The counters: requests by outcome class, fallbacks by reason, defects, tokens, cost.
fn counters(t: &mut Text, series: &[&Series], green: &[&Series], forced: &Pair<u64>) {
    t.family(
        "bluegreen_requests_total",
        "counter",
        "Requests routed to an environment, by how they ended: ok, client_error, or the class \
         of the upstream failure that counts against the environment.",
    );
    t.per_series(series, "class", by_class);
    t.family(
        "bluegreen_fallbacks_total",
        "counter",
        "Green requests that blue served after green failed, by the class of green's failure \
         (unclassified: counted by a version that did not tell them apart).",
    );
    t.per_series(green, "reason", |s| {
        let mut v: Vec<(&'static str, u64)> = ErrorClass::ALL
            .map(|c| (c.name(), s.fallbacks_by_class.get(c)))
            .into();
        let unclassified = s.fallbacks.saturating_sub(s.fallbacks_by_class.total());
        if unclassified > 0 {
            v.push(("unclassified", unclassified));
        }
        v
    });
    t.family(
        "bluegreen_defects_total",
        "counter",
        "Successful answers the app cannot use, by class.",
    );
    t.per_series(series, "class", by_defect);
    feedback_counters(t, series);
    spend_counters(t, series, forced);
}

/// Users' scores: counted, and refused.
fn feedback_counters(t: &mut Text, series: &[&Series]) {
    t.family(
        "bluegreen_feedback_total",
        "counter",
        "Scores the controller counted (POST /v1/feedback), by the environment that answered.",
    );
    t.per_series(series, "score", |s| {
        vec![
            ("negative", s.feedback.negative),
            (
                "not_negative",
                s.feedback.scored.saturating_sub(s.feedback.negative),
            ),
        ]
    });
    t.family(
        "bluegreen_feedback_refused_total",
        "counter",
        "Scores refused uncounted: a replay, or over a rate bound.",
    );
    t.per_series(series, "reason", |s| {
        vec![
            ("replay", s.feedback.replayed),
            ("rate_limited", s.feedback.limited),
        ]
    });
}

/// Tokens and spend by series, and the requests clients forced.
fn spend_counters(t: &mut Text, series: &[&Series], forced: &Pair<u64>) {
    t.family(
        "bluegreen_tokens_total",
        "counter",
        "Tokens reported by the upstream, by kind.",
    );
    t.per_series(series, "kind", by_token_kind);
    t.family(
        "bluegreen_cost_usd_total",
        "counter",
        "Estimated spend in US dollars, from MODEL_PRICES.",
    );
    t.costs(series);
    t.family(
        "bluegreen_forced_requests_total",
        "counter",
        "Requests a client forced to an environment with x-bluegreen-environment; never judged.",
    );
    for env in [Environment::Blue, Environment::Green] {
        let labels = [("environment", env.as_str())];
        t.sample("", &labels, Value::Count(*forced.get(env)));
    }
}

/// The shadow copies' counters, apart from the routed requests' (a copy is a second upstream
/// request for one a client sent, never an answer a client got): by how they ended, defects,
/// tokens and spend by green's model, and the copies given up or not made. Left out whole until
/// the controller has counted a copy.
fn shadow(t: &mut Text, snap: &Snapshot) {
    if snap.shadow.is_empty() && snap.shadow_unfinished == 0 && snap.shadow_capped == 0 {
        return;
    }
    let copies = ordered(snap.shadow);
    t.family(
        "bluegreen_shadow_requests_total",
        "counter",
        "Shadow copies of blue's requests sent to green, by how they ended (as \
         bluegreen_requests_total); never served to a client.",
    );
    t.per_series(&copies, "class", by_class);
    t.family(
        "bluegreen_shadow_defects_total",
        "counter",
        "Shadow copies' successful answers the app could not have used, by class.",
    );
    t.per_series(&copies, "class", by_defect);
    t.family(
        "bluegreen_shadow_tokens_total",
        "counter",
        "Tokens the upstream reported for shadow copies, by kind.",
    );
    t.per_series(&copies, "kind", by_token_kind);
    t.family(
        "bluegreen_shadow_cost_usd_total",
        "counter",
        "Estimated spend on shadow copies in US dollars, from MODEL_PRICES.",
    );
    t.costs(&copies);
    t.family(
        "bluegreen_shadow_unfinished_total",
        "counter",
        "Shadow copies given up before green's answer ended (the runtime's background limit).",
    );
    t.sample("", &[], Value::Count(snap.shadow_unfinished));
    t.family(
        "bluegreen_shadow_capped_total",
        "counter",
        "Requests drawn for a shadow copy but not copied: an isolate's SHADOW_MAX_PER_MINUTE, \
         its copies running at once, or the body's size.",
    );
    t.sample("", &[], Value::Count(snap.shadow_capped));
}

/// The grader's verdicts on pairs of green's answers against blue's ([`crate::judge`]), by
/// green's model, and what grading cost, apart from both environments' own. Left out whole
/// until a pair was sent to a grader.
fn judged(t: &mut Text, green: &[&Series]) {
    if green.iter().all(|s| s.stats.judged.is_empty()) {
        return;
    }
    t.family(
        "bluegreen_judged_pairs_total",
        "counter",
        "Pairs of answers to one prompt the grader judged, by green's result: win, loss, tie, \
         inconsistent (both orders disagreed) or judge_failed.",
    );
    t.per_series(green, "result", |s| {
        let j = &s.judged;
        vec![
            ("win", j.wins),
            ("loss", j.losses),
            ("tie", j.ties),
            ("inconsistent", j.inconsistent),
            ("judge_failed", j.failed),
        ]
    });
    t.family(
        "bluegreen_judge_tokens_total",
        "counter",
        "Tokens judging green's pairs used, by kind: the grader's prompt and completion, and a live \
         step's reference copies to blue (reference_*); not green's or blue's.",
    );
    t.per_series(green, "kind", |s| {
        vec![
            ("prompt", s.judged.prompt_tokens),
            ("completion", s.judged.completion_tokens),
            ("reference_prompt", s.judged.reference_prompt_tokens),
            ("reference_completion", s.judged.reference_completion_tokens),
        ]
    });
    t.family(
        "bluegreen_judge_cost_usd_total",
        "counter",
        "Estimated spend on judging green's pairs in US dollars, from MODEL_PRICES, by part: the \
         grader, and a live step's reference copies to blue; not green's or blue's.",
    );
    for s in green {
        for (part, usd) in [
            ("grader", s.stats.judged.cost_usd),
            ("reference", s.stats.judged.reference_cost_usd),
        ] {
            let labels = [
                ("environment", s.environment.as_str()),
                ("model", s.model.as_str()),
                ("part", part),
            ];
            t.sample("", &labels, Value::Real(usd));
        }
    }
}

/// The gauges: the split, phase, step, verdict, evidence, sync and the last tick.
fn gauges(t: &mut Text, snap: &Snapshot) {
    split_gauges(t, snap);
    rollout_gauges(t, snap);
    controller_gauges(t, snap);
}

/// The split in force: green's share and each environment's model.
fn split_gauges(t: &mut Text, snap: &Snapshot) {
    t.family(
        "bluegreen_green_traffic_ratio",
        "gauge",
        "Share of traffic the split in force routes to green (green_percent / 100).",
    );
    t.sample("", &[], Value::Real(snap.green_percent / 100.0));
    t.family(
        "bluegreen_model_info",
        "gauge",
        "The model each environment has in the split in force (always 1).",
    );
    for (env, model) in [("blue", snap.blue_model), ("green", snap.green_model)] {
        t.sample(
            "",
            &[("environment", env), ("model", model)],
            Value::Count(1),
        );
    }
}

/// Where the rollout is: phase, step, the latest verdict and its evidence.
fn rollout_gauges(t: &mut Text, snap: &Snapshot) {
    t.family(
        "bluegreen_phase",
        "gauge",
        "The rollout's phase: 1 for the phase it is in, 0 for the others.",
    );
    t.one_of("phase", &Phase::ALL.map(Phase::name), snap.phase.name());
    t.family(
        "bluegreen_step",
        "gauge",
        "The current step (1-based) while a rollout is progressing or paused, 0 otherwise.",
    );
    t.sample("", &[], Value::Count(snap.step.unwrap_or(0) as u64));
    if let Some(now) = snap.verdict {
        t.family(
            "bluegreen_verdict",
            "gauge",
            "The latest verdict of the current or last rollout: 1 for its status, 0 for the others.",
        );
        t.one_of(
            "status",
            &VerdictStatus::ALL.map(VerdictStatus::name),
            now.name(),
        );
    }
    t.family(
        "bluegreen_verdict_log_evidence",
        "gauge",
        "Natural log of the sequential verdict's evidence against green, per test.",
    );
    for e in &snap.evidence {
        t.sample("", &[("test", e.test)], Value::Real(e.log_evidence));
    }
    t.family(
        "bluegreen_verdict_log_rollback_level",
        "gauge",
        "Natural log of the evidence at which a test rolls green back.",
    );
    for e in &snap.evidence {
        t.sample("", &[("test", e.test)], Value::Real(e.log_rollback_at));
    }
}

/// The controller's own health: the routing document's sync, its storage, its last tick.
fn controller_gauges(t: &mut Text, snap: &Snapshot) {
    t.family(
        "bluegreen_routing_synced",
        "gauge",
        "1 when the routing document in KV was last seen to hold the split in force.",
    );
    t.sample("", &[], Value::Count(u64::from(snap.routing_synced)));
    t.family(
        "bluegreen_storage_problem",
        "gauge",
        "1 while the stored rollout state cannot be read (see /admin/status).",
    );
    t.sample("", &[], Value::Count(u64::from(snap.storage_problem)));
    t.family(
        "bluegreen_last_tick_timestamp_seconds",
        "gauge",
        "When the controller last ticked, in unix seconds; 0 before its first tick.",
    );
    let last_tick = snap.last_tick_ms.unwrap_or(0) as f64 / 1000.0;
    t.sample("", &[], Value::Real(last_tick));
    t.family(
        "bluegreen_stats_transport",
        "gauge",
        "How isolates' stats batches reach the controller: 1 for the transport in use (direct, or queue with a STATS_QUEUE binding).",
    );
    for transport in ["direct", "queue"] {
        let used = u64::from(snap.stats_transport == transport);
        t.sample("", &[("transport", transport)], Value::Count(used));
    }
    t.family(
        "bluegreen_stats_queue_lag_seconds",
        "gauge",
        "Through the stats queue: at the controller's last intake, how long ago the oldest batch it took left its isolate; absent before any.",
    );
    if let Some(ms) = snap.stats_queue_lag_ms {
        t.sample("", &[], Value::Real(ms as f64 / 1000.0));
    }
    t.family(
        "bluegreen_stats_queue_last_intake_timestamp_seconds",
        "gauge",
        "Through the stats queue: when the controller last took a merged batch, in unix seconds; absent before any.",
    );
    if let Some(ms) = snap.stats_queue_intake_ms {
        t.sample("", &[], Value::Real(ms as f64 / 1000.0));
    }
}

#[cfg(test)]
mod tests;
