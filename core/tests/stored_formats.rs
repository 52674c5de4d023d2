//! Stored formats are contracts: the rollout controller's Durable Object storage outlives every
//! deploy, so a new version must read what an older one wrote. The fixtures under
//! `fixtures/v1/` were written by the code of the first controller release (states in every
//! phase, the events of two rollouts, an isolate's stats batch, the stats windows and a
//! per-minute row); each test loads them with today's types, checks what the old document
//! said, and checks that writing and reading again changes nothing. A shape that grew later has
//! its fixtures under the name of what it added (`fixtures/stream-error/`,
//! `fixtures/not-an-answer/`), and these load too. The fixtures under `fixtures/v2/` were
//! written by the code just before stats told fallbacks apart by class and kept lifetime
//! counters (commit 20ed3f0): the stats windows and an isolate's batch, with defects, forced
//! requests, routing versions and fallbacks in them. `fixtures/split-check/` has a state
//! written by the version that added the split check, held for a split mismatch;
//! `fixtures/random-requests/` a batch that counts randomly routed requests and a state held
//! with clearing evidence, written by the version that added them. The fixtures under
//! `fixtures/v3/` were written by the code just before the sequential test kept per-step
//! evidence (commit b930d1a): a rollout on its third step.

use bluegreen_core::controller::rollout::{Event, EventKind, Phase, State};
use bluegreen_core::controller::windows::Scopes;
use bluegreen_core::isolate::batch::Batch;
use bluegreen_core::stats::{EnvStats, ErrorCounts};
use bluegreen_core::util::json;
use bluegreen_core::Environment;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn fixture(name: &str) -> String {
    match name.split_once('/') {
        Some((dir, name)) => fixture_in(dir, name),
        None => fixture_in("v1", name),
    }
}

/// A fixture of the version that introduced something: `fixtures/<dir>/<name>.json`.
fn fixture_in(dir: &str, name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/{dir}/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Loads a fixture, and checks that today's code writes something it reads back as equal.
fn load<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(name: &str) -> T {
    load_text(name, &fixture(name))
}

fn load_text<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(
    name: &str,
    text: &str,
) -> T {
    let value: T = json::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let again: T = json::parse(&serde_json::to_string(&value).unwrap()).unwrap();
    assert_eq!(again, value, "{name} round-trips");
    value
}

#[test]
fn states_written_by_v1_load_in_every_phase() {
    // (fixture, phase, blue model, green percent, routing version, rollout id, 1-based step)
    type Case = (
        &'static str,
        Phase,
        &'static str,
        f64,
        u64,
        Option<u64>,
        Option<usize>,
    );
    let cases: [Case; 6] = [
        ("state-idle", Phase::Idle, "deepseek-v3", 0.0, 4, None, None),
        (
            "state-progressing-sequential",
            Phase::Progressing,
            "deepseek-v3",
            50.0,
            6,
            Some(1),
            Some(2),
        ),
        (
            "state-paused-sequential",
            Phase::Paused,
            "deepseek-v3",
            25.0,
            7,
            Some(1),
            Some(2),
        ),
        (
            "state-rolled-back-sequential",
            Phase::RolledBack,
            "deepseek-v3",
            0.0,
            9,
            Some(1),
            None,
        ),
        (
            "state-progressing-threshold",
            Phase::Progressing,
            "deepseek-v3",
            10.0,
            5,
            Some(1),
            Some(1),
        ),
        (
            "state-completed-threshold",
            Phase::Completed,
            "gemini-2.5-flash",
            0.0,
            6,
            Some(1),
            None,
        ),
    ];
    for (name, phase, blue, percent, version, rollout_id, step) in cases {
        let s: State = load(name);
        let doc = s.routing_doc(0);
        assert_eq!(s.phase(), phase, "{name}");
        assert_eq!(doc.blue_model, blue, "{name}");
        assert_eq!(doc.green_percent, percent, "{name}");
        assert_eq!(doc.version, version, "{name}");
        assert_eq!(s.rollout_id(), rollout_id, "{name}");
        assert_eq!(s.step_number(), step, "{name}");
    }
}

#[test]
fn a_state_whose_models_an_admin_api_now_refuses_still_loads() {
    // Model names are checked where they enter (issue 11), never when a state loads: a name
    // that an earlier version accepted, control character and all, must not make the stored
    // state unreadable.
    for name in [
        "state-idle",
        "state-progressing-sequential",
        "state-completed-threshold",
    ] {
        let text = fixture(name)
            .replace("\"deepseek-v3\"", "\"deep\\u0007seek\"")
            .replace("\"gemini-2.5-flash\"", "\"mod\u{e8}le\"")
            .replace("\"old\"", "\"\\t\"");
        let s: State = json::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let doc = s.routing_doc(0);
        assert!(
            [&doc.blue_model, &doc.green_model]
                .iter()
                .any(|m| m.contains('\u{7}') || m.contains('è') || m.contains('\t')),
            "{name}: the fixture kept its names"
        );
        let again: State = json::parse(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(again, s, "{name} round-trips");
    }
}

#[test]
fn a_paused_state_keeps_its_pause_time_and_evidence() {
    let s: State = load("state-paused-sequential");
    let json: serde_json::Value = serde_json::to_value(&s).unwrap();
    assert_eq!(json["rollout"]["paused_at_ms"], 1_780_000_130_000u64);
    assert_eq!(
        json["rollout"]["evidence"]["rollout"]["green_requests"],
        600
    );
    assert_eq!(json["verdict"]["step"], 2);
}

#[test]
fn events_written_by_v1_load() {
    let events: Vec<Event> = load("events");
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    use EventKind::*;
    assert_eq!(
        kinds,
        [
            Started,
            StepAdvanced,
            SplitSet,
            RolledBack,
            Started,
            CheckFailed,
            Completed
        ]
    );
    let rollback = &events[3];
    assert!(rollback.alert);
    assert!(rollback
        .message
        .starts_with("Rolled back automatically on step 2"));
    let evidence = rollback
        .verdict
        .as_ref()
        .unwrap()
        .evidence
        .as_ref()
        .unwrap();
    assert_eq!(evidence.errors.green_events, 206);
}

#[test]
fn a_stats_batch_written_by_v1_loads() {
    let batch: Batch = load("batch");
    assert_eq!(batch.id, "0123456789abcdef0123456789abcdef");
    assert_eq!(batch.requests(), 3);
    let green: Vec<_> = batch
        .entries
        .iter()
        .filter(|e| e.env == Environment::Green)
        .collect();
    assert_eq!(green.len(), 1);
    assert_eq!(green[0].stats.errors.server_error, 1);
}

/// `stream_error` (a stream that failed before its first event) joined the error classes
/// after the first release: what that release stored reads as none, and a batch written with
/// them (`fixtures/stream-error/`) loads with them counted.
#[test]
fn stream_errors_read_as_none_from_v1_and_load_from_the_version_that_counts_them() {
    let old: Batch = load("batch");
    assert!(old.entries.iter().all(|e| e.stats.errors.stream_error == 0));
    let scopes: Scopes = load("scopes");
    assert_eq!(scopes.rollout.green.errors.stream_error, 0);

    let batch: Batch = load_text("stream-error/batch", &fixture_in("stream-error", "batch"));
    assert_eq!(batch.requests(), 4);
    let green = batch
        .entries
        .iter()
        .find(|e| e.env == Environment::Green)
        .unwrap();
    // 3 requests: 2 failed before their first event (and fell back), 1 was cut after it began.
    assert_eq!(green.stats.errors.stream_error, 2);
    assert_eq!(green.stats.errors.interrupted, 1);
    assert_eq!(green.stats.errors(), 3);
    assert_eq!(green.stats.fallbacks, 2);
}

/// `ejected` (green requests the breaker sent to blue without asking green) joined the error
/// classes after `stream_error`: what the versions before stored reads as none, and a batch
/// written with them (`fixtures/ejected/`) loads with them counted among green's errors.
#[test]
fn ejected_requests_read_as_none_before_and_load_from_the_version_that_counts_them() {
    let v1: Batch = load("batch");
    let before: Batch = load_text("stream-error/batch", &fixture_in("stream-error", "batch"));
    for batch in [&v1, &before] {
        assert!(batch.entries.iter().all(|e| e.stats.errors.ejected == 0));
    }
    let scopes: Scopes = load("scopes");
    assert_eq!(scopes.rollout.green.errors.ejected, 0);

    let batch: Batch = load_text("ejected/batch", &fixture_in("ejected", "batch"));
    let green = batch
        .entries
        .iter()
        .find(|e| e.env == Environment::Green)
        .unwrap();
    // 5 requests, all served by blue: 1 green 503, then 3 shed while green was ejected and 1
    // given up while it hung (a timeout).
    assert_eq!(green.stats.requests, 5);
    assert_eq!(green.stats.errors.ejected, 3);
    assert_eq!(green.stats.errors.timeout, 1);
    assert_eq!(green.stats.errors(), 5);
    assert_eq!(green.stats.fallbacks, 5);
}

/// `not_an_answer` (a 2xx whose body is not the API's answer object) joined the error classes
/// after `ejected`: what every version before stored reads as none, and a batch written with
/// them (`fixtures/not-an-answer/`) loads with them counted, fallbacks by class included.
#[test]
fn answers_that_are_not_answers_read_as_none_before_and_load_from_the_version_that_counts_them() {
    let v1: Batch = load("batch");
    let ejected: Batch = load_text("ejected/batch", &fixture_in("ejected", "batch"));
    for batch in [&v1, &ejected] {
        assert!(batch
            .entries
            .iter()
            .all(|e| e.stats.errors.not_an_answer == 0));
    }
    let scopes: Scopes = load("scopes");
    assert_eq!(scopes.rollout.green.errors.not_an_answer, 0);

    let batch: Batch = load_text("not-an-answer/batch", &fixture_in("not-an-answer", "batch"));
    let of = |env| batch.entries.iter().find(|e| e.env == env).unwrap();
    // Green: 3 requests, 2 answered with something that was no answer (blue served them).
    let green = of(Environment::Green);
    assert_eq!(green.stats.requests, 3);
    assert_eq!(green.stats.errors.not_an_answer, 2);
    assert_eq!(green.stats.errors(), 2);
    assert_eq!(green.stats.fallbacks, 2);
    // Blue: its own such answer, which the client got as a 502.
    let blue = of(Environment::Blue);
    assert_eq!(
        (blue.stats.requests, blue.stats.errors.not_an_answer),
        (1, 1)
    );
}

#[test]
fn stats_windows_and_minutes_written_by_v1_load() {
    let scopes: Scopes = load("scopes");
    assert_eq!(scopes.rollout.green.requests, 300);
    assert_eq!(scopes.window.blue.errors(), 2);
    assert_eq!(scopes.step.green.total.quantile_ms(0.5), Some(120));
    let minute: EnvStats = load("minute");
    assert_eq!(minute.requests, 300);
    assert_eq!(minute.completion_tokens, 6000);
}

/// The first release wrote an evidence ratio that overflowed, or an infinite cost, as JSON
/// `null`, and could then not read its own state back. Such documents load: the evidence as
/// saturated (the rollback it caused stands), the cost as unknown (0). These three fixtures
/// are v1 fixtures with those fields set to `null` by hand, as the first release wrote them.
#[test]
fn documents_with_overflowed_numbers_written_by_v1_load() {
    let s: State = json::parse(&fixture("state-rolled-back-overflowed")).unwrap();
    assert_eq!(s.phase(), Phase::RolledBack);
    let json = serde_json::to_value(&s).unwrap();
    let report = &json["verdict"]["evidence"];
    assert_eq!(report["guard_evidence"], 1e300);
    assert_eq!(report["errors"]["evidence"], 1e300);
    assert!(report["guard_log_evidence"].as_f64().unwrap() > 690.0);
    let again: State = serde_json::from_value(json).unwrap();
    assert_eq!(again, s, "and it round-trips from then on");

    let events: Vec<Event> = load("event-rolled-back-overflowed");
    let report = events[0]
        .verdict
        .as_ref()
        .unwrap()
        .evidence
        .as_ref()
        .unwrap();
    assert!(
        report.latency.reached(),
        "a saturated ratio is past any level"
    );
    assert_eq!(report.guard_evidence, 1e300);

    let scopes: Scopes = load("scopes-overflowed-cost");
    assert_eq!(scopes.rollout.green.cost_usd, 0.0);
    assert_eq!(scopes.rollout.green.requests, 300);
}

#[test]
fn a_batch_written_before_fallbacks_had_classes_loads_with_them_unclassified() {
    let batch: Batch = load("v2/batch");
    // 41 blue and 10 green answers, 2 fallbacks, a refusal, a forced one, a client error.
    assert_eq!(batch.requests(), 56);
    let green: EnvStats = batch
        .entries
        .iter()
        .filter(|e| e.env == Environment::Green && !e.forced)
        .fold(EnvStats::default(), |mut s, e| {
            s.merge(&e.stats);
            s
        });
    // Two fallbacks (a 503 and a timeout), stored without their classes.
    assert_eq!((green.fallbacks, green.errors.server_error), (2, 1));
    assert_eq!(green.fallbacks_by_class, ErrorCounts::default());
    assert_eq!(green.defects.refusal, 1);
}

#[test]
fn stats_windows_written_before_lifetime_counters_load_and_start_them_at_zero() {
    let scopes: Scopes = load("v2/scopes");
    // What the previous version said: 41 blue requests routed under version 5, one under
    // version 4 (before the rollout), 13 green (10 answers, 2 fallbacks, a refusal), 1 forced.
    assert_eq!(scopes.rollout.blue.requests, 41);
    assert_eq!(scopes.rollout.green.requests, 13);
    assert_eq!(scopes.rollout.green.fallbacks, 2);
    assert_eq!(scopes.rollout.green.defects.refusal, 1);
    assert_eq!(
        (scopes.earlier_requests, scopes.forced.green.requests),
        (1, 1)
    );
    assert_eq!(scopes.by_version[&5].blue.requests, 41);
    assert!(scopes.lifetime.series.is_empty());
    assert_eq!(scopes.lifetime.requests(), 0);
    let json = serde_json::to_string(&scopes).unwrap();
    assert!(json.contains("\"lifetime\""), "written from now on");
}

#[test]
fn shadow_steps_their_windows_and_batches_load() {
    // Written by the release that added shadow steps (issue 12, part 4): a rollout on its
    // shadow step, the windows with a shadow scope, an isolate's batch with shadow figures.
    let s: State = load("shadow/state-shadow-step");
    let doc = s.routing_doc(0);
    assert_eq!(
        (doc.green_percent, doc.shadow_percent, doc.version),
        (0.0, 20.0, 5)
    );
    let steps = &s.rollout().unwrap().steps;
    assert!(steps[0].is_shadow() && !steps[1].is_shadow());
    let scopes: Scopes = load("shadow/scopes");
    assert_eq!(scopes.shadow.step.pairs.pairs, 61);
    assert_eq!(scopes.shadow.window.pairs.green_only_errors, 3);
    assert_eq!(scopes.shadow.rollout.unfinished, 2);
    assert_eq!(scopes.shadow.step.green.errors(), 3);
    let batch: Batch = load("shadow/batch");
    assert_eq!(batch.shadow.len(), 1);
    assert_eq!(batch.shadow[0].stats.capped, 5);
    assert_eq!(batch.shadow[0].stats.pairs.defects["invalid_json/none"], 2);
    // What earlier releases stored has no shadow: empty, and written without the field.
    let old: Scopes = load("v2/scopes");
    assert_eq!(old.shadow, Default::default());
    assert!(!serde_json::to_string(&old).unwrap().contains("shadow"));
    let old: Batch = load("v2/batch");
    assert!(old.shadow.is_empty());
    assert!(!serde_json::to_string(&old).unwrap().contains("shadow"));
}

/// Shadow windows kept by routing version (the shadow step's review, issue 12 part 4) load with
/// their versions; those written before load with none, and are judged as one stratum.
#[test]
fn shadow_windows_by_version_load() {
    let scopes: Scopes = load("shadow-by-version/scopes");
    let strata = scopes.shadow.strata();
    assert_eq!(scopes.shadow.by_version[&5].pairs.green_only_errors, 3);
    assert_eq!(strata[0].version, Some(5));
    let before: Scopes = load("shadow/scopes");
    assert!(before.shadow.by_version.is_empty());
    assert_eq!(before.shadow.strata()[0].version, None);
}

/// The lifetime counters of shadow copies (for `/metrics`): written by the version that added
/// them, they load; written before, they read as none and are not written while none.
#[test]
fn shadow_lifetime_counters_load_and_read_as_none_before() {
    let scopes: Scopes = load("shadow-lifetime/scopes");
    let l = &scopes.lifetime;
    assert_eq!(l.shadow.len(), 1);
    assert_eq!(
        (l.shadow[0].model.as_str(), l.shadow[0].stats.requests),
        ("green-m", 61)
    );
    assert_eq!((l.shadow_unfinished, l.shadow_capped), (2, 5));
    assert_eq!(l.requests(), 0, "copies are not routed requests");
    let before: Scopes = load("shadow-by-version/scopes");
    assert!(before.lifetime.shadow.is_empty());
    assert_eq!(
        (
            before.lifetime.shadow_unfinished,
            before.lifetime.shadow_capped
        ),
        (0, 0)
    );
}

/// States written before the split check existed load with its evidence empty, no hold and the
/// check off (a tolerance of 0: a rollout running when the check is deployed keeps running as
/// it was started); a state written by the version that added it (`fixtures/split-check/`,
/// held for a mismatch at a tolerance of 0.5) loads with its hold, evidence and tolerance, and
/// no clearing evidence yet.
#[test]
fn the_split_check_reads_as_off_from_v1_and_loads_with_its_hold() {
    use bluegreen_core::controller::rollout::checks_split;
    use bluegreen_core::verdict::share_check::SplitCheck;
    let before: State = load("state-progressing-sequential");
    let r = before.rollout().unwrap();
    assert_eq!(r.split_check, SplitCheck::default());
    assert_eq!(r.health.split_tolerance, 0.0);
    assert!(!r.health.checks_split() && !checks_split(&before));
    let held: State = load_text(
        "split-check/state-held",
        &fixture_in("split-check", "state-held"),
    );
    let r = held.rollout().unwrap();
    assert_eq!(r.health.split_tolerance, 0.5);
    assert!(checks_split(&held));
    let c = &r.split_check;
    assert!(c.holds());
    assert_eq!((c.clear_bottom, c.clear_top), (0.0, 0.0));
    assert_eq!((c.green_requests, c.blue_requests), (20, 580));
    assert_eq!((c.above.len(), c.below.len()), (4, 4));
    let hold = c.hold.as_ref().unwrap();
    assert_eq!(hold.since_ms, 1_790_000_120_000);
    assert!(hold
        .reason
        .starts_with("Split mismatch: green got 3.3% of 1200 requests"));
}

/// A rollout stored on its third step before per-step evidence was kept loads, and keeps
/// judging: its step's evidence starts at the first tick after the load, and a green that
/// breaks now is rolled back on it.
#[test]
fn a_rollout_stored_before_per_step_evidence_loads_and_keeps_judging() {
    use bluegreen_core::controller::rollout::{apply, Command, Stratum};
    use bluegreen_core::stats::Pair;
    let state: State = load("v3/state-progressing-sequential");
    assert_eq!(state.phase(), Phase::Progressing);
    assert_eq!(state.step_number(), Some(3));
    let evidence = &state.rollout().unwrap().evidence;
    assert!(evidence.step_errors.is_empty() && evidence.errors.len() == 4);
    assert_eq!(state.rollout().unwrap().incident, None);
    let old = state.verdict().unwrap().verdict.evidence.as_ref().unwrap();
    assert_eq!(old.step_errors, None);
    let env = |requests: u64, errors: u64| {
        let mut s = EnvStats {
            requests,
            answers: requests - errors,
            ..EnvStats::default()
        };
        s.errors.server_error = errors;
        s
    };
    let mut state = state;
    let mut now = state.verdict().unwrap().at_ms;
    for tick in 1..=10 {
        now += 60_000;
        let window = Pair {
            green: env(300, 12),
            blue: env(300, 2),
        };
        let t = apply(
            &state,
            Command::Tick {
                judge_reasons: Vec::new(),
                window: Box::new(window.clone()),
                strata: vec![Stratum::in_step(window)],
                shadow: Vec::new(),
                blue_p95_ms: None,
                step_cost: Pair::default(),
            },
            now,
        )
        .unwrap();
        state = t.state;
        if state.phase() == Phase::RolledBack {
            let report = state.verdict().unwrap().verdict.evidence.as_ref().unwrap();
            assert!(report.step_errors.as_ref().unwrap().reached(), "{report:?}");
            assert!(tick <= 5, "rolled back on tick {tick}");
            return;
        }
    }
    panic!("not rolled back: {:?}", state.verdict());
}

/// `random_requests` (what the split check counts) joined the stats after the split check: what
/// the versions before stored reads as none, and a batch written with them
/// (`fixtures/random-requests/`) loads with them; so does a held state with clearing evidence.
#[test]
fn random_requests_and_clearing_evidence_read_as_none_before_and_load_after() {
    let before: Batch = load_text("ejected/batch", &fixture_in("ejected", "batch"));
    assert!(before.entries.iter().all(|e| e.stats.random_requests == 0));
    let scopes: Scopes = load("scopes");
    assert_eq!(scopes.rollout.green.random_requests, 0);

    let batch: Batch = load_text(
        "random-requests/batch",
        &fixture_in("random-requests", "batch"),
    );
    let by_env: Vec<(Environment, u64, u64)> = batch
        .entries
        .iter()
        .map(|e| (e.env, e.stats.requests, e.stats.random_requests))
        .collect();
    assert_eq!(
        by_env,
        [(Environment::Blue, 1, 1), (Environment::Green, 5, 3)]
    );

    let held: State = load_text(
        "random-requests/state-held-clearing",
        &fixture_in("random-requests", "state-held-clearing"),
    );
    let c = &held.rollout().unwrap().split_check;
    assert!(c.holds());
    assert_eq!((c.clear_bottom, c.clear_top), (2.5, 3.75));
    assert_eq!((c.green_requests, c.blue_requests), (60, 540));
}

/// Feedback counts gained refusals (`replayed`, `limited`) with the credential and rate bounds.
/// Everything stored before loads with none, and writes no new field while there are none, so
/// that what a controller of the release before reads back is what it wrote; a batch with
/// refusals (`fixtures/feedback-refused/`, written by the version that added them) loads, and a
/// controller of the release before ignores the two fields.
#[test]
fn feedback_refusals_read_as_none_before_and_load_after() {
    let scopes: Scopes = load("shadow-lifetime/scopes");
    let written = serde_json::to_string(&scopes).unwrap();
    assert!(!written.contains("\"replayed\"") && !written.contains("\"limited\""));
    for s in &scopes.lifetime.series {
        assert_eq!(
            (s.stats.feedback.replayed, s.stats.feedback.limited),
            (0, 0)
        );
    }
    let batch: Batch = load("feedback-refused/batch");
    let green = &batch.entries[0];
    assert_eq!(green.env, Environment::Green);
    let f = &green.stats.feedback;
    assert_eq!((f.scored, f.replayed, f.limited), (0, 3, 2));
    assert_eq!(batch.requests(), 0, "refused scores are not requests");
    let blue = &batch.entries[1];
    assert!(blue.forced);
    assert_eq!(blue.stats.feedback.limited, 1);
}

#[test]
fn the_route_registry_and_a_routes_event_written_by_the_release_that_added_routes_load() {
    use bluegreen_core::route::registry::{Registry, RouteTable, UnknownModels};
    let registry: Registry = load("routes/registry");
    assert_eq!(registry.version, 3);
    assert!(!registry.has_default());
    let second = &registry.routes[1];
    assert_eq!(
        (
            second.name.as_str(),
            second.green_model.as_str(),
            second.sticky
        ),
        ("openai/gpt-4.1", "gpt-4.1-mini", false)
    );
    // Routes stored before embeddings routes serve chat.
    assert!(registry
        .routes
        .iter()
        .all(|r| r.kind == bluegreen_core::route::registry::RouteKind::Chat));
    let vars = bluegreen_core::config::Config::from_lookup(|_| None)
        .unwrap()
        .defaults;
    let table = RouteTable::new(&registry, &vars);
    assert!(table
        .resolve(Some("gpt-4o"), UnknownModels::Default)
        .is_none());
    assert_eq!(
        table
            .resolve(Some("chat"), UnknownModels::Default)
            .unwrap()
            .defaults
            .blue_model,
        "deepseek-v3"
    );
    let event: Event = load("routes/event");
    assert_eq!(
        (event.kind, event.route.as_deref()),
        (EventKind::RouteDefined, Some("chat"))
    );
    // An event stored before routes names none: the default route's.
    let old: Vec<Event> = load("events");
    assert!(old.iter().all(|e| e.route.is_none()));
}

/// Written by the release that added the grader (issue 24): a rollout whose policy names one,
/// judged once; windows holding green's judged pairs and the last loss; an isolate's batch with
/// them; the routing document that carries the grader. Everything stored before reads as no
/// grader and nothing judged, and is written without the new fields.
#[test]
fn the_graders_policy_pairs_and_losses_load_and_read_as_none_before() {
    let s: State = load("judge/state-judged");
    let r = s.rollout().unwrap();
    let j = r.health.judge.as_ref().unwrap();
    assert_eq!(
        (j.model.as_str(), j.both_orders, j.tolerance),
        ("judge-m", true, 0.55)
    );
    let report = r
        .verdict
        .as_ref()
        .unwrap()
        .verdict
        .evidence
        .as_ref()
        .unwrap();
    let jr = report.judge.as_ref().unwrap();
    assert_eq!((jr.wins, jr.losses, jr.ties), (4, 9, 3));
    assert_eq!(s.routing_doc(0).judge.as_deref(), Some(j.as_ref()));
    let scopes: Scopes = load("judge/scopes");
    assert_eq!(scopes.rollout.green.judged.losses, 9);
    assert_eq!(scopes.rollout.green.judged.cost_usd, 0.0125);
    assert_eq!(
        scopes.judge_losses.list()[0].reason,
        "B gives the right year."
    );
    let batch: Batch = load("judge/batch");
    assert_eq!(batch.entries[0].stats.judged.inconsistent, 2);
    assert_eq!(batch.judge_losses.len(), 1);
    let doc =
        bluegreen_core::request::routing::RoutingDoc::parse(&fixture("judge/routing")).unwrap();
    assert_eq!(doc.judge.unwrap().sample_percent, 25.0);
    // Before the grader: none, and nothing of it written.
    let old: State = load("shadow/state-shadow-step");
    assert!(old.rollout().unwrap().health.judge.is_none());
    assert!(old.routing_doc(0).judge.is_none());
    let old: Scopes = load("shadow/scopes");
    assert!(old.judge_losses.is_empty() && old.rollout.green.judged.is_empty());
    let old: Batch = load("v2/batch");
    assert!(old.judge_losses.is_empty());
    for text in [
        serde_json::to_string(&old).unwrap(),
        serde_json::to_string(&load::<Scopes>("shadow/scopes")).unwrap(),
        serde_json::to_string(&load::<State>("shadow/state-shadow-step")).unwrap(),
    ] {
        assert!(!text.contains("judge"), "{text}");
    }
}
