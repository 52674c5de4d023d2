//! Provider-wide incidents as timelines: blue failing as much as green holds the step instead
//! of rolling green back, and the step goes on when blue recovers; a broken green is still
//! rolled back when blue is healthy or too thin to compare.

use super::*;

/// A tick with `blue` requests of which `blue_errors` failed, and `green` of which
/// `green_errors` failed.
fn counts(blue: u64, blue_errors: u64, green: u64, green_errors: u64) -> Pair<EnvStats> {
    let mut w = Pair::<EnvStats>::default();
    w.blue.requests = blue;
    w.blue.errors.server_error = blue_errors;
    w.green.requests = green;
    w.green.errors.server_error = green_errors;
    w
}

/// The verdict the tick `t` recorded.
fn verdict_of(t: &Transition) -> &crate::verdict::health::Verdict {
    &t.state.rollout().unwrap().verdict.as_ref().unwrap().verdict
}

/// Two steps of 5 minutes. Healthy for 3 minutes; then 4 minutes in which both environments
/// fail 30% (blue 270 of 900, green 30 of 100: the guard's limit rises to 1.2 × blue's lower
/// bound, ~0.32); the step holds with an event and does not advance at minute 5; blue recovers
/// at minute 8, and the step, which had 4 minutes when the incident was seen, advances a
/// minute later (minute 9).
#[test]
fn an_incident_on_both_holds_the_step_and_it_goes_on_when_blue_recovers() {
    let mut s = started_sequential(&[(10.0, 300), (50.0, 300)], HealthPolicy::default());
    for m in 1..=3 {
        s = seq_tick(&s, counts(900, 4, 100, 0), m * MIN).state;
    }
    let t = seq_tick(&s, counts(900, 270, 100, 30), 4 * MIN);
    assert_eq!(t.state.phase(), Phase::Progressing);
    let began = events(&t);
    assert_eq!(began.len(), 1, "{began:?}");
    assert_eq!(
        (began[0].kind, began[0].alert),
        (EventKind::IncidentBegan, true)
    );
    assert_eq!(
        began[0].message,
        "Provider-wide incident: blue fails 30.0% (270 of 900) of requests this tick, green 30.0% (30 of 100), above the 5.00% limit; holding step 1."
    );
    s = t.state;
    let incident = s.rollout().unwrap().incident.clone().unwrap();
    assert_eq!(
        (incident.since_ms, incident.step_elapsed_ms),
        (4 * MIN, 4 * MIN)
    );
    // Stored and read back with the incident; the step's time stands still.
    let stored = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<State>(&stored).unwrap(), s);
    assert_eq!(s.step_elapsed_ms(6 * MIN), Some(4 * MIN));
    for m in 5..=7 {
        let t = seq_tick(&s, counts(900, 270, 100, 30), m * MIN);
        assert_eq!(t.state.phase(), Phase::Progressing, "minute {m}");
        assert_eq!(t.state.green_percent(), 10.0, "held at minute {m}");
        assert!(events(&t).is_empty(), "minute {m}: {:?}", events(&t));
        s = t.state;
    }
    // Blue recovers: the incident ends, and the step has the 4 minutes it had.
    let t = seq_tick(&s, counts(900, 4, 100, 0), 8 * MIN);
    let ended = events(&t);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].kind, EventKind::IncidentEnded);
    assert!(
        ended[0]
            .message
            .starts_with("Provider-wide incident ended after 4 min: blue fails 0.4% (4 of 900)"),
        "{}",
        ended[0].message
    );
    s = t.state;
    assert_eq!(s.rollout().unwrap().incident, None);
    assert_eq!(s.step_elapsed_ms(8 * MIN), Some(4 * MIN));
    assert_eq!(s.green_percent(), 10.0, "4 of 5 minutes");
    let t = seq_tick(&s, counts(900, 4, 100, 0), 9 * MIN);
    assert_eq!(
        t.state.green_percent(),
        50.0,
        "advanced after 5 minutes outside the incident"
    );
}

/// Blue healthy, green failing half its requests: rolled back on the first tick, by the
/// guard or the relative test, as before incidents were told apart.
#[test]
fn a_broken_green_with_a_healthy_blue_still_rolls_back_at_once() {
    let s = started_sequential(&[(10.0, 300)], HealthPolicy::default());
    let t = seq_tick(&s, counts(900, 4, 100, 50), MIN);
    assert_eq!(t.state.phase(), Phase::RolledBack);
    assert_eq!(kinds(&t), [EventKind::RolledBack]);
}

/// A blue too thin to compare (no requests, or three of which one failed) leaves the guard's
/// limit where the policy put it: a green failing half its requests is rolled back within two
/// ticks, and no incident begins.
#[test]
fn a_broken_green_with_a_thin_blue_still_rolls_back() {
    for (blue, blue_errors) in [(0, 0), (3, 1)] {
        let mut s = started_sequential(&[(10.0, 300)], HealthPolicy::default());
        let mut rolled_back = None;
        for m in 1..=2 {
            let t = seq_tick(&s, counts(blue, blue_errors, 60, 30), m * MIN);
            assert!(!kinds(&t).contains(&EventKind::IncidentBegan));
            s = t.state;
            if s.phase() == Phase::RolledBack {
                rolled_back = Some(m);
                break;
            }
        }
        assert!(rolled_back.is_some(), "blue {blue_errors} of {blue}");
    }
}

/// During an incident green is still judged against blue: failing far more than blue (90%
/// against 30%) rolls it back, and no incident event is recorded with the rollback.
#[test]
fn a_green_far_worse_than_blue_during_an_incident_rolls_back() {
    let s = started_sequential(&[(10.0, 300)], HealthPolicy::default());
    let t = seq_tick(&s, counts(900, 270, 100, 90), MIN);
    assert_eq!(t.state.phase(), Phase::RolledBack);
    assert_eq!(kinds(&t), [EventKind::RolledBack]);
}

/// The threshold gates: blue failing as much as green raises the absolute limit the same way
/// (the delta gate still compares them), so the incident holds instead of failing checks.
#[test]
fn the_threshold_gates_hold_through_an_incident_on_both() {
    let s = started(&[(10.0, 60), (50.0, 60)]);
    let t = tick(&s, counts(900, 270, 100, 30), MIN);
    assert_eq!(kinds(&t), [EventKind::IncidentBegan]);
    assert_eq!(t.state.verdict_status(), Some(VerdictStatus::Pass));
    // Held past the step's minute; ends when blue recovers, and the step then advances.
    let t = tick(&t.state, counts(900, 270, 100, 30), 2 * MIN);
    assert_eq!((t.state.green_percent(), kinds(&t)), (10.0, vec![]));
    let t = tick(&t.state, healthy(), 3 * MIN);
    assert_eq!(
        kinds(&t),
        [EventKind::IncidentEnded, EventKind::StepAdvanced]
    );
}

/// Blue hovering above the limit (70 of 1000, then 48 of 1000: 4.8%, under the 5% limit on
/// its point estimate) begins an incident once and does not end it: the 95% upper bound on
/// 48 of 1000 is about 6.1%, so a tick at 4.8% is no evidence that blue is back.
#[test]
fn an_incident_does_not_end_on_one_tick_under_the_limit() {
    let mut s = started_sequential(&[(10.0, 300)], HealthPolicy::default());
    let t = seq_tick(&s, counts(1000, 100, 100, 10), MIN);
    assert_eq!(kinds(&t), [EventKind::IncidentBegan]);
    s = t.state;
    for m in 2..=6 {
        let t = seq_tick(&s, counts(1000, 48, 100, 5), m * MIN);
        assert!(events(&t).is_empty(), "minute {m}: {:?}", events(&t));
        s = t.state;
        assert!(s.rollout().unwrap().incident.is_some(), "minute {m}");
    }
}

/// At 0.1 req/s blue has ~54 requests a tick: none failing in one tick bounds its rate at
/// 1 − 0.05^(1/54) = 5.4%, above the limit; two such ticks (108) at 2.7% end the incident,
/// with an alert.
#[test]
fn an_incident_ends_on_evidence_and_the_end_alerts() {
    let mut s = started_sequential(&[(10.0, 300)], HealthPolicy::default());
    s = seq_tick(&s, counts(54, 20, 6, 2), MIN).state;
    assert!(s.rollout().unwrap().incident.is_some());
    let t = seq_tick(&s, counts(54, 0, 6, 0), 2 * MIN);
    assert!(events(&t).is_empty(), "{:?}", events(&t));
    let t = seq_tick(&t.state, counts(54, 0, 6, 0), 3 * MIN);
    let ended = events(&t);
    assert_eq!(
        (ended.len(), ended[0].kind, ended[0].alert),
        (1, EventKind::IncidentEnded, true)
    );
    assert!(
        ended[0].message.starts_with(
            "Provider-wide incident ended after 2 min: blue fails 0.0% (0 of 108) of requests since it was last above the limit"
        ),
        "{}",
        ended[0].message
    );
}

/// An incident that begins again within the hour after the last one ended is recorded without
/// an alert; one that begins an hour or more after is alerted.
#[test]
fn a_new_incident_within_the_hour_does_not_page_again() {
    let mut s = started_sequential(&[(10.0, 6000)], HealthPolicy::default());
    s = seq_tick(&s, counts(900, 270, 100, 30), MIN).state;
    let t = seq_tick(&s, counts(900, 4, 100, 0), 2 * MIN);
    assert_eq!(kinds(&t), [EventKind::IncidentEnded]);
    let t = seq_tick(&t.state, counts(900, 270, 100, 30), 30 * MIN);
    let began = events(&t);
    assert_eq!(
        (began[0].kind, began[0].alert),
        (EventKind::IncidentBegan, false)
    );
    let t = seq_tick(&t.state, counts(900, 4, 100, 0), 31 * MIN);
    assert_eq!(kinds(&t), [EventKind::IncidentEnded]);
    let t = seq_tick(&t.state, counts(900, 270, 100, 30), 91 * MIN);
    let began = events(&t);
    assert_eq!(
        (began[0].kind, began[0].alert),
        (EventKind::IncidentBegan, true)
    );
}

/// Blue steadily at 7% (above a 5% limit that is below its baseline): the incident never ends
/// on evidence, and after an hour the rollout pauses with an alert naming blue's rate over the
/// incident. A resume clears the incident, and the step has the 3 minutes it had when it began.
#[test]
fn an_incident_that_lasts_an_hour_pauses_and_a_resume_clears_it() {
    let mut s = started_sequential(&[(10.0, 300), (50.0, 300)], HealthPolicy::default());
    s = seq_tick(&s, counts(1000, 4, 100, 0), MIN).state;
    s = seq_tick(&s, counts(1000, 4, 100, 0), 2 * MIN).state;
    for m in 3..63 {
        let t = seq_tick(&s, counts(1000, 70, 100, 7), m * MIN);
        assert_eq!(t.state.phase(), Phase::Progressing, "minute {m}");
        s = t.state;
    }
    assert!(s.rollout().unwrap().incident.is_some());
    let t = seq_tick(&s, counts(1000, 70, 100, 7), 63 * MIN);
    assert_eq!(t.state.phase(), Phase::Paused);
    let paused = events(&t);
    assert_eq!(
        (paused.len(), paused[0].kind, paused[0].alert),
        (1, EventKind::Paused, true)
    );
    assert_eq!(
        paused[0].message,
        "Paused: a provider-wide incident has held step 1 for 60 min; blue fails 7.0% (4270 of 61000) of requests over it, above the 5.00% limit. If that is blue's ordinary rate, max_error_rate is below blue's baseline: raise it, then resume (a resume clears the incident)."
    );
    let r = apply(&t.state, Command::Resume, 70 * MIN).unwrap();
    assert_eq!(r.state.phase(), Phase::Progressing);
    assert_eq!(r.state.rollout().unwrap().incident, None);
    assert_eq!(r.state.step_elapsed_ms(70 * MIN), Some(3 * MIN));
    // Stored and read back with the end time.
    let stored = serde_json::to_string(&r.state).unwrap();
    assert_eq!(serde_json::from_str::<State>(&stored).unwrap(), r.state);
}

/// A state stored before incidents counted blue over their ticks and remembered their end
/// (no `seen_*`, `calm_*`, `incident_ended_at_ms`) loads with those at zero and none.
#[test]
fn an_incident_stored_by_the_previous_release_still_loads() {
    let s = started_sequential(&[(10.0, 300)], HealthPolicy::default());
    let s = seq_tick(&s, counts(900, 270, 100, 30), MIN).state;
    let mut doc = serde_json::to_value(&s).unwrap();
    let incident = doc["rollout"]["incident"].as_object_mut().unwrap();
    for field in [
        "seen_errors",
        "seen_requests",
        "calm_errors",
        "calm_requests",
    ] {
        assert!(incident.remove(field).is_some(), "{field}");
    }
    let read: State = serde_json::from_value(doc).unwrap();
    let incident = read.rollout().unwrap().incident.clone().unwrap();
    assert_eq!((incident.seen_requests, incident.calm_requests), (0, 0));
    assert_eq!(read.rollout().unwrap().incident_ended_at_ms, None);
}

/// The threshold gates during an incident on both: green failing 40% against blue's 30% is
/// 10 points above blue, past the delta gate, but the difference is noise then: the verdict
/// is inconclusive with a reason saying why, and three such ticks neither fail a check nor
/// roll back. Without an incident, the same green is failed.
#[test]
fn the_threshold_gates_do_not_fail_green_during_an_incident() {
    let mut s = started(&[(10.0, 60), (50.0, 60)]);
    for m in 1..=3 {
        let t = tick(&s, counts(900, 270, 100, 40), m * MIN);
        let expected: &[EventKind] = if m == 1 {
            &[EventKind::IncidentBegan]
        } else {
            &[]
        };
        assert_eq!(kinds(&t), expected, "minute {m}");
        assert_eq!(t.state.verdict_status(), Some(VerdictStatus::Inconclusive));
        let reasons = &verdict_of(&t).reasons;
        assert!(
            reasons[0].starts_with("not counted against green: a provider-wide incident (blue fails 30.0% (270 of 900)"),
            "{reasons:?}"
        );
        s = t.state;
    }
    let s = started(&[(10.0, 60), (50.0, 60)]);
    let t = tick(&s, counts(900, 4, 100, 40), MIN);
    assert_eq!(t.state.verdict_status(), Some(VerdictStatus::Fail));
}

/// The guard's reason names the limit it held green to on the tick: raised to τ × blue's lower
/// bound when blue is near the limit (50 of 900), and none while an incident lasts.
#[test]
fn the_guards_reason_names_the_ticks_limit_or_why_it_stood_aside() {
    let guard_reason = |t: &Transition| {
        verdict_of(t)
            .reasons
            .iter()
            .find(|r| r.starts_with("green error rate"))
            .cloned()
            .unwrap()
    };
    let s = started_sequential(&[(10.0, 300)], HealthPolicy::default());
    let t = seq_tick(&s, counts(900, 50, 100, 0), MIN);
    let limit = verdict_of(&t).evidence.as_ref().unwrap().guard_limit;
    assert!(limit > 0.05, "{limit}");
    assert!(
        guard_reason(&t).starts_with(&format!(
            "green error rate 0.00% against the {:.2}% limit",
            100.0 * limit
        )),
        "{}",
        guard_reason(&t)
    );
    let t = seq_tick(&s, counts(900, 270, 100, 30), MIN);
    assert!(
        guard_reason(&t).starts_with(
            "green error rate 30.00% not judged alone this tick (a provider-wide incident lasts)"
        ),
        "{}",
        guard_reason(&t)
    );
}
