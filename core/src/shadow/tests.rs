use super::*;
use crate::request::fallback::{Attempt, FallbackReason};
use crate::verdict::sequential::relative_increment;

fn outcome(env: Environment, class: StatusClass, defect: Option<Defect>, ms: u64) -> Outcome {
    Outcome {
        request_id: "r".into(),
        at_ms: 125_000,
        route: "default".into(),
        api: crate::api::Api::Chat,
        environment: env,
        model: "m".into(),
        basis: Basis::Random,
        routing_version: 7,
        stream: false,
        status: if class == StatusClass::Ok { 200 } else { 503 },
        class,
        fallback: None,
        first_byte_ms: Some(ms / 2),
        total_ms: ms,
        usage: None,
        interrupted: false,
        defect,
        vector_length: None,
        client_gone: false,
    }
}

fn ok(env: Environment) -> Outcome {
    outcome(env, StatusClass::Ok, None, 800)
}

fn failed_(env: Environment) -> Outcome {
    outcome(env, StatusClass::ServerError, None, 50)
}

#[test]
fn only_unforced_blue_requests_are_copied_at_the_share() {
    let blue = |basis| Selection {
        environment: Environment::Blue,
        basis,
    };
    // 20% is 2000 buckets: draws 0..=1999 are copied.
    assert!(shadowed(20.0, blue(Basis::Random), 1999));
    assert!(!shadowed(20.0, blue(Basis::Random), 2000));
    assert!(shadowed(20.0, blue(Basis::Sticky), 10_000 + 5));
    assert!(!shadowed(20.0, blue(Basis::Forced), 0));
    assert!(!shadowed(20.0, blue(Basis::Conversation), 0));
    assert!(!shadowed(0.0, blue(Basis::Random), 0));
    assert!(shadowed(100.0, blue(Basis::Random), 9999));
    let green = Selection {
        environment: Environment::Green,
        basis: Basis::Random,
    };
    assert!(!shadowed(100.0, green, 0));
}

#[test]
fn the_budget_spreads_its_copies_over_the_minute() {
    // 3 a minute: a fresh isolate (a long time since "filled") has a minute's worth, 3. Every
    // copy ends at once here, so that only the bucket limits them.
    let mut b = (Budget::default(), Rate::default());
    let take = |(b, rate): &mut (Budget, Rate), t: u64, per_minute: u32, bytes: usize| {
        b.take(rate, t, per_minute, bytes)
            .map(|ticket| b.finished(ticket))
            .is_some()
    };
    let now = 10 * 60_000;
    let burst: Vec<bool> = (0..4).map(|i| take(&mut b, now + i, 3, 10)).collect();
    assert_eq!(burst, [true, true, true, false]);
    // Then one every 20 s: not at 19 999 ms, at 20 000 ms.
    assert!(!take(&mut b, now + 19_999, 3, 10));
    assert!(take(&mut b, now + 20_003, 3, 10));
    // Under steady overload (a request every second, 60 a minute) the 3 of each minute are
    // taken 20 s apart, not the first three.
    let taken: Vec<u64> = (1..=60)
        .map(|s| now + 20_003 + s * 1000)
        .filter(|&t| take(&mut b, t, 3, 10))
        .collect();
    assert_eq!(taken.len(), 3);
    assert!(taken.windows(2).all(|w| w[1] - w[0] >= 19_000), "{taken:?}");
    // A bound of 0 copies nothing; a body above 1 MiB is never copied.
    assert!(!take(&mut Default::default(), now, 0, 10));
    assert!(!take(
        &mut Default::default(),
        now,
        60,
        MAX_COPY_BODY_BYTES + 1
    ));
    assert!(take(&mut Default::default(), now, 60, MAX_COPY_BODY_BYTES));
    // Clock going back: no refill, no underflow.
    assert!(!take(&mut b, 0, 3, 10));
}

#[test]
fn at_most_so_many_copies_run_at_once() {
    let mut b = Budget::default();
    let mut rate = Rate::default();
    let now = 3_600_000;
    let tickets: Vec<Ticket> = (0..MAX_IN_FLIGHT)
        .map(|_| b.take(&mut rate, now, 60_000, 10).expect("a place"))
        .collect();
    assert_eq!(b.in_flight(), MAX_IN_FLIGHT as usize);
    assert_eq!(
        b.take(&mut rate, now, 60_000, 10),
        None,
        "the 17th waits for one to end"
    );
    b.finished(tickets[3]);
    let again = b
        .take(&mut rate, now, 60_000, 10)
        .expect("the place handed back");
    // A ticket handed back twice frees nothing more.
    b.finished(tickets[3]);
    assert_eq!(b.in_flight(), MAX_IN_FLIGHT as usize);
    assert_eq!(b.take(&mut rate, now, 60_000, 10), None);
    b.finished(again);
    assert_eq!(b.in_flight(), MAX_IN_FLIGHT as usize - 1);
}

/// Copies whose end never ran (the runtime cancelled them) give their places back after
/// `STALE_MS`, not before; a lost copy's late end does not free the place's new copy.
#[test]
fn places_of_copies_the_runtime_cancelled_come_back() {
    let mut b = Budget::default();
    let mut rate = Rate::default();
    let start = 3_600_000;
    let lost: Vec<Ticket> = (0..MAX_IN_FLIGHT)
        .map(|i| {
            b.take(&mut rate, start + u64::from(i), 60_000, 10)
                .expect("a place")
        })
        .collect();
    assert_eq!(b.take(&mut rate, start + STALE_MS - 1, 60_000, 10), None);
    // The first place is stale one ms later: one copy starts, the other fifteen still wait.
    let fresh = b
        .take(&mut rate, start + STALE_MS, 60_000, 10)
        .expect("a stale place");
    assert_eq!(b.take(&mut rate, start + STALE_MS, 60_000, 10), None);
    // The lost copy's end, were it to run after all, leaves the new copy's place alone.
    b.finished(lost[0]);
    assert_eq!(b.in_flight(), MAX_IN_FLIGHT as usize);
    // Every lost place is back a minute on.
    assert_eq!(
        b.reclaim(start + STALE_MS + 60_000),
        MAX_IN_FLIGHT as usize - 1
    );
    assert_eq!(b.in_flight(), 1);
    b.finished(fresh);
    assert_eq!(b.in_flight(), 0);
    // A clock that goes back reclaims nothing.
    let mut c = Budget::default();
    assert!(c.take(&mut rate, start, 60, 10).is_some());
    assert_eq!(c.reclaim(0), 0);
}

/// Each route has its own rate: a route whose minute's worth is spent leaves another's
/// copies alone (the places for copies running at once are the isolate's).
#[test]
fn each_route_spends_its_own_rate() {
    let mut b = Budget::default();
    let (mut chat, mut summarise) = (Rate::default(), Rate::default());
    let now = 3_600_000;
    let mut take = |rate: &mut Rate| b.take(rate, now, 3, 10).map(|t| b.finished(t)).is_some();
    // 3 a minute each: chat spends its 3, then summarise still has its own 3.
    let chat_burst: Vec<bool> = (0..4).map(|_| take(&mut chat)).collect();
    let summarise_burst: Vec<bool> = (0..4).map(|_| take(&mut summarise)).collect();
    assert_eq!(chat_burst, [true, true, true, false]);
    assert_eq!(summarise_burst, [true, true, true, false]);
    // The places are shared: sixteen running copies of one route leave none for another.
    let mut busy = Rate::default();
    let running: Vec<Ticket> = (0..MAX_IN_FLIGHT)
        .map(|_| b.take(&mut busy, now, 60_000, 10).expect("a place"))
        .collect();
    let mut idle = Rate::default();
    assert_eq!(b.take(&mut idle, now, 60_000, 10), None);
    b.finished(running[0]);
    assert!(b.take(&mut idle, now, 60_000, 10).is_some());
}

#[test]
fn a_copy_gives_up_before_the_runtime_cancels_it() {
    // Blue's answer still running: look again in 5 s, however long it has been.
    assert_eq!(look(1_000_000, None), Look::WaitMs(LOOK_EVERY_MS));
    // Blue ended at t=10 s: give up at 35 s.
    assert_eq!(look(10_000, Some(10_000)), Look::WaitMs(25_000));
    assert_eq!(look(34_999, Some(10_000)), Look::WaitMs(1));
    assert_eq!(look(35_000, Some(10_000)), Look::GiveUp);
    // At the end of time the deadline saturates: given up, no overflow.
    assert_eq!(look(u64::MAX, Some(u64::MAX)), Look::GiveUp);
}

#[test]
fn pairs_are_told_apart_by_which_side_failed() {
    use Environment::{Blue, Green};
    let mut p = PairCounts::default();
    p.record(&failed_(Green), &ok(Blue));
    p.record(&failed_(Green), &ok(Blue));
    p.record(&ok(Green), &failed_(Blue));
    p.record(&failed_(Green), &failed_(Blue));
    p.record(&ok(Green), &ok(Blue));
    // A client error on both sides is no failure of either, and no answer to compare.
    p.record(
        &outcome(Green, StatusClass::ClientError, None, 5),
        &outcome(Blue, StatusClass::ClientError, None, 5),
    );
    assert_eq!(
        (
            p.pairs,
            p.green_only_errors,
            p.blue_only_errors,
            p.both_errors,
            p.answered
        ),
        (6, 2, 1, 1, 1)
    );
}

#[test]
fn defects_are_paired_among_answers_both_read_whole() {
    use Environment::{Blue, Green};
    let mut p = PairCounts::default();
    let json = Some(Defect::InvalidJson);
    let cut = Some(Defect::Truncated);
    p.record(&outcome(Green, StatusClass::Ok, json, 9), &ok(Blue));
    p.record(&outcome(Green, StatusClass::Ok, json, 9), &ok(Blue));
    p.record(&ok(Green), &outcome(Blue, StatusClass::Ok, cut, 9));
    p.record(
        &outcome(Green, StatusClass::Ok, json, 9),
        &outcome(Blue, StatusClass::Ok, json, 9),
    );
    // Blue's client went away: its answer is not whole, so the pair compares no defects.
    let mut gone = outcome(Blue, StatusClass::Ok, None, 9);
    gone.client_gone = true;
    p.record(&outcome(Green, StatusClass::Ok, json, 9), &gone);
    assert_eq!(p.answered, 4);
    assert_eq!(p.defects["invalid_json/none"], 2);
    assert_eq!(p.defects["none/truncated"], 1);
    assert_eq!(p.defects["invalid_json/invalid_json"], 1);
    assert_eq!(p.defect_pairs(&[]), (2, 1, 1));
    // Ignoring `truncated` leaves blue's one as no defect.
    assert_eq!(p.defect_pairs(&[Defect::Truncated]), (2, 0, 1));
    // A class a later version names is no defect here.
    p.defects.insert("sarcasm/none".into(), 5);
    assert_eq!(p.defect_pairs(&[]), (2, 1, 1));
}

#[test]
fn a_fallback_is_not_a_whole_answer() {
    let mut blue = ok(Environment::Blue);
    blue.fallback = Some(FallbackReason::Failed(Attempt::Status(503)));
    let mut p = PairCounts::default();
    p.record(&ok(Environment::Green), &blue);
    assert_eq!((p.pairs, p.answered), (1, 0));
}

#[test]
fn stats_count_copies_pairs_and_the_copies_not_judged() {
    use Environment::{Blue, Green};
    let prices = Prices::default();
    let mut s = ShadowStats::default();
    s.record(&ShadowEnd::Finished(failed_(Green)), &ok(Blue), &prices);
    s.record(&ShadowEnd::Finished(ok(Green)), &ok(Blue), &prices);
    s.record(&ShadowEnd::Unfinished, &ok(Blue), &prices);
    s.record_capped();
    assert_eq!(
        (s.green.requests, s.green.errors(), s.blue.requests),
        (2, 1, 2)
    );
    assert_eq!((s.pairs.pairs, s.unfinished, s.capped), (2, 1, 1));
    let mut twice = s.clone();
    twice.merge(&s);
    assert_eq!((twice.pairs.green_only_errors, twice.capped), (2, 2));
    let summary = twice.summary();
    assert_eq!((summary.pairs, summary.green.requests), (4, 4));
    assert!(ShadowStats::default().is_empty() && !s.is_empty());
}

fn pairs(n: u64, green_only: u64, blue_only: u64, both: u64) -> ShadowStats {
    let mut green = EnvStats {
        requests: n,
        answers: n - green_only - both,
        ..EnvStats::default()
    };
    green.errors.server_error = green_only + both;
    green.total.record_n(2000, n);
    ShadowStats {
        green,
        pairs: PairCounts {
            pairs: n,
            green_only_errors: green_only,
            blue_only_errors: blue_only,
            both_errors: both,
            answered: n - green_only - blue_only - both,
            ..PairCounts::default()
        },
        ..ShadowStats::default()
    }
}

#[test]
fn pairs_alone_are_judged_at_a_share_of_one_half() {
    let st = ShadowStratum {
        stats: pairs(100, 6, 1, 2),
        in_step: true,
        step_held: None,
        step_failed: None,
        version: None,
    };
    let t = st.counts(None, Some(1000), &HealthPolicy::default());
    assert_eq!((t.green_requests, t.blue_requests), (100, 100));
    // Both shared failures leave green's count; ⌊2 / 1.2⌋ = 1 of them leaves blue's.
    assert_eq!((t.green_errors, t.blue_errors), (6, 2));
    // Latency is not paired: without blue's requests, nothing is slow.
    assert_eq!((t.green_slow, t.blue_slow), (0, 0));
    // w = 1/2: given a failure, green's with probability ρ/(1 + ρ). For ρ₁ = 2.4 against
    // τ = 1.2: 6·ln 2 − 8·ln(1.7/1.1).
    let inc = relative_increment(2.4, 1.2, 0.5, t.green_errors, t.blue_errors);
    assert!((inc - (6.0 * 2f64.ln() - 8.0 * (1.7f64 / 1.1).ln())).abs() < 1e-12);
    // The clearly-fine test reads every failure of each side.
    assert_eq!(st.fine_errors(None), (8, 3));
}

/// Expected counts of a green exactly at the tolerance (τ = 1.2) whose failures mostly go
/// with blue's: blue fails 5%, green 6%, both 4.5% of the pairs. The rollback test keeps its
/// level when green's count over blue's is at most τ·c/n (the module doc); before, with the
/// shared failures out of both sides, pairs alone had 1.5% against 0.5% (3 > 1.2) and a 100%
/// shadow step 1.5% against 0.5% as well.
#[test]
fn shared_failures_do_not_make_a_tolerable_green_look_worse() {
    let health = HealthPolicy::default();
    let tau = health.tolerance_ratio;
    // 100 000 pairs: 1 500 green alone, 500 blue alone, 4 500 both.
    let st = ShadowStratum {
        stats: pairs(100_000, 1_500, 500, 4_500),
        in_step: true,
        step_held: None,
        step_failed: None,
        version: None,
    };
    let level_kept = |t: &TickCounts| {
        // λ_g / λ_b ≤ τ·c/n, multiplied out.
        let (c, n) = (t.green_requests as f64, t.blue_requests as f64);
        t.green_errors as f64 * n <= tau * c * t.blue_errors as f64
    };
    // Pairs alone: 1 500 against 500 + 4 500 − 3 750 = 1 250.
    let alone = st.counts(None, None, &health);
    assert_eq!((alone.green_errors, alone.blue_errors), (1_500, 1_250));
    assert!(level_kept(&alone), "{alone:?}");
    for k in 1..=4 {
        let rho1 = tau * [2.0, 3.0, 5.0, 8.0][k - 1];
        assert!(relative_increment(rho1, tau, 0.5, 1_500, 1_250) < 0.0);
    }
    let blue_of = |requests: u64, failed: u64| {
        let mut b = EnvStats {
            requests,
            answers: requests - failed,
            ..EnvStats::default()
        };
        b.errors.server_error = failed;
        b
    };
    // A 100% shadow step: blue's requests are the copied ones.
    let blue = blue_of(100_000, 5_000);
    let all = st.counts(Some(&blue), None, &health);
    assert_eq!((all.green_errors, all.blue_errors), (1_500, 1_250));
    assert!(level_kept(&all), "{all:?}");
    // A 20% shadow step (τ·c ≤ n): every shared failure leaves both sides.
    let blue = blue_of(500_000, 25_000);
    let fifth = st.counts(Some(&blue), None, &health);
    assert_eq!((fifth.green_errors, fifth.blue_errors), (1_500, 20_500));
    assert!(level_kept(&fifth), "{fifth:?}");
    // The clearly-fine test (null: green at least τ × blue) keeps them all: 6 000 against
    // 25 000 at c/n = 1/5 is exactly τ·c/n, not below it.
    assert_eq!(st.fine_errors(Some(&blue)), (6_000, 25_000));
}

#[test]
fn the_share_of_shared_failures_off_blue_is_bounded() {
    // All while τ·c ≤ n; ⌊both·n/(τc)⌋ above; never more than there are, nor for odd inputs.
    assert_eq!(shared_off_blue(10, 100, 500, 1.2), 10);
    assert_eq!(shared_off_blue(10, 100, 100, 1.2), 8);
    assert_eq!(shared_off_blue(10, 0, 100, 1.2), 10);
    assert_eq!(shared_off_blue(u64::MAX, 1, u64::MAX, 1.2), u64::MAX);
    assert_eq!(shared_off_blue(10, 100, 100, f64::NAN), 10);
    assert_eq!(shared_off_blue(10, 100, 100, -1.0), 0);
    assert_eq!(shared_off_blue(10, 100, 100, f64::INFINITY), 0);
}

#[test]
fn with_blues_requests_the_shared_failures_leave_both_sides() {
    let st = ShadowStratum {
        stats: pairs(60, 2, 1, 1),
        in_step: true,
        step_held: None,
        step_failed: None,
        version: None,
    };
    // Blue's 300 requests of the tick (the 60 copied ones among them): 5 failed, one of them
    // on a prompt green failed too. 20 are slower than the reference.
    let mut blue = EnvStats {
        requests: 300,
        answers: 295,
        ..EnvStats::default()
    };
    blue.errors.server_error = 5;
    blue.total.record_n(500, 280);
    blue.total.record_n(3000, 20);
    let t = st.counts(Some(&blue), Some(1000), &HealthPolicy::default());
    assert_eq!((t.green_requests, t.blue_requests), (60, 300));
    assert_eq!((t.green_errors, t.blue_errors), (2, 4));
    // Green's copies all took 2000 ms; blue's 20 slow ones.
    assert_eq!((t.green_slow, t.blue_slow), (60, 20));
    assert_eq!((t.green_answers, t.blue_answers), (57, 295));
    // No blue requests: the pairs alone.
    let none = EnvStats::default();
    assert_eq!(
        st.counts(Some(&none), None, &HealthPolicy::default()),
        st.counts(None, None, &HealthPolicy::default())
    );
}

#[test]
fn the_scope_keeps_the_steps_pairs_apart_and_restarts_with_its_windows() {
    let mut s = ShadowScope::default();
    s.add(&pairs(10, 1, 0, 0), true, 6);
    s.add(&pairs(4, 0, 1, 0), false, 5);
    let strata = s.strata();
    assert_eq!(strata.len(), 2);
    assert_eq!((strata[0].stats.pairs.pairs, strata[0].in_step), (10, true));
    assert_eq!((strata[1].stats.pairs.pairs, strata[1].in_step), (4, false));
    assert_eq!((s.step.pairs.pairs, s.rollout.pairs.pairs), (10, 14));
    let mut after = s.clone();
    after.restart_window();
    assert!(after.strata().is_empty());
    assert_eq!(after.step.pairs.pairs, 10);
    after.restart_step();
    assert_eq!((after.step.pairs.pairs, after.rollout.pairs.pairs), (0, 14));
    assert_eq!(
        ShadowStratum::reason(&s.strata()).as_deref(),
        Some("shadow pairs this tick: 14; green failed alone in 1, blue alone in 1, both in 0; 0 copies unfinished")
    );
}

#[test]
fn counts_stay_bounded_at_the_extremes() {
    let mut a = pairs(u64::MAX, 0, 0, 0);
    a.pairs.green_only_errors = u64::MAX;
    a.unfinished = u64::MAX;
    let b = a.clone();
    a.merge(&b);
    assert_eq!((a.pairs.pairs, a.unfinished), (u64::MAX, u64::MAX));
    // Blue's errors below the shared failures (batches of a tick boundary): never below 0.
    let st = ShadowStratum {
        stats: pairs(10, 0, 0, 5),
        in_step: true,
        step_held: None,
        step_failed: None,
        version: None,
    };
    let blue = EnvStats {
        requests: 3,
        ..EnvStats::default()
    };
    let t = st.counts(Some(&blue), None, &HealthPolicy::default());
    assert_eq!(t.blue_errors, 0);
}

/// A copy given up 25 s after blue's answer: without green's headers, a timeout where blue
/// answered; with them, slow (its 40 s so far) but neither an error nor an answer. Either way a
/// pair, and `unfinished`.
#[test]
fn a_given_up_copy_is_judged_as_far_as_it_got() {
    use Environment::{Blue, Green};
    let prices = Prices::default();
    // Sent at 125 000 ms, given up at 165 000 ms.
    let partial = outcome(Green, StatusClass::Ok, None, 0);
    let silent = given_up(partial.clone(), false, 165_000);
    assert_eq!(
        (silent.class, silent.status, silent.total_ms),
        (StatusClass::Timeout, 504, 40_000)
    );
    assert_eq!(silent.first_byte_ms, None);
    let mut streaming = partial;
    streaming.defect = Some(Defect::Empty);
    let streaming = given_up(streaming, true, 165_000);
    assert_eq!(
        (streaming.class, streaming.total_ms),
        (StatusClass::Ok, 40_000)
    );
    assert!(streaming.client_gone && !streaming.interrupted && streaming.defect.is_none());
    let mut s = ShadowStats::default();
    s.record(&ShadowEnd::GivenUp(silent), &ok(Blue), &prices);
    s.record(&ShadowEnd::GivenUp(streaming), &ok(Blue), &prices);
    assert_eq!((s.pairs.pairs, s.unfinished), (2, 2));
    assert_eq!((s.pairs.green_only_errors, s.pairs.answered), (1, 0));
    assert_eq!((s.green.errors.timeout, s.green.answers), (1, 0));
    // Both counted slow against a reference of 30 s.
    assert_eq!(s.green.total.count_above(30_000), 2);
    // Clock skew (given up "before" it was sent) stays at 0 ms.
    assert_eq!(given_up(ok(Green), false, 0).total_ms, 0);
}

/// More than 1% of a step's copies given up holds it: 1 in 100 does not, 2 in 100 does, and
/// so does one given up with no copy finished.
#[test]
fn a_step_with_too_many_copies_given_up_is_held() {
    let mut s = pairs(100, 0, 0, 0);
    s.unfinished = 1;
    assert_eq!(s.too_many_unfinished(), None);
    s.unfinished = 2;
    assert_eq!(
        s.too_many_unfinished().as_deref(),
        Some("shadow step held: 2 of its 100 copies were given up unfinished (more than 1%): green's answers to them are not known")
    );
    let none = ShadowStats {
        unfinished: 1,
        ..ShadowStats::default()
    };
    assert!(none.too_many_unfinished().is_some());
    assert_eq!(ShadowStats::default().too_many_unfinished(), None);
    // The scope puts the step's figure on the step's stratum only.
    let mut scope = ShadowScope::default();
    scope.add(&s, true, 6);
    scope.add(&pairs(5, 0, 0, 0), false, 5);
    let strata = scope.strata();
    assert!(strata[0].step_held.is_some() && strata[1].step_held.is_none());
    scope.restart_window();
    scope.add(&pairs(300, 0, 0, 0), true, 6);
    assert!(scope.strata()[0].step_held.is_none(), "2 in 400");
}

/// Green's embeddings answers over the step, each of one vector length but not all of the same,
/// fail the step whatever the counts: the reason goes on the step's stratum, from the step's
/// figures (a window that saw one length does not hide the other).
#[test]
fn green_vectors_of_two_lengths_over_the_step_fail_it() {
    let copies = |length: u64| {
        let mut s = pairs(10, 0, 0, 0);
        s.green.vector_lengths = Some(crate::stats::Lengths {
            min: length,
            max: length,
        });
        s
    };
    let mut scope = ShadowScope::default();
    scope.add(&copies(1536), true, 6);
    assert_eq!(scope.strata()[0].step_failed, None, "one length");
    scope.restart_window();
    scope.add(&copies(3072), true, 6);
    let strata = scope.strata();
    assert_eq!(
        strata[0].step_failed.as_deref(),
        Some("green's vectors came in lengths from 1536 to 3072: an index holds one length")
    );
    assert_eq!(
        strata[0].stats.green.vector_lengths.unwrap().min,
        3072,
        "the window's own"
    );
    scope.restart_step();
    scope.add(&copies(3072), true, 7);
    assert_eq!(
        scope.strata()[0].step_failed,
        None,
        "a new step starts afresh"
    );
}

/// The step's copies are kept by routing version (bounded, merged, never dropped), and a
/// window stored before that is judged as one stratum without a version.
#[test]
fn the_steps_copies_are_kept_by_version() {
    let mut s = ShadowScope::default();
    s.add(&pairs(10, 0, 0, 0), true, 6);
    s.add(&pairs(20, 0, 0, 0), true, 8);
    let v: Vec<(Option<u64>, u64)> = s
        .strata()
        .iter()
        .map(|st| (st.version, st.stats.pairs.pairs))
        .collect();
    assert_eq!(v, [(Some(6), 10), (Some(8), 20)]);
    for version in 0..100 {
        s.add(&pairs(1, 0, 0, 0), true, 100 + version);
    }
    assert_eq!(s.by_version.len(), MAX_VERSIONS);
    let total: u64 = s.by_version.values().map(|x| x.pairs.pairs).sum();
    assert_eq!(total, 130);
    let old = ShadowScope {
        window: pairs(7, 0, 0, 0),
        ..ShadowScope::default()
    };
    let json = serde_json::to_string(&old).unwrap();
    assert!(!json.contains("by_version"));
    let loaded: ShadowScope = serde_json::from_str(&json).unwrap();
    assert_eq!(loaded.strata()[0].version, None);
}
