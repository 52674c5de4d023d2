//! The sequential test's timelines: evidence carried through the rollout, a broken green rolled
//! back at once, ticks without traffic, advancing early.

use super::*;

#[test]
fn sequential_rolls_a_broken_green_back_on_the_first_tick_with_its_evidence() {
    let s = started_sequential(&[(10.0, 1800)], HealthPolicy::default());
    let mut w = window(540, 0);
    w.blue.errors.server_error = 2;
    w.green.requests = 60;
    w.green.errors.server_error = 30;
    let t = seq_tick(&s, w, MIN);
    assert_eq!(t.state.phase(), Phase::RolledBack);
    assert_eq!(t.effects[0], Effect::ResetWindow);
    let Some(Effect::Record(ev)) = t.effects.last() else {
        panic!("an event")
    };
    assert!(
        ev.message
            .starts_with("Rolled back automatically on step 1: green errors are"),
        "{}",
        ev.message
    );
    let evidence = ev.verdict.as_ref().unwrap().evidence.as_ref().unwrap();
    assert!(evidence.errors.reached());
    assert_eq!(
        (evidence.errors.green_events, evidence.errors.blue_events),
        (30, 2)
    );
}

#[test]
fn sequential_ticks_without_traffic_hold_and_add_nothing() {
    let mut s = started_sequential(&[(10.0, 60), (50.0, 60)], HealthPolicy::default());
    for m in 1..=5 {
        let t = seq_tick(&s, Pair::default(), m * MIN);
        assert_eq!(t.effects, [Effect::ResetWindow], "minute {m}");
        s = t.state;
    }
    assert_eq!(s.rollout().unwrap().evidence.ticks, 0);
    assert_eq!(
        s.verdict().unwrap().verdict.status,
        VerdictStatus::Inconclusive
    );
    assert_eq!(s.green_percent(), 10.0);
}

#[test]
fn sequential_evidence_carries_across_steps_pauses_and_manual_splits() {
    let mut s = started_sequential(
        &[(10.0, 60), (50.0, 60), (70.0, 60)],
        HealthPolicy::default(),
    );
    // Green a little worse than blue, not enough to roll back: evidence builds up.
    s = seq_tick(&s, timed(200, 1, 2), MIN).state;
    let evidence = |s: &State| s.rollout().unwrap().evidence.errors.clone();
    let after_step_one = evidence(&s);
    assert!(after_step_one.iter().any(|x| *x != 0.0));
    assert_eq!(
        s.green_percent(),
        50.0,
        "held 60 s with enough data: advanced"
    );
    assert_eq!(
        evidence(&s),
        after_step_one,
        "a new step keeps the evidence"
    );
    // Pause, manual split, resume: the evidence is untouched.
    s = apply(&s, Command::Pause, 2 * MIN).unwrap().state;
    s = apply(&s, Command::SetSplit { green_percent: 5.0 }, 2 * MIN)
        .unwrap()
        .state;
    s = apply(&s, Command::Resume, 3 * MIN).unwrap().state;
    assert_eq!(evidence(&s), after_step_one);
    assert_eq!(s.rollout().unwrap().evidence.rollout.green_errors, 2);
}

#[test]
fn advance_early_ends_a_step_once_green_is_clearly_fine() {
    let health = HealthPolicy {
        advance_early: true,
        ..HealthPolicy::default()
    };
    let mut s = started_sequential(&[(50.0, 3600), (70.0, 3600)], health.clone());
    // An hour's hold, but equal and plentiful evidence: advances long before.
    let mut advanced_at = None;
    for m in 1..=30 {
        s = seq_tick(&s, timed(1000, 20, 20), m * MIN).state;
        if s.green_percent() == 70.0 {
            advanced_at = Some(m);
            break;
        }
    }
    assert!(advanced_at.is_some_and(|m| m < 60), "{advanced_at:?}");
    // Without advance_early the same data holds for the whole hour.
    let mut s = started_sequential(&[(50.0, 3600), (70.0, 3600)], HealthPolicy::default());
    for m in 1..=30 {
        s = seq_tick(&s, timed(1000, 20, 20), m * MIN).state;
    }
    assert_eq!(s.green_percent(), 50.0);
}

#[test]
fn after_a_resume_the_sequential_step_needs_new_traffic_to_pass() {
    // min_requests 50 (the default): a step that met it before the pause must meet it again.
    let mut s = started_sequential(&[(10.0, 60), (50.0, 60)], HealthPolicy::default());
    s = seq_tick(&s, timed(200, 1, 1), 30_000).state;
    assert!(
        s.rollout().unwrap().step_passed,
        "enough traffic, held 30 of 60 s"
    );
    // Paused at 40 s for 10 minutes, then a manual split and a resume.
    s = apply(&s, Command::Pause, 40_000).unwrap().state;
    s = apply(&s, Command::SetSplit { green_percent: 5.0 }, MIN)
        .unwrap()
        .state;
    let r = apply(&s, Command::Resume, 10 * MIN + 40_000).unwrap();
    assert!(
        r.effects.contains(&Effect::ResetWindow),
        "the pause's traffic is not this step's"
    );
    s = r.state;
    // (tick time, green and blue requests since the resume, step after the tick, passed)
    #[rustfmt::skip]
    let timeline: [(u64, u64, f64, bool); 4] = [
        // The hold is over (30 s before the pause + 60 s since), but no traffic since: holds.
        (11 * MIN + 40_000, 0, 10.0, false),
        // 30 of each: still under min_requests since the resume.
        (12 * MIN + 40_000, 30, 10.0, false),
        // 30 more, 60 in all: passes and advances.
        (13 * MIN + 40_000, 30, 50.0, false),
        (14 * MIN + 40_000, 0, 50.0, false),
    ];
    for (now, n, percent, passed) in timeline {
        s = seq_tick(&s, timed(n, 0, 0), now).state;
        assert_eq!(s.green_percent(), percent, "at {now} ms");
        assert_eq!(s.rollout().unwrap().step_passed, passed, "at {now} ms");
    }
}

/// A green whose answers come back unusable five times as often as blue's (1% against 5%, no
/// HTTP errors at all) is rolled back by the defect test, with the classes named; a policy that
/// ignores that class keeps it.
#[test]
fn answer_defects_roll_green_back_unless_the_policy_ignores_their_class() {
    let defective = || {
        let mut w = window(0, 0);
        w.blue.requests = 2700;
        w.blue.defects.invalid_json = 27;
        w.green.requests = 300;
        w.green.defects.invalid_json = 15;
        w.green.defects.truncated = 1;
        w
    };
    let s = started_sequential(&[(10.0, 1800)], HealthPolicy::default());
    let t = seq_tick(&s, defective(), MIN);
    assert_eq!(t.state.phase(), Phase::RolledBack);
    let Some(Effect::Record(ev)) = t.effects.last() else {
        panic!("an event")
    };
    assert!(
        ev.message
            .starts_with("Rolled back automatically on step 1: green answer defects are"),
        "{}",
        ev.message
    );
    let verdict = ev.verdict.as_ref().unwrap();
    assert!(verdict
        .reasons
        .iter()
        .any(|r| r == "green answer defects this tick: truncated 1, invalid_json 15; blue: invalid_json 27"),
        "{:?}", verdict.reasons);
    let evidence = verdict.evidence.as_ref().unwrap();
    assert!(evidence.defects.as_ref().unwrap().reached());
    assert!(!evidence.errors.reached());

    let lenient = HealthPolicy {
        ignore_defects: vec![Defect::InvalidJson, Defect::Truncated],
        ..HealthPolicy::default()
    };
    let s = started_sequential(&[(10.0, 1800)], lenient);
    let t = seq_tick(&s, defective(), MIN);
    assert_eq!(t.state.phase(), Phase::Progressing);
    let verdict = &t.state.verdict().unwrap().verdict;
    assert_eq!(
        verdict
            .evidence
            .as_ref()
            .unwrap()
            .defects
            .as_ref()
            .unwrap()
            .green_events,
        0
    );
    assert!(!verdict.reasons.iter().any(|r| r.contains("this tick")));
}

/// `max_cost_ratio`: a green whose answers cost three times blue's per request over the step
/// is rolled back at twice, once both environments have `min_requests` in the step.
#[test]
fn a_green_costing_more_than_the_policys_ratio_per_request_is_rolled_back() {
    let policy = HealthPolicy {
        max_cost_ratio: Some(2.0),
        min_requests: 50,
        ..HealthPolicy::default()
    };
    let s = started_sequential(&[(10.0, 1800)], policy);
    let cost = |green_requests, green_cost, blue_requests, blue_cost| Pair {
        green: CostSample {
            requests: green_requests,
            cost_usd: green_cost,
        },
        blue: CostSample {
            requests: blue_requests,
            cost_usd: blue_cost,
        },
    };
    let tick = |s: &State, step_cost| {
        apply(
            s,
            Command::Tick {
                judge_reasons: Vec::new(),
                window: Box::new(window(60, 0)),
                strata: Vec::new(),
                blue_p95_ms: None,
                step_cost,
                shadow: Vec::new(),
            },
            MIN,
        )
        .unwrap()
    };
    // Too few green requests in the step: not judged yet.
    assert_eq!(
        tick(&s, cost(40, 1.2, 540, 5.4)).state.phase(),
        Phase::Progressing
    );
    // 1.9× is within the limit.
    assert_eq!(
        tick(&s, cost(60, 1.14, 540, 5.4)).state.phase(),
        Phase::Progressing
    );
    let t = tick(&s, cost(60, 1.8, 540, 5.4));
    assert_eq!(t.state.phase(), Phase::RolledBack);
    let reasons = &t.state.verdict().unwrap().verdict.reasons;
    assert!(
        reasons[0].starts_with("green costs 3.00× blue per request over the step"),
        "{reasons:?}"
    );
    // Without the setting, cost never rolls back.
    let s = started_sequential(&[(10.0, 1800)], HealthPolicy::default());
    assert_eq!(
        tick(&s, cost(60, 100.0, 540, 5.4)).state.phase(),
        Phase::Progressing
    );
}

/// The grader: a green whose answers lose most judged pairs, with no error, slow request or
/// defect, is rolled back by the grader's test, and the event quotes the grader's reasons for
/// the last losses; the same pairs without a grader in the policy judge nothing.
#[test]
fn a_green_the_grader_prefers_blue_to_is_rolled_back_with_the_graders_reasons() {
    let judge = crate::judge::JudgePolicy::from_json(
        &serde_json::json!({"model": "judge-m", "sample_percent": 100, "max_per_minute": 60}),
        "judge",
    )
    .unwrap();
    let policy = HealthPolicy {
        judge: Some(Box::new(judge)),
        ..HealthPolicy::default()
    };
    let tick = |s: &State, at_ms: u64| {
        let mut w = window(540, 0);
        w.green.requests = 60;
        w.green.judged.wins = 3;
        w.green.judged.losses = 17;
        w.green.judged.ties = 6;
        apply(
            s,
            Command::Tick {
                judge_reasons: vec!["B is correct, A misreads the date.".into()],
                window: Box::new(w),
                strata: Vec::new(),
                blue_p95_ms: None,
                step_cost: Pair::default(),
                shadow: Vec::new(),
            },
            at_ms,
        )
        .unwrap()
    };
    let mut s = started_sequential(&[(10.0, 1800)], policy);
    let mut rolled = None;
    for m in 1..=5 {
        let t = tick(&s, m * MIN);
        s = t.state.clone();
        if s.phase() == Phase::RolledBack {
            rolled = Some((m, t));
            break;
        }
    }
    let (m, t) = rolled.expect("rolled back within 5 ticks");
    assert!(m >= 2, "one tick of 20 decisive pairs is not enough: {m}");
    let Some(Effect::Record(ev)) = t.effects.last() else {
        panic!("an event")
    };
    assert!(
        ev.message.starts_with(
            "Rolled back automatically on step 1: the grader preferred blue's answer in 85% of"
        ),
        "{}",
        ev.message
    );
    assert!(
        ev.message.contains(
            "the grader's reasons for green's last losses: \"B is correct, A misreads the date.\""
        ),
        "{}",
        ev.message
    );
    let s = started_sequential(&[(10.0, 1800)], HealthPolicy::default());
    let mut s2 = s;
    for m in 1..=5 {
        s2 = tick(&s2, m * MIN).state;
    }
    assert_eq!(s2.phase(), Phase::Progressing);
}
