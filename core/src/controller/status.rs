//! What the admin API shows: the status document (with the current step's view and the stats
//! windows' figures) and the per-minute history. Pure views of the controller's state and
//! windows (`crate::controller::windows`); the shell only reads the stored rows and serializes these.

use serde::Serialize;

use crate::controller::rollout::{Event, EventKind, Incident, Phase, Rollout, State, Step};
use crate::controller::windows::Scopes;
use crate::environment::Environment;
use crate::shadow::ShadowSummary;
use crate::stats::{EnvStats, Pair, Summary};
use crate::util::time::format_rfc3339_ms;
use crate::verdict::health::HealthPolicy;

/// The rollout part of the status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutView {
    pub id: u64,
    pub green_model: String,
    pub blue_model: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub steps: Vec<Step>,
    pub health: HealthPolicy,
}

/// The current step as the status shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepView {
    /// 1-based.
    pub number: usize,
    pub of: usize,
    pub green_percent: f64,
    /// The share of blue's requests copied to green on a shadow step (0 on a live one).
    pub shadow_percent: f64,
    pub hold_seconds: u64,
    pub started_at: String,
    pub elapsed_seconds: u64,
    pub remaining_seconds: u64,
}

/// The current step at `now_ms`, while a rollout is under way (progressing or paused). Time
/// spent paused does not count on the step.
pub fn step_view(state: &State, now_ms: u64) -> Option<StepView> {
    let (r, elapsed_ms) = state.active().zip(state.step_elapsed_ms(now_ms))?;
    let step = r.step();
    let elapsed = elapsed_ms / 1000;
    Some(StepView {
        number: r.step_index + 1,
        of: r.steps.len(),
        green_percent: step.green_percent,
        shadow_percent: step.shadow_percent,
        hold_seconds: step.hold_seconds,
        started_at: format_rfc3339_ms(r.step_started_at_ms),
        elapsed_seconds: elapsed,
        remaining_seconds: step.hold_seconds.saturating_sub(elapsed),
    })
}

/// A provider-wide incident: when it was seen, and blue's and green's errors on that tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentView {
    pub since: String,
    #[serde(flatten)]
    pub incident: Incident,
}

/// The latest verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictView {
    pub status: crate::verdict::health::VerdictStatus,
    pub reasons: Vec<String>,
    pub at: String,
    /// The step (1-based) it judged.
    pub step: usize,
    pub consecutive_failures: u32,
    pub failure_limit: u32,
    /// The sequential test's evidence (likelihood ratios, levels, counts); absent for the
    /// threshold method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<crate::verdict::sequential::Report>,
}

/// `GET /admin/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// The route whose rollout this is. Set by the controller, which knows its route.
    pub route: String,
    pub phase: Phase,
    pub blue_model: String,
    pub green_model: String,
    pub green_percent: f64,
    /// The share of blue's requests copied to green in the background (a shadow step), 0
    /// otherwise.
    pub shadow_percent: f64,
    pub sticky: bool,
    /// The routing document version the controller last wrote (or adopted).
    pub routing_version: u64,
    /// False while the latest split has not yet been written to KV (the next tick retries).
    pub routing_synced: bool,
    /// Why the stored rollout state could not be read, while it cannot (`null` otherwise):
    /// nothing is judged or changed until `POST /admin/recover`. Set by the controller.
    pub storage_problem: Option<String>,
    /// How isolates' stats batches reach the controller: `queue` (a `STATS_QUEUE` binding)
    /// or `direct`. Set by the controller.
    pub stats_transport: &'static str,
    /// Through the queue: at the controller's last intake of a merged batch, how long ago its
    /// oldest batch left its isolate (ms); `null` before any. Set by the controller.
    pub stats_queue_lag_ms: Option<u64>,
    /// Through the queue: when that last intake was (RFC 3339); a lag that stops moving while
    /// this grows old means deliveries stopped. Set by the controller.
    pub stats_queue_intake_at: Option<String>,
    pub rollout: Option<RolloutView>,
    /// The current step, while progressing or paused.
    pub step: Option<StepView>,
    /// A provider-wide incident holding the step, while it lasts (its step's time stands still).
    pub incident: Option<IncidentView>,
    pub verdict: Option<VerdictView>,
    /// The split check (is green's share of routed requests the step's?), while a rollout is
    /// under way.
    pub split_check: Option<crate::verdict::share_check::View>,
    /// The grader's verdicts on pairs of answers, while the rollout's policy names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeView>,
    /// `{"window": {"blue", "green"}, "step": {...}, "rollout": {...}}`.
    pub stats: ScopeSummaries,
    /// The newest event in the route's log, when it has one. Set by the controller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_event: Option<crate::controller::rollout::Event>,
    pub now: String,
}

/// The grader's figures over the rollout ([`crate::judge`]): counts as batches arrive, the
/// evidence as of the last tick. The last losses hold users' prompts and answers (cut short):
/// the admin API shows them to operators only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeView {
    /// The grader model.
    pub model: String,
    pub sample_percent: f64,
    pub max_per_minute: u32,
    pub both_orders: bool,
    /// The share of decisive pairs green may lose.
    pub tolerance: f64,
    /// Pairs with a verdict: wins, losses and ties.
    pub judged: u64,
    pub wins: u64,
    pub losses: u64,
    pub ties: u64,
    /// Pairs judged in both orders whose verdicts disagreed (not judged).
    pub inconsistent: u64,
    /// Pairs the grader failed on (`judge_failed`).
    pub failed: u64,
    /// Green's losses among decisive pairs; `null` before any.
    pub loss_share: Option<f64>,
    /// What grading cost, counted apart from blue's and green's.
    pub grader_prompt_tokens: u64,
    pub grader_completion_tokens: u64,
    pub grader_cost_usd: f64,
    /// What a live step's reference copies to blue cost (priced at blue's model).
    pub reference_cost_usd: f64,
    /// The evidence that green loses more than `tolerance` of decisive pairs, as of the last
    /// tick (`null` before a tick judged a pair), and where it rolls back.
    pub evidence: Option<f64>,
    pub rollback_at: Option<f64>,
    /// The rollout's last lost pairs, newest last.
    pub last_losses: Vec<crate::judge::losses::Loss>,
}

fn judge_view(r: &Rollout, scopes: &Scopes) -> Option<JudgeView> {
    let j = r.health.judge.as_deref()?;
    let c = &scopes.rollout.green.judged;
    let report = r
        .verdict
        .as_ref()
        .and_then(|v| v.verdict.evidence.as_ref())
        .and_then(|e| e.judge.as_ref());
    Some(JudgeView {
        model: j.model.clone(),
        sample_percent: j.sample_percent,
        max_per_minute: j.max_per_minute,
        both_orders: j.both_orders,
        tolerance: j.tolerance,
        judged: c.judged(),
        wins: c.wins,
        losses: c.losses,
        ties: c.ties,
        inconsistent: c.inconsistent,
        failed: c.failed,
        loss_share: (c.decisive() > 0).then(|| c.losses as f64 / c.decisive() as f64),
        grader_prompt_tokens: c.prompt_tokens,
        grader_completion_tokens: c.completion_tokens,
        grader_cost_usd: c.cost_usd,
        reference_cost_usd: c.reference_cost_usd,
        evidence: report.map(|j| j.evidence),
        rollback_at: report.map(|j| j.rollback_at),
        last_losses: scopes.judge_losses.list().to_vec(),
    })
}

/// Every window's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScopeSummaries {
    pub window: Pair<Summary>,
    pub step: Pair<Summary>,
    pub rollout: Pair<Summary>,
    /// Requests clients forced to an environment, since the rollout began: never judged.
    pub forced: Pair<Summary>,
    /// Requests routed under a split from before the rollout began (an isolate's cached
    /// document, a late batch), since it began: in the history, in no judged window.
    pub earlier_requests: u64,
    /// Shadow copies paired with blue's answers ([`crate::shadow`]), this step and this
    /// rollout.
    pub shadow: ShadowSummaries,
}

/// The shadow scope's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowSummaries {
    pub step: ShadowSummary,
    pub rollout: ShadowSummary,
}

/// Builds the status at `now_ms`.
pub fn status(state: &State, scopes: &Scopes, routing_synced: bool, now_ms: u64) -> Status {
    let split = state.split();
    let rollout = state.rollout();
    Status {
        route: crate::route::DEFAULT.into(),
        last_event: None,
        phase: state.phase(),
        blue_model: split.blue_model.clone(),
        green_model: split.green_model.clone(),
        green_percent: split.green_percent,
        shadow_percent: state.shadow_percent(),
        sticky: split.sticky,
        routing_version: split.version,
        routing_synced,
        storage_problem: None,
        stats_transport: "direct",
        stats_queue_lag_ms: None,
        stats_queue_intake_at: None,
        rollout: rollout.map(|r| RolloutView {
            id: r.id,
            green_model: r.green_model.clone(),
            blue_model: r.blue_model.clone(),
            started_at: format_rfc3339_ms(r.started_at_ms),
            ended_at: state.ended_at_ms().map(format_rfc3339_ms),
            steps: r.steps.clone(),
            health: r.health.clone(),
        }),
        step: step_view(state, now_ms),
        incident: state
            .active()
            .and_then(|r| r.incident.clone())
            .map(|incident| IncidentView {
                since: format_rfc3339_ms(incident.since_ms),
                incident,
            }),
        verdict: rollout.and_then(verdict_view),
        judge: rollout.and_then(|r| judge_view(r, scopes)),
        split_check: state.active().map(|r| {
            r.split_check
                .view(crate::controller::rollout::checks_split(state))
        }),
        stats: ScopeSummaries {
            window: scopes.window.map(EnvStats::summary),
            step: scopes.step.map(EnvStats::summary),
            rollout: scopes.rollout.map(EnvStats::summary),
            forced: scopes.forced.map(EnvStats::summary),
            earlier_requests: scopes.earlier_requests,
            shadow: ShadowSummaries {
                step: scopes.shadow.step.summary(),
                rollout: scopes.shadow.rollout.summary(),
            },
        },
        now: format_rfc3339_ms(now_ms),
    }
}

/// The rollout's latest verdict, once a tick has judged it.
fn verdict_view(r: &Rollout) -> Option<VerdictView> {
    let v = r.verdict.as_ref()?;
    Some(VerdictView {
        status: v.verdict.status,
        reasons: v.verdict.reasons.clone(),
        at: format_rfc3339_ms(v.at_ms),
        step: v.step,
        consecutive_failures: v.consecutive_failures,
        // The sequential test rolls back on its first failing verdict.
        failure_limit: match r.health.method {
            crate::verdict::health::Method::Sequential => 1,
            crate::verdict::health::Method::Threshold => r.health.failure_limit,
        },
        evidence: v.verdict.evidence.clone(),
    })
}

/// One minute of one environment, for charts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MinutePoint {
    pub requests: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub p95_ms: Option<u64>,
    /// Successful answers with a defect of any class.
    pub defects: u64,
    /// Scores apps sent in the minute, and the negative ones.
    pub feedback_scored: u64,
    pub feedback_negative: u64,
}

/// One minute, both environments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Minute {
    /// Start of the minute (RFC 3339).
    pub minute: String,
    /// Start of the minute, Unix ms (easier to plot).
    pub t: u64,
    pub blue: MinutePoint,
    pub green: MinutePoint,
}

/// A change of split, for marking charts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitMark {
    pub at: String,
    pub t: u64,
    pub green_percent: f64,
    pub kind: EventKind,
}

/// `GET /admin/history?minutes=N`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    pub minutes: Vec<Minute>,
    pub splits: Vec<SplitMark>,
}

/// The kinds of event that can change the split.
pub const SPLIT_KINDS: [EventKind; 7] = [
    EventKind::Started,
    EventKind::StepAdvanced,
    EventKind::Completed,
    EventKind::RolledBack,
    EventKind::SplitSet,
    EventKind::Resumed,
    EventKind::Recovered,
];

/// Builds a gap-free series of the `count` minutes ending with the one holding `now_ms`, from
/// stored rows `(unix minute, environment, stats)`, and the split changes among `events`.
pub fn history(
    rows: &[(u64, Environment, EnvStats)],
    events: &[Event],
    count: u64,
    now_ms: u64,
) -> History {
    let last = now_ms / 60_000;
    let first = (last + 1).saturating_sub(count);
    let point = |s: &EnvStats| MinutePoint {
        requests: s.requests,
        errors: s.errors(),
        error_rate: s.error_rate().map(|r| (r * 1e6).round() / 1e6),
        p95_ms: s.total.quantile_ms(0.95),
        defects: s.defects.total(),
        feedback_scored: s.feedback.scored,
        feedback_negative: s.feedback.negative,
    };
    let mut minutes: Vec<Minute> = (first..=last)
        .map(|m| Minute {
            minute: format_rfc3339_ms(m * 60_000),
            t: m * 60_000,
            blue: MinutePoint::default(),
            green: MinutePoint::default(),
        })
        .collect();
    for (m, env, stats) in rows {
        if let Some(slot) = m
            .checked_sub(first)
            .and_then(|i| minutes.get_mut(i as usize))
        {
            let p = point(stats);
            match env {
                Environment::Blue => slot.blue = p,
                Environment::Green => slot.green = p,
            }
        }
    }
    let splits = events
        .iter()
        .filter(|e| SPLIT_KINDS.contains(&e.kind) && e.at_ms >= first * 60_000)
        .map(|e| SplitMark {
            at: e.at.clone(),
            t: e.at_ms,
            green_percent: e.green_percent,
            kind: e.kind,
        })
        .collect();
    History { minutes, splits }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::rollout::{apply, Command, RolloutSpec};
    use crate::request::routing::RoutingDoc;

    const MIN: u64 = 60_000;

    fn routing() -> RoutingDoc {
        RoutingDoc {
            blue_model: "b".into(),
            green_model: "g0".into(),
            green_percent: 0.0,
            shadow_percent: 0.0,
            sticky: true,
            version: 0,
            updated_at: None,
            judge: None,
        }
    }

    /// A provider-wide incident shows in the status while it lasts, with the step's time
    /// standing at what it had when the incident was seen.
    #[test]
    fn an_incident_shows_while_it_lasts() {
        let spec = RolloutSpec {
            green_model: "g".into(),
            steps: crate::controller::rollout::default_steps(),
            health: HealthPolicy::default(),
        };
        let start = Command::Start {
            spec,
            routing: routing(),
        };
        let s = apply(&State::initial(&routing()), start, 0).unwrap().state;
        let tick = |s: &State, blue_errors: u64, now: u64| {
            let mut w = Pair::<EnvStats>::default();
            (w.blue.requests, w.green.requests) = (900, 100);
            w.blue.errors.server_error = blue_errors;
            w.green.errors.server_error = blue_errors / 9;
            let cmd = Command::Tick {
                judge_reasons: Vec::new(),
                window: Box::new(w),
                strata: Vec::new(),
                shadow: Vec::new(),
                blue_p95_ms: None,
                step_cost: Pair::default(),
            };
            apply(s, cmd, now).unwrap().state
        };
        let s = tick(&s, 270, 2 * MIN);
        let v = serde_json::to_value(status(&s, &Scopes::default(), true, 5 * MIN)).unwrap();
        assert_eq!(v["incident"]["since"], "1970-01-01T00:02:00.000Z");
        assert_eq!(v["incident"]["blue_errors"], 270);
        assert_eq!(v["incident"]["blue_requests"], 900);
        assert_eq!(v["step"]["elapsed_seconds"], 120);
        let s = tick(&s, 2, 6 * MIN);
        let v = serde_json::to_value(status(&s, &Scopes::default(), true, 7 * MIN)).unwrap();
        assert_eq!(v["incident"], serde_json::Value::Null);
        assert_eq!(
            v["step"]["elapsed_seconds"], 180,
            "2 minutes before, 1 after"
        );
    }

    #[test]
    fn status_names_tools_rely_on() {
        let s = State::initial(&routing());
        let t = apply(
            &s,
            Command::Start {
                spec: RolloutSpec {
                    green_model: "g".into(),
                    steps: crate::controller::rollout::default_steps(),
                    health: HealthPolicy::default(),
                },
                routing: routing(),
            },
            0,
        )
        .unwrap();
        let mut scopes = Scopes::default();
        let mut one = EnvStats {
            requests: 2,
            ..EnvStats::default()
        };
        one.total.record(100);
        one.total.record(300);
        scopes.add(Environment::Green, &one);
        let v = serde_json::to_value(status(&t.state, &scopes, true, 90_000)).unwrap();
        assert_eq!(v["phase"], "progressing");
        assert_eq!(v["blue_model"], "b");
        assert_eq!(v["green_model"], "g");
        assert_eq!(v["green_percent"], 10.0);
        assert_eq!(v["step"]["number"], 1);
        assert_eq!(v["step"]["remaining_seconds"], 1800 - 90);
        for scope in ["window", "step", "rollout"] {
            let g = &v["stats"][scope]["green"];
            for key in [
                "requests",
                "errors",
                "fallbacks",
                "error_rate",
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "prompt_tokens",
                "completion_tokens",
                "cost_usd",
            ] {
                assert!(g.get(key).is_some(), "{scope}.green.{key}");
            }
            assert_eq!(g["requests"], 2);
            assert_eq!(g["p50_ms"], 100);
            assert_eq!(v["stats"][scope]["blue"]["p50_ms"], serde_json::Value::Null);
        }
    }

    #[test]
    fn the_step_view_leaves_out_time_paused() {
        let start = Command::Start {
            spec: RolloutSpec {
                green_model: "g".into(),
                steps: vec![Step::live(10.0, 300)],
                health: HealthPolicy::default(),
            },
            routing: routing(),
        };
        let s = apply(&State::initial(&routing()), start, 0).unwrap().state;
        // Paused after 2 of 5 minutes, for 10 minutes.
        let s = apply(&s, Command::Pause, 2 * MIN).unwrap().state;
        let v = step_view(&s, 7 * MIN).unwrap();
        assert_eq!((v.elapsed_seconds, v.remaining_seconds), (120, 180));
        // At 14 min: 2 + 2 = 4 of 5 minutes on the step.
        let s = apply(&s, Command::Resume, 12 * MIN).unwrap().state;
        let v = step_view(&s, 14 * MIN).unwrap();
        assert_eq!(
            (v.number, v.of, v.elapsed_seconds, v.remaining_seconds),
            (1, 1, 240, 60)
        );
        // No step once the rollout has ended.
        let s = apply(&s, Command::Rollback, 15 * MIN).unwrap().state;
        assert_eq!(step_view(&s, 15 * MIN), None);
    }

    #[test]
    fn history_fills_gaps_and_marks_splits() {
        let mut s = EnvStats {
            requests: 4,
            ..EnvStats::default()
        };
        s.errors.timeout = 1;
        for ms in [10, 20, 30, 40] {
            s.total.record(ms);
        }
        // Now is in minute 10; rows in minutes 8 and 3 (outside a 5-minute range).
        let rows = vec![
            (8, Environment::Green, s.clone()),
            (3, Environment::Blue, s.clone()),
        ];
        let h = history(&rows, &[], 5, 10 * 60_000 + 5);
        assert_eq!(h.minutes.len(), 5);
        assert_eq!(h.minutes[0].t, 6 * 60_000);
        let m8 = &h.minutes[2];
        assert_eq!((m8.green.requests, m8.green.errors), (4, 1));
        assert_eq!(m8.green.error_rate, Some(0.25));
        assert_eq!(m8.green.p95_ms, Some(40));
        assert_eq!(m8.blue, MinutePoint::default());
        assert!(h.minutes.iter().all(|m| m.blue.requests == 0));
    }
}
