//! Shadow steps: what a start accepts, what the routing document says on them, and how their
//! ticks judge green on copies while no user is served by green.

use serde_json::json;

use super::*;
use crate::shadow::{PairCounts, ShadowStats, ShadowStratum};

#[test]
fn a_shadow_step_is_read_with_its_share_and_comes_before_the_live_ones() {
    let s = RolloutSpec::from_json(&json!({
        "green_model": "g",
        "steps": [{"shadow_percent": 20, "hold_seconds": 1800},
                  {"shadow_percent": 50, "green_percent": 0, "hold_seconds": 60},
                  {"green_percent": 10, "hold_seconds": 60}]
    }))
    .unwrap();
    assert_eq!(s.steps[0], Step::shadow(20.0, 1800));
    assert_eq!(s.steps[1], Step::shadow(50.0, 60));
    assert_eq!(s.steps[2], Step::live(10.0, 60));
    assert!(s.steps[0].is_shadow() && !s.steps[2].is_shadow());
    // Stored and shown: a live step's JSON is the one earlier releases wrote.
    assert_eq!(
        serde_json::to_value(s.steps).unwrap(),
        json!([{"green_percent": 0.0, "hold_seconds": 1800, "shadow_percent": 20.0},
               {"green_percent": 0.0, "hold_seconds": 60, "shadow_percent": 50.0},
               {"green_percent": 10.0, "hold_seconds": 60}])
    );
    let old: Step = serde_json::from_str(r#"{"green_percent": 30, "hold_seconds": 5}"#).unwrap();
    assert_eq!(old, Step::live(30.0, 5));
}

#[test]
fn shadow_step_refusals_name_the_field_and_the_rule() {
    let shadow = json!({"shadow_percent": 20, "hold_seconds": 60});
    let live = json!({"green_percent": 10, "hold_seconds": 60});
    // (steps, health, the field named, words of the rule)
    let cases = [
        (json!([shadow]), json!({}), "steps", "needs a live step"),
        (
            json!([live, shadow]),
            json!({}),
            "steps[1].shadow_percent",
            "before the live steps",
        ),
        (
            json!([{"shadow_percent": 20, "green_percent": 5, "hold_seconds": 1}, live]),
            json!({}),
            "steps[0].green_percent",
            "must be 0 or absent in a shadow step",
        ),
        (
            json!([{"shadow_percent": 0, "hold_seconds": 1}, live]),
            json!({}),
            "steps[0].shadow_percent",
            "from 0.01 to 100",
        ),
        (
            json!([{"shadow_percent": 101, "hold_seconds": 1}, live]),
            json!({}),
            "steps[0].shadow_percent",
            "from 0.01 to 100",
        ),
        (
            json!([shadow, live]),
            json!({"method": "threshold"}),
            "steps[0].shadow_percent",
            "needs the sequential method",
        ),
        (
            json!([{"hold_seconds": 1}]),
            json!({}),
            "steps[0].green_percent",
            "or shadow_percent",
        ),
    ];
    for (steps, health, field, rule) in cases {
        let body = json!({"green_model": "g", "steps": steps, "health": health});
        let err = RolloutSpec::from_json(&body).unwrap_err();
        assert_eq!(err.field, field, "{body}");
        assert!(err.rule.contains(rule), "{body}: {}", err.rule);
    }
}

fn shadow_rollout(min_requests: u64) -> State {
    shadow_rollout_with(HealthPolicy {
        min_requests,
        ..HealthPolicy::default()
    })
}

/// A rollout on its shadow step (20% copied, then 10% live) judged by `health`.
fn shadow_rollout_with(health: HealthPolicy) -> State {
    let spec = RolloutSpec {
        green_model: "green-m".into(),
        steps: vec![Step::shadow(20.0, 60), Step::live(10.0, 60)],
        health,
    };
    apply(
        &State::initial(&routing()),
        Command::Start {
            spec,
            routing: routing(),
        },
        0,
    )
    .unwrap()
    .state
}

/// A tick of `blue` requests of blue (none of green) and `pairs` copies, `green_only` of them
/// failing where blue answered.
fn shadow_tick(s: &State, blue: u64, pairs: u64, green_only: u64, now: u64) -> Transition {
    held_shadow_tick(s, blue, pairs, green_only, None, now)
}

/// [`shadow_tick`], with the step's stratum held for copies given up (`held`).
fn held_shadow_tick(
    s: &State,
    blue: u64,
    pairs: u64,
    green_only: u64,
    held: Option<&str>,
    now: u64,
) -> Transition {
    marked_shadow_tick(s, (blue, pairs, green_only), held, None, now)
}

/// [`shadow_tick`] of `(blue, pairs, green_only)`, with the step's stratum held (`held`) or
/// failed (`failed`).
fn marked_shadow_tick(
    s: &State,
    (blue, pairs, green_only): (u64, u64, u64),
    held: Option<&str>,
    failed: Option<&str>,
    now: u64,
) -> Transition {
    let mut window = Pair::<EnvStats>::default();
    window.blue.requests = blue;
    let mut green = EnvStats {
        requests: pairs,
        answers: pairs - green_only,
        ..EnvStats::default()
    };
    green.errors.server_error = green_only;
    let stats = ShadowStats {
        green,
        pairs: PairCounts {
            pairs,
            green_only_errors: green_only,
            answered: pairs - green_only,
            ..PairCounts::default()
        },
        ..ShadowStats::default()
    };
    apply(
        s,
        Command::Tick {
            judge_reasons: Vec::new(),
            window: Box::new(window),
            strata: Vec::new(),
            blue_p95_ms: None,
            step_cost: Pair::default(),
            shadow: vec![ShadowStratum {
                stats,
                in_step: true,
                step_held: held.map(str::to_string),
                step_failed: failed.map(str::to_string),
                version: None,
            }],
        },
        now,
    )
    .unwrap()
}

/// A step whose green vectors came in two lengths rolls back at its next tick, however clean
/// the counts, with the reason first.
#[test]
fn a_failed_shadow_step_rolls_back_whatever_the_counts() {
    let s = shadow_rollout(50);
    let why = "green's vectors came in lengths from 1536 to 3072: an index holds one length";
    let t = marked_shadow_tick(&s, (100, 100, 0), None, Some(why), MIN);
    assert_eq!(t.state.phase(), Phase::RolledBack);
    let verdict = t.state.rollout().unwrap().verdict.clone().unwrap().verdict;
    assert_eq!(verdict.reasons[0], why);
    let clean = shadow_tick(&s, 100, 100, 0, MIN);
    assert_ne!(clean.state.phase(), Phase::RolledBack);
}

#[test]
fn a_shadow_step_copies_blues_requests_and_serves_no_user_from_green() {
    let s = shadow_rollout(50);
    assert_eq!((s.green_percent(), s.shadow_percent()), (0.0, 20.0));
    let doc = s.routing_doc(0);
    assert_eq!((doc.green_percent, doc.shadow_percent), (0.0, 20.0));
    let back = apply(&s, Command::Rollback, MIN).unwrap().state;
    assert_eq!(
        (back.shadow_percent(), back.routing_doc(0).shadow_percent),
        (0.0, 0.0)
    );
}

/// What each operator command does to a shadow step's copies: a pause stops them with a new
/// document (version + 1), a resume publishes the share again (+ 1), a manual split (even at
/// 0% green) stops them, a rollback and a promotion end them.
#[test]
fn operator_commands_stop_and_restore_a_shadow_steps_copies() {
    let s = shadow_rollout(50);
    let v = s.version();
    let writes = |t: &Transition| t.effects.contains(&Effect::WriteSplit);
    let paused = apply(&s, Command::Pause, MIN).unwrap();
    assert!(writes(&paused));
    let doc = paused.state.routing_doc(0);
    assert_eq!(
        (doc.shadow_percent, doc.green_percent, doc.version),
        (0.0, 0.0, v + 1)
    );
    let resumed = apply(&paused.state, Command::Resume, 2 * MIN).unwrap();
    assert!(writes(&resumed));
    let doc = resumed.state.routing_doc(0);
    assert_eq!((doc.shadow_percent, doc.version), (20.0, v + 2));
    for green_percent in [0.0, 5.0] {
        let manual = apply(&s, Command::SetSplit { green_percent }, MIN).unwrap();
        assert!(writes(&manual));
        let doc = manual.state.routing_doc(0);
        assert_eq!(
            (doc.shadow_percent, doc.green_percent),
            (0.0, green_percent)
        );
        // Resumed from the manual split: the step's 0% and its copies again.
        let resumed = apply(&manual.state, Command::Resume, 2 * MIN).unwrap();
        let doc = resumed.state.routing_doc(0);
        assert_eq!((doc.shadow_percent, doc.green_percent), (20.0, 0.0));
    }
    for cmd in [Command::Rollback, Command::Promote] {
        let ended = apply(&s, cmd, MIN).unwrap();
        assert!(writes(&ended));
        assert_eq!(ended.state.routing_doc(0).shadow_percent, 0.0);
    }
    // A live step's pause keeps its document: no write.
    let live = shadow_tick(&shadow_tick(&s, 200, 40, 0, MIN).state, 200, 40, 0, 2 * MIN).state;
    assert_eq!(live.green_percent(), 10.0);
    assert!(!writes(&apply(&live, Command::Pause, 3 * MIN).unwrap()));
}

#[test]
fn a_healthy_shadow_step_advances_on_pairs_to_the_first_live_step() {
    let s = shadow_rollout(50);
    // Tick 1: 40 pairs, too few for min_requests (50 pairs): held.
    let t = shadow_tick(&s, 200, 40, 0, MIN);
    assert_eq!(t.state.verdict_status(), Some(VerdictStatus::Inconclusive));
    // Tick 2 (past the 60 s hold): 80 pairs in the step, healthy: on to the live 10% step,
    // the copies end with it.
    let t = shadow_tick(&t.state, 200, 40, 0, 2 * MIN);
    assert_eq!(kinds(&t), [EventKind::StepAdvanced]);
    let s = t.state;
    assert_eq!((s.green_percent(), s.shadow_percent()), (10.0, 0.0));
    assert_eq!(s.routing_doc(0).shadow_percent, 0.0);
}

/// The same healthy step, but with too many of its copies given up: it holds past its hold
/// time, with the reason in the verdict, and advances once the share is back under the limit.
#[test]
fn a_shadow_step_with_too_many_copies_given_up_does_not_advance() {
    let s = shadow_rollout(50);
    let t = shadow_tick(&s, 200, 40, 0, MIN);
    let why = "shadow step held: 2 of its 80 copies were given up unfinished";
    let t = held_shadow_tick(&t.state, 200, 40, 0, Some(why), 2 * MIN);
    assert_eq!(kinds(&t), []);
    assert_eq!(t.state.green_percent(), 0.0);
    let reasons = t.state.verdict().unwrap().verdict.reasons.join(" | ");
    assert!(reasons.contains(why), "{reasons}");
    let t = shadow_tick(&t.state, 200, 40, 0, 3 * MIN);
    assert_eq!(kinds(&t), [EventKind::StepAdvanced]);
}

/// A shadow step whose ticks see no pairs (no copies made) says so, and holds.
#[test]
fn a_shadow_step_without_pairs_says_so() {
    let s = shadow_rollout(50);
    let t = shadow_tick(&s, 200, 0, 0, 2 * MIN);
    assert_eq!(kinds(&t), []);
    let reasons = t.state.verdict().unwrap().verdict.reasons.join(" | ");
    assert!(
        reasons.contains("shadow step: no copy paired this tick"),
        "{reasons}"
    );
    // With pairs, not.
    let t = shadow_tick(&s, 200, 40, 0, 2 * MIN);
    let reasons = t.state.verdict().unwrap().verdict.reasons.join(" | ");
    assert!(!reasons.contains("no copy paired"), "{reasons}");
}

#[test]
fn a_failing_green_is_rolled_back_from_its_shadow_step_with_reasons() {
    let s = shadow_rollout(50);
    // 60 copies a tick against 300 of blue's requests with no failure: green fails 10 of
    // them where blue answered. The evidence carries through the step.
    let mut s = s;
    for tick in 1..=10 {
        let t = shadow_tick(&s, 300, 60, 10, tick * MIN);
        let events = kinds(&t);
        s = t.state;
        if s.phase() == Phase::RolledBack {
            assert_eq!(events, [EventKind::RolledBack]);
            let v = s.verdict().unwrap();
            assert!(v
                .verdict
                .reasons
                .iter()
                .any(|r| r.starts_with("green errors")));
            assert!(
                v.verdict
                    .reasons
                    .iter()
                    .any(|r| r.starts_with("shadow pairs this tick: 60; green failed alone in 10")),
                "{:?}",
                v.verdict.reasons
            );
            assert_eq!(s.green_percent(), 0.0);
            return;
        }
    }
    panic!("not rolled back in 10 ticks");
}

/// An incident that outlasts its hour pauses a shadow step as an operator's pause does: the
/// copies stop with a new document.
#[test]
fn an_incident_pause_stops_a_shadow_steps_copies() {
    let mut s = shadow_rollout(50);
    let v = s.version();
    let blue_failing = |s: &State, now: u64| {
        let mut window = Pair::<EnvStats>::default();
        window.blue.requests = 1000;
        window.blue.errors.server_error = 300;
        seq_tick(s, window, now)
    };
    let mut paused = None;
    for m in 1..=70 {
        let t = blue_failing(&s, m * MIN);
        if t.state.phase() == Phase::Paused {
            paused = Some(t);
            break;
        }
        s = t.state;
    }
    let t = paused.expect("paused within 70 minutes of a provider-wide incident");
    assert!(t.effects.contains(&Effect::WriteSplit));
    let doc = t.state.routing_doc(0);
    assert_eq!((doc.shadow_percent, doc.green_percent), (0.0, 0.0));
    assert!(doc.version > v);
}

/// On a shadow step the grader's pairs (blue's answers against green's copies) are counted in
/// green's routed stats of the step's version, whose stratum the copies' counts replace: they
/// still reach the grader's test.
#[test]
fn a_shadow_steps_judged_pairs_reach_the_graders_test() {
    let judge = crate::judge::JudgePolicy::from_json(
        &serde_json::json!({"model": "j", "sample_percent": 100, "max_per_minute": 60}),
        "judge",
    )
    .unwrap();
    let s = shadow_rollout_with(HealthPolicy {
        judge: Some(Box::new(judge)),
        ..HealthPolicy::default()
    });
    let mut window = Pair::<EnvStats>::default();
    window.blue.requests = 100;
    window.green.judged.losses = 40;
    window.green.judged.wins = 2;
    let t = apply(
        &s,
        Command::Tick {
            judge_reasons: vec!["B is right.".into()],
            window: Box::new(window),
            strata: Vec::new(),
            blue_p95_ms: None,
            step_cost: Pair::default(),
            shadow: vec![ShadowStratum {
                stats: ShadowStats {
                    green: EnvStats {
                        requests: 100,
                        answers: 100,
                        ..EnvStats::default()
                    },
                    pairs: PairCounts {
                        pairs: 100,
                        answered: 100,
                        ..PairCounts::default()
                    },
                    ..ShadowStats::default()
                },
                in_step: true,
                step_held: None,
                step_failed: None,
                version: None,
            }],
        },
        MIN,
    )
    .unwrap();
    assert_eq!(
        t.state.phase(),
        Phase::RolledBack,
        "{:?}",
        t.state.verdict()
    );
    let report = t.state.verdict().unwrap().verdict.evidence.clone().unwrap();
    assert_eq!(report.judge.unwrap().losses, 40);
}
