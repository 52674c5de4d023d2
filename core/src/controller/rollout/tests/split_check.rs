//! The split check's timelines: a share off the split holds the rollout with an alerting event,
//! judgement and rollback go on while held, evidence that the share is back inside the band
//! ends the hold and a share just outside it never does, a break in the middle of a step is
//! caught, an operator's resume resets it, and only requests routed at random under the
//! step's split are counted.

use super::*;

/// A tick whose requests were all routed at random under routing version `version`: `green`
/// and `blue` requests, `green_errors` of green's failed.
fn routed_tick(s: &State, counts: (u64, u64, u64), version: u64, now: u64) -> Transition {
    let (green, blue, _) = counts;
    sticky_tick(s, counts, (green, blue), version, now)
}

/// The same with only `random` (green, blue) of the requests routed at random, the others by
/// a sticky key.
fn sticky_tick(
    s: &State,
    (green, blue, green_errors): (u64, u64, u64),
    random: (u64, u64),
    version: u64,
    now: u64,
) -> Transition {
    let mut w = Pair::<EnvStats>::default();
    w.green.requests = green;
    w.blue.requests = blue;
    (w.green.random_requests, w.blue.random_requests) = random;
    w.green.errors.server_error = green_errors;
    apply(
        s,
        Command::Tick {
            judge_reasons: Vec::new(),
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
    // Back at 10%. The clearing evidence restarted at the last time the holding test reached
    // its level while held (at most a few ticks ago, each 5% tick since taking 600·0.0122 =
    // 7.3 from the bottom's ratio); each 10% tick adds 600·0.0047 = 2.8 to it and 3.3 to the
    // top's. Once both pass ln 100 the hold ends and the step advances on the same tick.
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
    let cleared = cleared.expect("cleared within 30 ticks at the split");
    // Not on the first tick at the split: the point estimate did; the evidence needs two or
    // more (2.8 + 3.3 from 0 is short of 4.6 on each side).
    assert!(cleared >= held_at + 12, "cleared at minute {cleared}");
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
        crate::verdict::share_check::SplitCheck::default()
    );
    let resumed = apply(&paused, Command::Resume, 12 * MIN).unwrap().state;
    assert!(!held(&resumed));
    assert_eq!(
        resumed.rollout().unwrap().split_check,
        crate::verdict::share_check::SplitCheck::default()
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
            crate::verdict::share_check::SplitCheck::default()
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

/// Runs `ticks` ticks of (green, blue) routed at random from `first`; the events' kinds.
fn run(s: &mut State, counts: (u64, u64), first: u64, ticks: u64) -> Vec<(u64, EventKind)> {
    let v = s.version();
    let mut seen = Vec::new();
    for m in first..first + ticks {
        let t = routed_tick(s, (counts.0, counts.1, 0), v, m * MIN);
        seen.extend(kinds(&t).into_iter().map(|k| (m, k)));
        *s = t.state;
    }
    seen
}

#[test]
fn shares_just_outside_the_band_are_held_and_never_matched() {
    // The default band at a 10% step is 7.4%–13.5%. A minute of all blue holds the step; then
    // 6.5% or 16% on average for 200 minutes of 600 requests, in minutes that wander as
    // routed traffic does: 56 green (9.3%) then 22 (3.7%), or 78 (13%) then 114 (19%). The
    // first of each pair is inside the band with 50 of each side, which ended the hold on
    // the point estimate; the clearing evidence moves by +1.4 then −10 (below the bottom), and
    // −2.7 then −14.8 (above the top), in logs: never matched, no step advances.
    for pair in [[(56, 544), (22, 578)], [(78, 522), (114, 486)]] {
        let mut s = started_sequential(&[(10.0, 600), (50.0, 60)], HealthPolicy::default());
        assert_eq!(
            run(&mut s, (0, 6000), 1, 1),
            [(1, EventKind::SplitMismatch)]
        );
        for m in (2..202).step_by(2) {
            let seen = [run(&mut s, pair[0], m, 1), run(&mut s, pair[1], m + 1, 1)].concat();
            assert!(seen.is_empty(), "{pair:?} at minute {m}: {seen:?}");
        }
        assert!(held(&s));
        assert_eq!(s.green_percent(), 10.0);
    }
}

#[test]
fn a_break_in_the_middle_of_a_step_is_caught() {
    // An hour at 10% (600 a minute), then green gets 5%: held within a few minutes of the
    // change, as fast as from the step's start (the hour's evidence sits at its floor, 0,
    // not 60·6 below it).
    let mut s = started_sequential(&[(10.0, 7200), (50.0, 60)], HealthPolicy::default());
    assert!(run(&mut s, (60, 540), 1, 60).is_empty());
    let seen = run(&mut s, (30, 570), 61, 10);
    assert!(
        matches!(&seen[..], [(m, EventKind::SplitMismatch)] if *m <= 65),
        "{seen:?}"
    );
}

#[test]
fn sticky_requests_are_not_counted() {
    let mut s = started_sequential(&[(10.0, 7200), (50.0, 60)], HealthPolicy::default());
    let v = s.version();
    // 600 a minute, all with a sticky key, of which green gets 3% (the users that hashed into
    // green are few): nothing counted, no hold.
    for m in 1..=10 {
        let t = sticky_tick(&s, (18, 582, 0), (0, 0), v, m * MIN);
        assert!(kinds(&t).is_empty(), "minute {m}");
        s = t.state;
    }
    let c = &s.rollout().unwrap().split_check;
    assert_eq!(
        (c.green_requests, c.blue_requests, c.holds()),
        (0, 0, false)
    );
    // Those routed at random among them (120 a minute, 12 green) are counted.
    let t = sticky_tick(&s, (18, 582, 0), (12, 108), v, 11 * MIN);
    let c = &t.state.rollout().unwrap().split_check;
    assert_eq!((c.green_requests, c.blue_requests), (12, 108));
}

#[test]
fn the_status_says_the_check_is_off_while_a_manual_split_is_in_force() {
    use super::super::checks_split;
    let s = started_sequential(&[(10.0, 60), (50.0, 60)], HealthPolicy::default());
    assert!(checks_split(&s));
    let paused = apply(&s, Command::Pause, MIN).unwrap().state;
    assert!(!checks_split(&paused), "a paused rollout is not checked");
    let manual = apply(&paused, Command::SetSplit { green_percent: 5.0 }, MIN)
        .unwrap()
        .state;
    assert_eq!(manual.green_percent(), 5.0);
    assert!(!checks_split(&manual), "5% in force, the step is 10%");
    // Ticks meanwhile count nothing.
    let t = routed_tick(&manual, (0, 600, 0), manual.version(), 2 * MIN);
    assert_eq!(t.state.rollout().unwrap().split_check.blue_requests, 0);
    // A resume puts the step's split back in force: checked again.
    let resumed = apply(&manual, Command::Resume, 3 * MIN).unwrap().state;
    assert!(checks_split(&resumed));
    let off = HealthPolicy {
        split_tolerance: 0.0,
        ..HealthPolicy::default()
    };
    assert!(!checks_split(&started_sequential(&[(10.0, 60)], off)));
    // A step that routes nobody to green (0.004% is no whole bucket) cannot be checked.
    assert!(!checks_split(&started_sequential(
        &[(0.004, 60), (10.0, 60)],
        HealthPolicy::default()
    )));
}
