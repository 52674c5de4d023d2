//! The split check's timelines: a share off the split holds the rollout with an alerting event,
//! judgement and rollback go on while held, the share back inside the band ends the hold, an
//! operator's resume resets it, and only the step's split is counted.

use super::*;

/// A tick whose requests were all routed under routing version `version`: `green` and `blue`
/// requests, `green_errors` of green's failed.
fn routed_tick(
    s: &State,
    (green, blue, green_errors): (u64, u64, u64),
    version: u64,
    now: u64,
) -> Transition {
    let mut w = Pair::<EnvStats>::default();
    w.green.requests = green;
    w.blue.requests = blue;
    w.green.errors.server_error = green_errors;
    apply(
        s,
        Command::Tick {
            window: Box::new(w.clone()),
            strata: vec![Stratum {
                stats: w,
                in_step: true,
                version: Some(version),
            }],
            blue_p95_ms: None,
            step_cost: Pair::default(),
            shadow: Vec::new(),
        },
        now,
    )
    .unwrap()
}

fn events(t: &Transition) -> Vec<&Event> {
    t.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Record(ev) => Some(&**ev),
            _ => None,
        })
        .collect()
}

fn held(s: &State) -> bool {
    s.rollout().unwrap().split_check.holds()
}

#[test]
fn half_the_share_holds_the_step_with_an_alert_and_the_right_share_ends_the_hold() {
    let mut s = started_sequential(&[(10.0, 600), (50.0, 60)], HealthPolicy::default());
    let v = s.version();
    // 600 requests a minute, green routed 30 (5%) at a 10% step held 10 minutes: the split
    // check holds it within a few ticks, and it stays past the 10 minutes.
    let mut held_at = None;
    for m in 1..=10 {
        let t = routed_tick(&s, (30, 570, 0), v, m * MIN);
        if let [ev] = &events(&t)[..] {
            assert_eq!(ev.kind, EventKind::SplitMismatch);
            assert!(ev.alert, "a mismatch alerts");
            assert_eq!((ev.phase, ev.step), (Phase::Progressing, Some(1)));
            assert!(
                ev.message.starts_with("Split mismatch: green got 5.0% of ")
                    && ev.message.contains("the band is 7.4%–13.5%"),
                "{}",
                ev.message
            );
            held_at = Some(m);
        }
        if held_at.is_some() {
            s = t.state;
            break;
        }
        assert!(events(&t).is_empty(), "minute {m}: {:?}", events(&t));
        s = t.state;
    }
    let held_at = held_at.expect("held within 10 ticks");
    assert!(held_at <= 5, "held at minute {held_at}");
    assert_eq!(s.green_percent(), 10.0, "no step advances");
    assert!(held(&s));
    // Still off: held, no second event; the verdict still passes.
    for m in held_at + 1..=held_at + 10 {
        let t = routed_tick(&s, (30, 570, 0), v, m * MIN);
        assert!(events(&t).is_empty(), "minute {m}");
        assert_eq!(t.state.verdict_status(), Some(VerdictStatus::Pass));
        s = t.state;
    }
    assert_eq!(s.green_percent(), 10.0, "held past the step's 10 minutes");
    // Back at 10%. The evidence restarted at the last time it reached its level (at most
    // 10 ticks ago): the share since then mixes 5% and 10% ticks, inside the band only once
    // enough 10% ticks come in. Then the hold ends and the step advances on the same tick.
    let mut cleared = None;
    for m in held_at + 11..=held_at + 40 {
        let t = routed_tick(&s, (60, 540, 0), v, m * MIN);
        let kinds = kinds(&t);
        s = t.state;
        if !kinds.is_empty() {
            assert_eq!(
                kinds,
                [EventKind::SplitMatched, EventKind::StepAdvanced],
                "minute {m}"
            );
            cleared = Some(m);
            break;
        }
    }
    assert!(cleared.is_some(), "cleared within 30 ticks at the split");
    assert!(!held(&s));
    assert_eq!(s.green_percent(), 50.0);
}

#[test]
fn a_held_rollout_is_still_judged_and_rolled_back() {
    let mut s = started_sequential(&[(10.0, 60), (50.0, 60)], HealthPolicy::default());
    let v = s.version();
    for m in 1..=10 {
        s = routed_tick(&s, (0, 600, 0), v, m * MIN).state;
    }
    assert!(held(&s));
    // 30 of 60 green requests fail: rolled back despite the hold.
    let t = routed_tick(&s, (60, 540, 30), v, 11 * MIN);
    assert_eq!(t.state.phase(), Phase::RolledBack);
    assert_eq!(kinds(&t), [EventKind::RolledBack]);
}

#[test]
fn a_resume_or_a_manual_split_resets_the_check() {
    let mut s = started_sequential(&[(10.0, 60), (50.0, 60)], HealthPolicy::default());
    let v = s.version();
    for m in 1..=10 {
        s = routed_tick(&s, (0, 600, 0), v, m * MIN).state;
    }
    assert!(held(&s));
    let paused = apply(&s, Command::Pause, 11 * MIN).unwrap().state;
    assert!(held(&paused), "a pause keeps the hold");
    let manual = apply(&s, Command::SetSplit { green_percent: 5.0 }, 11 * MIN)
        .unwrap()
        .state;
    assert!(!held(&manual));
    assert_eq!(
        manual.rollout().unwrap().split_check,
        crate::share_check::SplitCheck::default()
    );
    let resumed = apply(&paused, Command::Resume, 12 * MIN).unwrap().state;
    assert!(!held(&resumed));
    assert_eq!(
        resumed.rollout().unwrap().split_check,
        crate::share_check::SplitCheck::default()
    );
}

#[test]
fn only_requests_routed_under_the_step_split_count() {
    let mut s = started_sequential(&[(10.0, 60), (50.0, 60)], HealthPolicy::default());
    let v = s.version();
    // Another version's requests (a late batch of an earlier split, or the manual split before
    // a resume), however off, are not the step's split's: nothing counted.
    for m in 1..=10 {
        s = routed_tick(&s, (0, 600, 0), v - 1, m * MIN).state;
    }
    let c = &s.rollout().unwrap().split_check;
    assert_eq!(
        (c.green_requests, c.blue_requests, c.holds()),
        (0, 0, false)
    );
    // Nor requests of an unknown version.
    let t = tick(&s, window(100, 0), 11 * MIN);
    assert_eq!(t.state.rollout().unwrap().split_check.green_requests, 0);
}

#[test]
fn the_threshold_method_and_a_zero_tolerance_leave_the_check_off() {
    for health in [
        HealthPolicy {
            method: Method::Threshold,
            ..HealthPolicy::default()
        },
        HealthPolicy {
            split_tolerance: 0.0,
            ..HealthPolicy::default()
        },
    ] {
        let mut s = started_sequential(&[(10.0, 60), (50.0, 60)], health);
        let v = s.version();
        for m in 1..=5 {
            let t = routed_tick(&s, (0, 600, 0), v, m * MIN);
            assert!(!kinds(&t).contains(&EventKind::SplitMismatch), "minute {m}");
            s = t.state;
        }
        assert_eq!(
            s.rollout().unwrap().split_check,
            crate::share_check::SplitCheck::default()
        );
    }
}

#[test]
fn a_split_hold_stops_advancing_and_completing_only() {
    use super::super::tick::{hold_for_split, Move::*};
    for (mv, when_held) in [
        (Hold, Hold),
        (CheckFailed, CheckFailed),
        (RollBack, RollBack),
        (Advance, Hold),
        (Complete, Hold),
    ] {
        assert_eq!(hold_for_split(mv, true), when_held, "{mv:?}");
        assert_eq!(hold_for_split(mv, false), mv, "{mv:?}");
    }
}
