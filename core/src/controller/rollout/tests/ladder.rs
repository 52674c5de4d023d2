//! The threshold method's timelines: walking the ladder, holding on thin windows, failing and
//! rolling back, duplicate and late ticks.

use super::*;

#[test]
fn a_healthy_rollout_walks_the_ladder_and_completes() {
    // Steps 10% for 2 min, 50% for 3 min; ticks every minute, each with a healthy window.
    let mut s = started(&[(10.0, 120), (50.0, 180)]);
    assert_eq!(
        (s.phase(), s.green_percent(), s.version()),
        (Phase::Progressing, 10.0, 8)
    );
    // t=1: passes but held only 1 of 2 min.
    let t = tick(&s, healthy(), MIN);
    assert_eq!(t.effects, [Effect::ResetWindow]);
    s = t.state;
    // t=2: held 2 min and passing: step 2 at 50%.
    let t = tick(&s, healthy(), 2 * MIN);
    assert_eq!(kinds(&t), [EventKind::StepAdvanced]);
    assert!(t.effects.contains(&Effect::ResetStep));
    s = t.state;
    assert_eq!(
        (s.green_percent(), s.rollout().unwrap().step_index),
        (50.0, 1)
    );
    // t=3, 4: passing, held 1 and 2 of 3 min.
    for m in [3, 4] {
        s = tick(&s, healthy(), m * MIN).state;
        assert_eq!(s.phase(), Phase::Progressing);
    }
    // t=5: held 3 min, the last step passes: completed, green is the new blue at 0%.
    let t = tick(&s, healthy(), 5 * MIN);
    assert_eq!(kinds(&t), [EventKind::Completed]);
    s = t.state;
    assert_eq!(s.phase(), Phase::Completed);
    assert_eq!(
        (s.split().blue_model.as_str(), s.green_percent()),
        ("green-m", 0.0)
    );
    let doc = s.routing_doc(5 * MIN);
    assert_eq!((doc.blue_model.as_str(), doc.version), ("green-m", 10));
    // Ticks after completion do nothing.
    assert!(tick(&s, bad(), 6 * MIN).effects.is_empty());
}

#[test]
fn inconclusive_windows_hold_and_never_fail() {
    let mut s = started(&[(10.0, 60), (50.0, 60)]);
    // Ten minutes of thin windows (49 requests, all failing): no failure, no advance.
    for m in 1..=10 {
        let t = tick(&s, window(49, 49), m * MIN);
        assert!(t.effects.is_empty(), "minute {m}: {:?}", t.effects);
        s = t.state;
    }
    assert_eq!(s.phase(), Phase::Progressing);
    assert_eq!(s.green_percent(), 10.0);
    let v = s.verdict().unwrap();
    assert_eq!(v.verdict.status, VerdictStatus::Inconclusive);
    assert_eq!(v.consecutive_failures, 0);
    // Enough data that passes: hold time long gone, so it advances at once.
    assert_eq!(s.rollout().unwrap().step_index, 0);
    let s = tick(&s, healthy(), 11 * MIN).state;
    assert_eq!(s.green_percent(), 50.0);
}

#[test]
fn one_bad_window_does_not_roll_back_two_do() {
    // failure_limit 2 (the default).
    let s = started(&[(10.0, 3600)]);
    let t = tick(&s, bad(), MIN);
    assert_eq!(kinds(&t), [EventKind::CheckFailed]);
    assert_eq!(t.state.phase(), Phase::Progressing);
    // A passing window in between resets the count...
    let t2 = tick(&t.state, healthy(), 2 * MIN);
    assert_eq!(t2.state.rollout().unwrap().consecutive_failures, 0);
    let t3 = tick(&t2.state, bad(), 3 * MIN);
    assert_eq!(t3.state.phase(), Phase::Progressing);
    // ...two in a row roll back.
    let t4 = tick(&t3.state, bad(), 4 * MIN);
    assert_eq!(kinds(&t4), [EventKind::RolledBack]);
    assert_eq!(t4.state.phase(), Phase::RolledBack);
    assert_eq!(t4.state.green_percent(), 0.0);
    assert!(t4.effects.contains(&Effect::WriteSplit));
    let Some(Effect::Record(ev)) = t4.effects.last() else {
        panic!("an event")
    };
    assert!(ev.alert);
    assert_eq!(ev.by, Actor::Controller);
    assert!(ev.message.contains("2 failing checks"), "{}", ev.message);
    assert_eq!(ev.verdict.as_ref().unwrap().status, VerdictStatus::Fail);
    // The blue model is untouched.
    assert_eq!(t4.state.split().blue_model, "blue-m");
}

#[test]
fn failure_limit_one_rolls_back_on_the_first_failure() {
    let mut sp = spec(&[(10.0, 60)]);
    sp.health.failure_limit = 1;
    let s = apply(
        &State::initial(&routing()),
        Command::Start {
            spec: sp,
            routing: routing(),
        },
        0,
    )
    .unwrap()
    .state;
    assert_eq!(tick(&s, bad(), MIN).state.phase(), Phase::RolledBack);
}

#[test]
fn duplicate_and_late_ticks() {
    let s = started(&[(10.0, 60), (30.0, 60), (50.0, 60)]);
    // A failing window, then the same tick again: the window was reset after the verdict,
    // so the duplicate sees nothing new and does not count a second failure.
    let t = tick(&s, bad(), MIN);
    let dup = tick(&t.state, Pair::default(), MIN);
    assert!(dup.effects.is_empty());
    assert_eq!(dup.state.rollout().unwrap().consecutive_failures, 1);
    assert_eq!(dup.state.phase(), Phase::Progressing);
    // A passing tick advances once; its duplicate does not advance again (new step, not
    // held, empty window).
    let a = tick(&dup.state, healthy(), 2 * MIN);
    assert_eq!(a.state.green_percent(), 30.0);
    let a2 = tick(&a.state, Pair::default(), 2 * MIN);
    assert_eq!(a2.state.green_percent(), 30.0);
    assert!(a2.effects.is_empty());
    // A tick an hour late advances one step, never two.
    let late = tick(&a2.state, healthy(), 62 * MIN);
    assert_eq!(late.state.green_percent(), 50.0);
}
