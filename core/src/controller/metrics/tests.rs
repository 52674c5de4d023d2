use super::*;
use crate::controller::rollout::{apply, Command, RolloutSpec};
use crate::request::fallback::{Attempt, FallbackReason};
use crate::request::outcome::{Outcome, StatusClass};
use crate::request::routing::RoutingDoc;
use crate::request::split::Basis;
use crate::stats::Prices;

fn series(environment: Environment, model: &str, stats: EnvStats) -> Series {
    Series {
        environment,
        model: model.into(),
        stats,
    }
}

fn idle<'a>(series: &'a [Series]) -> Snapshot<'a> {
    Snapshot {
        route: "default",
        series,
        forced: Pair::default(),
        shadow: &[],
        shadow_unfinished: 0,
        shadow_capped: 0,
        blue_model: "deepseek-v3",
        green_model: "gemini-2.5-flash",
        green_percent: 0.0,
        phase: Phase::Idle,
        step: None,
        verdict: None,
        evidence: Vec::new(),
        routing_synced: false,
        storage_problem: false,
        last_tick_ms: None,
        stats_transport: "direct",
        stats_queue_lag_ms: None,
        stats_queue_intake_ms: None,
    }
}

/// Blue before any rollout: two answers (40 and 150 ms, first bytes at 30 and 100 ms) and a
/// timeout after 30 s, which has no first byte.
fn blue_only() -> Series {
    let mut s = EnvStats {
        requests: 3,
        prompt_tokens: 12,
        completion_tokens: 30,
        cost_usd: 0.0015,
        ..EnvStats::default()
    };
    s.errors.timeout = 1;
    for ms in [40, 150, 30_000] {
        s.total.record(ms);
    }
    for ms in [30, 100] {
        s.first_byte.record(ms);
    }
    series(Environment::Blue, "deepseek-v3", s)
}

#[test]
fn golden_text_of_a_controller_before_any_rollout() {
    let series = [blue_only()];
    let text = render(&idle(&series));
    // Buckets count the values recorded below each edge: 40 below 50 ms, 150 below 200 ms,
    // 30 000 below 51.2 s; first bytes 30 below 50 ms and 100 below 200 ms (not 100 ms).
    let want = r#"# HELP bluegreen_requests_total Requests routed to an environment, by how they ended: ok, client_error, or the class of the upstream failure that counts against the environment.
# TYPE bluegreen_requests_total counter
bluegreen_requests_total{route="default",environment="blue",model="deepseek-v3",class="ok"} 2
bluegreen_requests_total{route="default",environment="blue",model="deepseek-v3",class="client_error"} 0
bluegreen_requests_total{route="default",environment="blue",model="deepseek-v3",class="server_error"} 0
bluegreen_requests_total{route="default",environment="blue",model="deepseek-v3",class="rate_limited"} 0
bluegreen_requests_total{route="default",environment="blue",model="deepseek-v3",class="timeout"} 1
bluegreen_requests_total{route="default",environment="blue",model="deepseek-v3",class="connection"} 0
bluegreen_requests_total{route="default",environment="blue",model="deepseek-v3",class="upstream_other"} 0
bluegreen_requests_total{route="default",environment="blue",model="deepseek-v3",class="interrupted"} 0
bluegreen_requests_total{route="default",environment="blue",model="deepseek-v3",class="stream_error"} 0
bluegreen_requests_total{route="default",environment="blue",model="deepseek-v3",class="not_an_answer"} 0
bluegreen_requests_total{route="default",environment="blue",model="deepseek-v3",class="ejected"} 0
# HELP bluegreen_defects_total Successful answers the app cannot use, by class.
# TYPE bluegreen_defects_total counter
bluegreen_defects_total{route="default",environment="blue",model="deepseek-v3",class="content_filter"} 0
bluegreen_defects_total{route="default",environment="blue",model="deepseek-v3",class="refusal"} 0
bluegreen_defects_total{route="default",environment="blue",model="deepseek-v3",class="truncated"} 0
bluegreen_defects_total{route="default",environment="blue",model="deepseek-v3",class="empty"} 0
bluegreen_defects_total{route="default",environment="blue",model="deepseek-v3",class="invalid_tool_call"} 0
bluegreen_defects_total{route="default",environment="blue",model="deepseek-v3",class="invalid_json"} 0
bluegreen_defects_total{route="default",environment="blue",model="deepseek-v3",class="dimension_mismatch"} 0
# HELP bluegreen_feedback_total Scores the controller counted (POST /v1/feedback), by the environment that answered.
# TYPE bluegreen_feedback_total counter
bluegreen_feedback_total{route="default",environment="blue",model="deepseek-v3",score="negative"} 0
bluegreen_feedback_total{route="default",environment="blue",model="deepseek-v3",score="not_negative"} 0
# HELP bluegreen_feedback_refused_total Scores refused uncounted: a replay, or over a rate bound.
# TYPE bluegreen_feedback_refused_total counter
bluegreen_feedback_refused_total{route="default",environment="blue",model="deepseek-v3",reason="replay"} 0
bluegreen_feedback_refused_total{route="default",environment="blue",model="deepseek-v3",reason="rate_limited"} 0
# HELP bluegreen_tokens_total Tokens reported by the upstream, by kind.
# TYPE bluegreen_tokens_total counter
bluegreen_tokens_total{route="default",environment="blue",model="deepseek-v3",kind="prompt"} 12
bluegreen_tokens_total{route="default",environment="blue",model="deepseek-v3",kind="completion"} 30
# HELP bluegreen_cost_usd_total Estimated spend in US dollars, from MODEL_PRICES.
# TYPE bluegreen_cost_usd_total counter
bluegreen_cost_usd_total{route="default",environment="blue",model="deepseek-v3"} 0.0015
# HELP bluegreen_forced_requests_total Requests a client forced to an environment with x-bluegreen-environment; never judged.
# TYPE bluegreen_forced_requests_total counter
bluegreen_forced_requests_total{route="default",environment="blue"} 0
bluegreen_forced_requests_total{route="default",environment="green"} 0
# HELP bluegreen_request_duration_seconds Time from a request's arrival to the last byte of its answer, as the client saw it.
# TYPE bluegreen_request_duration_seconds histogram
bluegreen_request_duration_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="0.025"} 0
bluegreen_request_duration_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="0.05"} 1
bluegreen_request_duration_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="0.1"} 1
bluegreen_request_duration_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="0.2"} 2
bluegreen_request_duration_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="0.4"} 2
bluegreen_request_duration_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="0.8"} 2
bluegreen_request_duration_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="1.6"} 2
bluegreen_request_duration_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="3.2"} 2
bluegreen_request_duration_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="6.4"} 2
bluegreen_request_duration_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="12.8"} 2
bluegreen_request_duration_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="25.6"} 2
bluegreen_request_duration_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="51.2"} 3
bluegreen_request_duration_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="102.4"} 3
bluegreen_request_duration_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="204.8"} 3
bluegreen_request_duration_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="409.6"} 3
bluegreen_request_duration_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="+Inf"} 3
bluegreen_request_duration_seconds_sum{route="default",environment="blue",model="deepseek-v3"} 30.19
bluegreen_request_duration_seconds_count{route="default",environment="blue",model="deepseek-v3"} 3
# HELP bluegreen_time_to_first_byte_seconds Time from a request's arrival to the serving answer's response headers.
# TYPE bluegreen_time_to_first_byte_seconds histogram
bluegreen_time_to_first_byte_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="0.025"} 0
bluegreen_time_to_first_byte_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="0.05"} 1
bluegreen_time_to_first_byte_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="0.1"} 1
bluegreen_time_to_first_byte_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="0.2"} 2
bluegreen_time_to_first_byte_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="0.4"} 2
bluegreen_time_to_first_byte_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="0.8"} 2
bluegreen_time_to_first_byte_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="1.6"} 2
bluegreen_time_to_first_byte_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="3.2"} 2
bluegreen_time_to_first_byte_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="6.4"} 2
bluegreen_time_to_first_byte_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="12.8"} 2
bluegreen_time_to_first_byte_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="25.6"} 2
bluegreen_time_to_first_byte_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="51.2"} 2
bluegreen_time_to_first_byte_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="102.4"} 2
bluegreen_time_to_first_byte_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="204.8"} 2
bluegreen_time_to_first_byte_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="409.6"} 2
bluegreen_time_to_first_byte_seconds_bucket{route="default",environment="blue",model="deepseek-v3",le="+Inf"} 2
bluegreen_time_to_first_byte_seconds_sum{route="default",environment="blue",model="deepseek-v3"} 0.13
bluegreen_time_to_first_byte_seconds_count{route="default",environment="blue",model="deepseek-v3"} 2
# HELP bluegreen_green_traffic_ratio Share of traffic the split in force routes to green (green_percent / 100).
# TYPE bluegreen_green_traffic_ratio gauge
bluegreen_green_traffic_ratio{route="default"} 0
# HELP bluegreen_model_info The model each environment has in the split in force (always 1).
# TYPE bluegreen_model_info gauge
bluegreen_model_info{route="default",environment="blue",model="deepseek-v3"} 1
bluegreen_model_info{route="default",environment="green",model="gemini-2.5-flash"} 1
# HELP bluegreen_phase The rollout's phase: 1 for the phase it is in, 0 for the others.
# TYPE bluegreen_phase gauge
bluegreen_phase{route="default",phase="idle"} 1
bluegreen_phase{route="default",phase="progressing"} 0
bluegreen_phase{route="default",phase="paused"} 0
bluegreen_phase{route="default",phase="completed"} 0
bluegreen_phase{route="default",phase="rolled_back"} 0
# HELP bluegreen_step The current step (1-based) while a rollout is progressing or paused, 0 otherwise.
# TYPE bluegreen_step gauge
bluegreen_step{route="default"} 0
# HELP bluegreen_routing_synced 1 when the routing document in KV was last seen to hold the split in force.
# TYPE bluegreen_routing_synced gauge
bluegreen_routing_synced{route="default"} 0
# HELP bluegreen_storage_problem 1 while the stored rollout state cannot be read (see /admin/status).
# TYPE bluegreen_storage_problem gauge
bluegreen_storage_problem{route="default"} 0
# HELP bluegreen_last_tick_timestamp_seconds When the controller last ticked, in unix seconds; 0 before its first tick.
# TYPE bluegreen_last_tick_timestamp_seconds gauge
bluegreen_last_tick_timestamp_seconds{route="default"} 0
# HELP bluegreen_stats_transport How isolates' stats batches reach the controller: 1 for the transport in use (direct, or queue with a STATS_QUEUE binding).
# TYPE bluegreen_stats_transport gauge
bluegreen_stats_transport{route="default",transport="direct"} 1
bluegreen_stats_transport{route="default",transport="queue"} 0
"#;
    if text != want {
        for (got, want) in text.lines().zip(want.lines()) {
            assert_eq!(got, want);
        }
        assert_eq!(text.lines().count(), want.lines().count());
    }
    assert_eq!(text, want);
}

#[test]
fn a_controller_that_never_counted_still_shows_its_phase() {
    let text = render(&idle(&[]));
    assert!(text.contains("bluegreen_phase{route=\"default\",phase=\"idle\"} 1\n"));
    assert!(text
        .contains("bluegreen_forced_requests_total{route=\"default\",environment=\"green\"} 0\n"));
    // No series yet: no per-series family, not even its HELP line.
    assert!(!text.contains("bluegreen_requests_total"));
    assert!(!text.contains("bluegreen_request_duration_seconds"));
}

#[test]
fn label_values_are_escaped() {
    let odd = r#"m"x\y
z"#;
    let series = [series(Environment::Green, odd, EnvStats::default())];
    let mut snap = idle(&series);
    snap.green_model = odd;
    let text = render(&snap);
    let escaped = r#"model="m\"x\\y\nz""#;
    assert!(text.contains(&format!(
        "bluegreen_model_info{{route=\"default\",environment=\"green\",{escaped}}} 1\n"
    )));
    assert!(text.contains(&format!(
        "bluegreen_tokens_total{{route=\"default\",environment=\"green\",{escaped},kind=\"prompt\"}} 0\n"
    )));
    // Every line is a comment or a sample: the line feed did not split one.
    assert!(text
        .lines()
        .all(|l| l.starts_with("# ") || l.starts_with("bluegreen_")));
}

/// The value of every sample line.
fn values(text: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .collect()
}

#[test]
fn every_value_is_finite_and_what_is_not_is_left_out() {
    let mut s = blue_only();
    s.stats.cost_usd = f64::MAX;
    let series = [s];
    let mut snap = idle(&series);
    snap.green_percent = f64::NAN;
    snap.evidence = vec![
        TestEvidence {
            test: "errors",
            log_evidence: 1e308,
            log_rollback_at: 3.5,
        },
        TestEvidence {
            test: "guard",
            log_evidence: f64::INFINITY,
            log_rollback_at: f64::NEG_INFINITY,
        },
    ];
    let text = render(&snap);
    assert!(values(&text).iter().all(|v| v.is_finite()));
    assert!(!text.contains("bluegreen_green_traffic_ratio"));
    assert!(
        text.contains("bluegreen_verdict_log_evidence{route=\"default\",test=\"errors\"} 1e+308\n")
    );
    assert!(!text.contains("test=\"guard\""));
    assert!(text.contains("bluegreen_cost_usd_total{route=\"default\",environment=\"blue\",model=\"deepseek-v3\"} 1.7976931348623157e+308\n"));
}

fn outcome(env: Environment, class: StatusClass, fallback: Option<Attempt>) -> Outcome {
    Outcome {
        request_id: "r".into(),
        at_ms: 0,
        route: "default".into(),
        api: crate::api::Api::Chat,
        environment: env,
        model: "m".into(),
        basis: Basis::Random,
        routing_version: 0,
        stream: false,
        status: 200,
        class,
        fallback: fallback.map(FallbackReason::Failed),
        first_byte_ms: Some(10),
        total_ms: 20,
        usage: None,
        interrupted: false,
        defect: None,
        vector_length: None,
        client_gone: false,
    }
}

#[test]
fn fallbacks_show_for_green_by_reason_with_the_unclassified_rest() {
    let prices = Prices::default();
    let mut green = EnvStats::default();
    for attempt in [Attempt::Status(503), Attempt::Status(502), Attempt::Timeout] {
        green.record(
            &outcome(Environment::Blue, StatusClass::Ok, Some(attempt)),
            &prices,
        );
    }
    green.record(&outcome(Environment::Green, StatusClass::Ok, None), &prices);
    // Two more counted by a version that did not tell classes apart.
    green.fallbacks += 2;
    let series = [
        series(Environment::Blue, "b", EnvStats::default()),
        series(Environment::Green, "g", green),
    ];
    let text = render(&idle(&series));
    let line = |reason: &str, n: u64| {
        format!("bluegreen_fallbacks_total{{route=\"default\",environment=\"green\",model=\"g\",reason=\"{reason}\"}} {n}\n")
    };
    for (reason, n) in [
        ("server_error", 2),
        ("timeout", 1),
        ("connection", 0),
        ("unclassified", 2),
    ] {
        assert!(text.contains(&line(reason, n)), "{reason}\n{text}");
    }
    assert!(!text.contains("bluegreen_fallbacks_total{route=\"default\",environment=\"blue\""));
    // Requests by class add up to the requests: 1 ok, 2 server errors, 1 timeout.
    let by_class: u64 = text
        .lines()
        .filter(|l| {
            l.starts_with("bluegreen_requests_total{route=\"default\",environment=\"green\"")
        })
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    assert_eq!(by_class, 4);
}

#[test]
fn every_error_class_is_a_requests_class_and_a_fallback_reason() {
    let series = [series(Environment::Green, "g", EnvStats::default())];
    let text = render(&idle(&series));
    for c in ErrorClass::ALL {
        for family in ["requests_total", "fallbacks_total"] {
            let label = if family == "requests_total" {
                "class"
            } else {
                "reason"
            };
            let want = format!(
                "bluegreen_{family}{{route=\"default\",environment=\"green\",model=\"g\",{label}=\"{}\"}} 0\n",
                c.name()
            );
            assert!(text.contains(&want), "{want}");
        }
    }
}

#[test]
fn histogram_buckets_are_exact_counts_below_each_edge() {
    // Every edge is a boundary of the controller's histogram.
    assert!(LE_MS.iter().all(|&ms| crate::stats::hist::is_boundary(ms)));
    // A spread of values around the edges: each bucket must count exactly those below it.
    let vals: Vec<u64> = LE_MS
        .iter()
        .flat_map(|&e| [e - 1, e, e + 1])
        .chain([0, 1, 2_000_000])
        .collect();
    let mut s = EnvStats::default();
    vals.iter().for_each(|&v| s.total.record(v));
    let series = [series(Environment::Blue, "b", s)];
    let text = render(&idle(&series));
    for ms in LE_MS {
        let below = vals.iter().filter(|&&v| v < ms).count();
        let want = format!(
            "bluegreen_request_duration_seconds_bucket{{route=\"default\",environment=\"blue\",model=\"b\",le=\"{}\"}} {below}\n",
            le_label(ms)
        );
        assert!(text.contains(&want), "{want}");
    }
    assert!(text.contains("le=\"+Inf\"} 48\n"));
    assert_eq!(LE_MS.map(le_label)[..4], ["0.025", "0.05", "0.1", "0.2"]);
    assert_eq!(le_label(409_600), "409.6");
    assert_eq!(le_label(2000), "2");
}

#[test]
fn a_rollout_shows_its_phase_step_verdict_and_evidence_as_logs() {
    let routing = RoutingDoc {
        blue_model: "b".into(),
        green_model: "old".into(),
        green_percent: 0.0,
        shadow_percent: 0.0,
        sticky: true,
        version: 3,
        updated_at: None,
        judge: None,
    };
    let spec = RolloutSpec::from_json(&serde_json::json!({
        "green_model": "g",
        "steps": [{"green_percent": 10, "hold_seconds": 60}, {"green_percent": 50, "hold_seconds": 60}],
        "health": {"min_requests": 10}
    }))
    .unwrap();
    let s = apply(
        &State::initial(&routing),
        Command::Start { spec, routing },
        0,
    )
    .unwrap()
    .state;
    // A tick on a window where green fails 30 of 100 and blue none.
    let mut window = Pair::<EnvStats>::default();
    window.blue.requests = 900;
    window.green.requests = 100;
    window.green.errors.server_error = 30;
    let s = apply(
        &s,
        Command::Tick {
            judge_reasons: Vec::new(),
            window: Box::new(window.clone()),
            strata: vec![crate::controller::rollout::Stratum {
                stats: window,
                in_step: true,
                version: None,
            }],
            blue_p95_ms: None,
            step_cost: Pair::default(),
            shadow: Vec::new(),
        },
        60_000,
    )
    .unwrap()
    .state;
    let scopes = Scopes::default();
    let snap = Snapshot::of(&s, &scopes, true, false, Some(60_500));
    let text = render(&snap);
    let report = s.verdict().unwrap().verdict.evidence.clone().unwrap();
    assert!(text.contains(&format!(
        "bluegreen_phase{{route=\"default\",phase=\"{}\"}} 1\n",
        s.phase().name()
    )));
    assert!(text.contains(&format!(
        "bluegreen_verdict{{route=\"default\",status=\"{}\"}} 1\n",
        s.verdict_status().unwrap().name()
    )));
    // The guard's log, as the status shows it; its level is ln(4 / alpha) = ln(133.3).
    assert!(report.guard_log_evidence > 0.0);
    assert!(text.contains(&format!(
        "bluegreen_verdict_log_evidence{{route=\"default\",test=\"guard\"}} {}\n",
        real(report.guard_log_evidence).unwrap()
    )));
    let level = (4.0f64 / 0.03).ln();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("bluegreen_verdict_log_rollback_level{route=\"default\",test=\"guard\"}")
        })
        .unwrap();
    let got: f64 = line.rsplit_once(' ').unwrap().1.parse().unwrap();
    assert!((got - level).abs() < 1e-9, "{got} vs {level}");
    assert!(text.contains("bluegreen_verdict_log_evidence{route=\"default\",test=\"errors\"}"));
    assert!(text.contains("bluegreen_last_tick_timestamp_seconds{route=\"default\"} 60.5\n"));
    assert!(text.contains("bluegreen_routing_synced{route=\"default\"} 1\n"));
    assert!(text
        .contains("bluegreen_model_info{route=\"default\",environment=\"green\",model=\"g\"} 1\n"));
}

#[test]
fn series_come_blue_first_then_by_model_whatever_their_order() {
    let series = [
        series(Environment::Green, "z", EnvStats::default()),
        series(Environment::Blue, "y", EnvStats::default()),
        series(Environment::Blue, "a", EnvStats::default()),
    ];
    let text = render(&idle(&series));
    let order: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("bluegreen_tokens_total") && l.contains("prompt"))
        .map(|l| {
            l.split("model=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(order, ["a", "y", "z"]);
}

#[test]
fn every_family_once_with_help_that_needs_no_escaping() {
    let series = [
        blue_only(),
        series(Environment::Green, "g", EnvStats::default()),
    ];
    let mut snap = idle(&series);
    snap.verdict = Some(VerdictStatus::Pass);
    snap.evidence = vec![TestEvidence {
        test: "errors",
        log_evidence: -1.5,
        log_rollback_at: 3.5,
    }];
    let copies = [Series {
        environment: Environment::Green,
        ..blue_only()
    }];
    snap.shadow = &copies;
    let text = render(&snap);
    let help: Vec<&str> = text.lines().filter(|l| l.starts_with("# HELP ")).collect();
    let kinds = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    // The queue's lag is absent without a queue: no family without samples.
    assert_eq!((help.len(), kinds), (27, 27));
    let mut names: Vec<&str> = help.iter().map(|l| l.split(' ').nth(2).unwrap()).collect();
    names.dedup();
    assert_eq!(names.len(), 27, "each family once, its samples together");
    // HELP texts are written as they are: none holds a backslash to escape.
    assert!(help.iter().all(|l| !l.contains('\\')));
}

/// Shadow copies show in their own families, counted through the windows as the controller
/// counts them (under green's model of the copies' version), and only once a copy was counted.
#[test]
fn shadow_copies_show_apart_from_routed_requests() {
    use crate::shadow::{ShadowEntry, ShadowStats};
    let state = State::initial(&RoutingDoc {
        blue_model: "b".into(),
        green_model: "g".into(),
        green_percent: 0.0,
        shadow_percent: 20.0,
        sticky: true,
        version: 3,
        updated_at: None,
        judge: None,
    });
    let mut scopes = Scopes::default();
    let text = render(&Snapshot::of(&state, &scopes, true, false, None));
    assert!(
        !text.contains("bluegreen_shadow_"),
        "no copy yet: no family"
    );
    let mut stats = ShadowStats {
        unfinished: 1,
        capped: 4,
        ..ShadowStats::default()
    };
    stats.green = blue_only().stats;
    stats.green.defects.invalid_json = 1;
    scopes.add_shadow(
        &ShadowEntry {
            minute: 1,
            version: 3,
            stats,
        },
        &state,
    );
    let text = render(&Snapshot::of(&state, &scopes, true, false, None));
    for line in [
        "bluegreen_shadow_requests_total{route=\"default\",environment=\"green\",model=\"g\",class=\"ok\"} 2\n",
        "bluegreen_shadow_requests_total{route=\"default\",environment=\"green\",model=\"g\",class=\"timeout\"} 1\n",
        "bluegreen_shadow_defects_total{route=\"default\",environment=\"green\",model=\"g\",class=\"invalid_json\"} 1\n",
        "bluegreen_shadow_tokens_total{route=\"default\",environment=\"green\",model=\"g\",kind=\"completion\"} 30\n",
        "bluegreen_shadow_cost_usd_total{route=\"default\",environment=\"green\",model=\"g\"} 0.0015\n",
        "bluegreen_shadow_unfinished_total{route=\"default\"} 1\n",
        "bluegreen_shadow_capped_total{route=\"default\"} 4\n",
    ] {
        assert!(text.contains(line), "{line}");
    }
    // Copies are not routed requests: those families have no sample for them.
    assert!(!text.contains("bluegreen_requests_total{"));
}

/// The exposition's size is bounded: the most series kept (routed, with full histograms, and
/// shadow), each under the longest model name allowed, stay under 256 KB.
#[test]
fn the_largest_exposition_is_bounded() {
    use crate::controller::lifetime::MAX_SERIES;
    let mut full = blue_only().stats;
    // A value in every bucket from 1 ms to the cap: about 3% apart.
    let mut v = 1.0f64;
    while v < f64::from(1u32 << 31) {
        full.total.record(v as u64);
        full.first_byte.record(v as u64);
        v *= 1.03;
    }
    full.errors.server_error = 7;
    full.defects.invalid_json = 3;
    // The longest names a model may have, each its own.
    let name = |i: usize| format!("{i}{}", "m".repeat(crate::request::model::MAX_NAME_LEN - 1));
    let routed: Vec<Series> = (0..MAX_SERIES)
        .map(|i| {
            let env = [Environment::Blue, Environment::Green][i % 2];
            series(env, &name(i), full.clone())
        })
        .collect();
    let copies: Vec<Series> = (0..MAX_SERIES)
        .map(|i| series(Environment::Green, &name(i), blue_only().stats))
        .collect();
    let mut snap = idle(&routed);
    snap.shadow = &copies;
    snap.shadow_capped = u64::MAX;
    let text = render(&snap);
    // 225 770 bytes when written (214 565 before the feedback families): each sample line
    // repeats its series' model name.
    assert!(text.len() < 256 * 1024, "{} bytes", text.len());
    assert!(
        text.len() > 200 * 1024,
        "every series is in it: {} bytes",
        text.len()
    );
}

#[test]
fn routes_merge_into_one_text_with_each_family_once() {
    let series = [blue_only()];
    let one = render(&idle(&series));
    let other = render(&Snapshot {
        route: "chat",
        ..idle(&series)
    });
    let merged = merge([one.as_str(), other.as_str()]);
    // Every sample of both, every family's HELP and TYPE once, and its samples together.
    assert_eq!(
        merged.lines().filter(|l| !l.starts_with('#')).count(),
        2 * one.lines().filter(|l| !l.starts_with('#')).count()
    );
    let mut seen = Vec::new();
    let mut family = "";
    for line in merged.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            family = rest.split(' ').next().unwrap();
            assert!(!seen.contains(&family), "{family} twice");
            seen.push(family);
        } else if !line.starts_with('#') {
            assert!(line.starts_with(family), "{line} outside {family}");
        }
    }
    assert_eq!(merged.matches("# HELP bluegreen_phase ").count(), 1);
    assert!(merged.contains("bluegreen_phase{route=\"chat\",phase=\"idle\"} 1\n"));
    assert!(merged.contains("bluegreen_phase{route=\"default\",phase=\"idle\"} 1\n"));
    // A route's own text merges into itself unchanged.
    assert_eq!(merge([one.as_str()]), one);
}

/// Through a queue, the transport says so and the lag is a sample in seconds.
#[test]
fn the_stats_queue_shows_its_transport_and_lag() {
    let mut snap = idle(&[]);
    snap.stats_transport = "queue";
    snap.stats_queue_lag_ms = Some(2_500);
    snap.stats_queue_intake_ms = Some(1_765_000_000_500);
    let text = render(&snap);
    assert!(text.contains("bluegreen_stats_transport{route=\"default\",transport=\"queue\"} 1\n"));
    assert!(text.contains("bluegreen_stats_transport{route=\"default\",transport=\"direct\"} 0\n"));
    assert!(
        text.contains("bluegreen_stats_queue_lag_seconds{route=\"default\"} 2.5\n"),
        "{text}"
    );
}

/// The grader's pairs show in their own families, by green's model, only once a pair was sent
/// to a grader; its spend is never green's.
#[test]
fn judged_pairs_show_by_result_with_the_graders_spend_apart() {
    let plain = [blue_only()];
    assert!(!render(&idle(&plain)).contains("bluegreen_judged"));
    let green = EnvStats {
        judged: crate::stats::judged::JudgedCounts {
            wins: 3,
            losses: 7,
            ties: 2,
            inconsistent: 1,
            failed: 4,
            prompt_tokens: 900,
            completion_tokens: 40,
            cost_usd: 0.25,
            ..Default::default()
        },
        ..EnvStats::default()
    };
    let series = [blue_only(), series(Environment::Green, "g", green)];
    let text = render(&idle(&series));
    let at = |name: &str, labels: &str| {
        let line =
            format!("{name}{{route=\"default\",environment=\"green\",model=\"g\"{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .unwrap_or_else(|| panic!("{line} in\n{text}"))
            .to_string()
    };
    assert_eq!(at("bluegreen_judged_pairs_total", ",result=\"loss\""), "7");
    assert_eq!(
        at("bluegreen_judged_pairs_total", ",result=\"judge_failed\""),
        "4"
    );
    assert_eq!(
        at("bluegreen_judge_tokens_total", ",kind=\"prompt\""),
        "900"
    );
    assert_eq!(
        at("bluegreen_judge_cost_usd_total", ",part=\"grader\""),
        "0.25"
    );
    assert_eq!(
        at("bluegreen_judge_cost_usd_total", ",part=\"reference\""),
        "0"
    );
    assert_eq!(at("bluegreen_cost_usd_total", ""), "0");
}
