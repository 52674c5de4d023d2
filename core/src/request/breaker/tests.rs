//! The breaker as timelines: times are Unix ms from an isolate's start at 0.

use super::*;
use Finish::{Error, NoAnswer, Ok};
use Mode::{Stream, Whole};

fn breaker() -> Breaker {
    Breaker::new(Settings::default())
}

/// `n` blue answers of `ms` each in `mode`, reported at `now`.
fn blue(b: &mut Breaker, mode: Mode, ms: u64, n: usize, now: u64) {
    for _ in 0..n {
        b.blue_answered(mode, ms, now);
    }
}

fn green(b: &mut Breaker, mode: Mode, now: u64) -> Ticket {
    match b.admit_green(mode, now) {
        Admit::Green(t) => t,
        other => panic!("at {now}: expected green, got {other:?}"),
    }
}

fn probe(b: &mut Breaker, mode: Mode, now: u64) -> Ticket {
    match b.admit_green(mode, now) {
        Admit::Probe(t) => t,
        other => panic!("at {now}: expected a probe, got {other:?}"),
    }
}

fn shed(b: &mut Breaker, now: u64) -> Shed {
    match b.admit_green(Whole, now) {
        Admit::Shed(s) => s,
        other => panic!("at {now}: expected a shed, got {other:?}"),
    }
}

fn events(b: &mut Breaker) -> Vec<Event> {
    std::iter::from_fn(|| b.poll_event()).collect()
}

/// Fails `n` green attempts, one every 10 ms from `from`; returns when the last one ended.
fn fail(b: &mut Breaker, n: u64, from: u64) -> u64 {
    for i in 0..n {
        let t = green(b, Whole, from + 10 * i);
        b.attempt_finished(t, Error, from + 10 * i + 5);
    }
    from + 10 * (n - 1) + 5
}

/// Ejects with five failures ending at 45 ms.
fn ejected() -> Breaker {
    let mut b = breaker();
    assert_eq!(fail(&mut b, 5, 0), 45);
    events(&mut b);
    b
}

#[test]
fn five_failures_in_a_row_eject_green_for_the_base_time() {
    let mut b = breaker();
    fail(&mut b, 4, 0);
    assert_eq!(b.snapshot().consecutive_failures, 4);
    let t = green(&mut b, Whole, 40);
    b.attempt_finished(t, NoAnswer, 45); // a refused connection counts like a 503
    let s = shed(&mut b, 46);
    assert_eq!(s.reason, ShedReason::Ejected);
    assert_eq!(s.cause, Cause::Failures { attempts: 5 });
    assert_eq!(s.reason.as_str(), "green-ejected");
    assert_eq!(s.charge(), Charge::Ejected);
    assert_eq!(
        events(&mut b),
        [Event::Ejected {
            at_ms: 45,
            cause: Cause::Failures { attempts: 5 },
            until_ms: 30_045,
            strikes: 1
        }]
    );
    // Shed until the cool-down is over: 45 + 30 000.
    shed(&mut b, 30_044);
    let snap = b.snapshot();
    assert_eq!(
        (snap.state, snap.ejected_until_ms),
        ("ejected", Some(30_045))
    );
    assert_eq!((snap.counts.ejections, snap.counts.shed), (1, 2));
}

#[test]
fn an_answer_resets_the_count() {
    let mut b = breaker();
    let end = fail(&mut b, 4, 0);
    let t = green(&mut b, Whole, end + 1);
    b.attempt_finished(t, Ok, end + 2);
    assert_eq!(b.snapshot().consecutive_failures, 0);
    fail(&mut b, 4, 100);
    green(&mut b, Whole, 200);
    assert_eq!(b.snapshot().state, "closed");
}

#[test]
fn one_probe_at_a_time_after_the_cool_down_and_its_answer_closes() {
    let mut b = ejected();
    let p = probe(&mut b, Stream, 30_045);
    // While the probe is out, everyone else still goes to blue.
    assert_eq!(shed(&mut b, 30_046).reason, ShedReason::Ejected);
    assert_eq!(shed(&mut b, 31_000).cause, Cause::Failures { attempts: 5 });
    assert_eq!(b.snapshot().state, "probing");
    b.attempt_finished(p, Ok, 31_500);
    assert_eq!(events(&mut b), [Event::Closed { at_ms: 31_500 }]);
    green(&mut b, Whole, 31_501);
    assert_eq!(b.snapshot().counts.probes, 1);
}

#[test]
fn a_failed_probe_ejects_again_for_longer_up_to_the_cap() {
    let mut b = ejected();
    let mut now = 30_045;
    // Strike n lasts 30 s × n, at most 300 s: 60, 90, …, 300, 300, 300.
    let mut cool_downs = vec![];
    for _ in 0..12 {
        let p = probe(&mut b, Whole, now);
        b.attempt_finished(p, Error, now + 100);
        let [Event::Ejected {
            until_ms, cause, ..
        }] = events(&mut b)[..]
        else {
            panic!("one ejection")
        };
        assert_eq!(cause, Cause::ProbeFailed);
        cool_downs.push((until_ms - (now + 100)) / 1000);
        shed(&mut b, until_ms - 1);
        now = until_ms;
    }
    assert_eq!(
        cool_downs,
        [60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300, 300]
    );
}

#[test]
fn a_probe_left_unanswered_past_its_deadline_ejects_again_and_is_given_up() {
    let mut b = ejected();
    blue(&mut b, Stream, 500, 20, 30_000); // deadline max(5 × 500, 4 000) = 4 000
    let p = probe(&mut b, Stream, 30_045);
    assert_eq!(b.check(p, 30_045), Check::Wait { until_ms: 34_045 });
    assert_eq!(
        b.check(p, 34_045),
        Check::Abandon(Shed {
            reason: ShedReason::Abandoned,
            cause: Cause::ProbeHung
        })
    );
    // 60 s for the second strike, from when the probe was found hung.
    let [Event::Ejected {
        at_ms: 34_045,
        until_ms: 94_045,
        strikes: 2,
        ..
    }] = events(&mut b)[..]
    else {
        panic!("re-ejected")
    };
    // A probe the shell never asks about is found hung by the next request all the same.
    let p = probe(&mut b, Stream, 94_045);
    shed(&mut b, 98_044);
    assert_eq!(shed(&mut b, 98_045).cause, Cause::ProbeHung);
    assert!(matches!(b.check(p, 98_046), Check::Abandon(_)));
    assert_eq!(b.check(p, 98_047), Check::Untracked, "given up once");
}

#[test]
fn strikes_are_forgiven_while_green_stays_healthy() {
    let mut b = ejected(); // strike 1, until 30 045
    let p = probe(&mut b, Whole, 30_045);
    b.attempt_finished(p, Error, 30_050); // strike 2, 60 s
    let p = probe(&mut b, Whole, 90_050);
    b.attempt_finished(p, Ok, 90_060);
    assert_eq!(b.snapshot().strikes, 2);
    // 65 s closed forgives two strikes of 30 s: the next ejection is a first one again.
    let end = fail(&mut b, 5, 155_060);
    assert_eq!(end, 155_105);
    let evs = events(&mut b);
    let Some(Event::Ejected {
        until_ms, strikes, ..
    }) = evs.last().copied()
    else {
        panic!("ejected: {evs:?}")
    };
    assert_eq!((strikes, until_ms), (1, 185_105));
    // 31 s closed forgives one of two.
    let mut b = ejected();
    let p = probe(&mut b, Whole, 30_045);
    b.attempt_finished(p, Error, 30_050);
    let p = probe(&mut b, Whole, 90_050);
    b.attempt_finished(p, Ok, 90_060);
    fail(&mut b, 5, 121_060);
    assert_eq!(b.snapshot().strikes, 2);
}

#[test]
fn hung_attempts_eject_green_at_their_deadline_and_are_given_up() {
    let mut b = breaker();
    blue(&mut b, Stream, 500, 20, 0); // deadline 4 000 (the floor; 5 × 500 is less)
    let t1 = green(&mut b, Stream, 0);
    let t2 = green(&mut b, Stream, 100);
    let t3 = green(&mut b, Stream, 200);
    let late = green(&mut b, Stream, 3_000);
    assert_eq!(b.check(t1, 0), Check::Wait { until_ms: 4_000 });
    // t1 is overdue, but one overdue attempt is not a hang: the third one is due at 4 200.
    assert_eq!(b.check(t1, 4_000), Check::Wait { until_ms: 4_200 });
    assert_eq!(b.check(t2, 4_100), Check::Wait { until_ms: 4_200 });
    green(&mut b, Stream, 4_199);
    let hung = Cause::Hung {
        attempts: 3,
        waited_ms: 4_200,
    };
    let given_up = Check::Abandon(Shed {
        reason: ShedReason::Abandoned,
        cause: hung,
    });
    assert_eq!(b.check(t3, 4_200), given_up);
    assert_eq!(b.check(t1, 4_200), given_up);
    assert_eq!(b.check(t1, 4_201), Check::Untracked);
    assert_eq!(given_up_charge(given_up), Charge::Timeout);
    // An attempt not yet past its own deadline keeps its chance until then.
    assert_eq!(b.check(late, 4_200), Check::Wait { until_ms: 7_000 });
    assert_eq!(b.check(late, 7_000), given_up);
    assert_eq!(shed(&mut b, 7_001).cause, hung);
    // t2 ends on its own after all: that is no news to an ejected breaker.
    b.attempt_finished(t2, NoAnswer, 30_000);
    let [Event::Ejected {
        at_ms: 4_200,
        until_ms: 34_200,
        ..
    }] = events(&mut b)[..]
    else {
        panic!("one ejection")
    };
    assert_eq!(b.snapshot().counts.abandoned, 3);
}

fn given_up_charge(c: Check) -> Charge {
    match c {
        Check::Abandon(s) => s.charge(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn one_attempt_hung_for_twice_its_deadline_is_enough() {
    // A quiet isolate: one green request at a time.
    let mut b = breaker();
    blue(&mut b, Whole, 300, 5, 0);
    let t = green(&mut b, Whole, 1_000);
    let mut now = 1_000;
    let mut asked = vec![];
    let abandoned = loop {
        match b.check(t, now) {
            Check::Wait { until_ms } => {
                asked.push(until_ms);
                now = until_ms;
            }
            other => break other,
        }
    };
    // Due at 5 000; then every 500 ms until 2 × 4 000 after the start.
    assert_eq!(
        asked,
        [5_000, 5_500, 6_000, 6_500, 7_000, 7_500, 8_000, 8_500, 9_000]
    );
    assert_eq!(now, 9_000);
    assert!(matches!(
        abandoned,
        Check::Abandon(Shed {
            cause: Cause::Hung {
                attempts: 1,
                waited_ms: 8_000
            },
            ..
        })
    ));
}

#[test]
fn any_green_answer_since_they_started_means_not_hung() {
    let mut b = breaker();
    blue(&mut b, Stream, 500, 20, 0);
    let quick = green(&mut b, Stream, 0);
    let slow: Vec<_> = (1..=5).map(|i| green(&mut b, Stream, i * 100)).collect();
    // One attempt answers (even with a failure status) after they all started.
    b.attempt_finished(quick, Error, 3_000);
    // Past their deadlines (4 100 to 4 500), but not hung: asked again in 500 ms.
    for (i, t) in slow.iter().enumerate() {
        let now = 7_000 + i as u64;
        let wait = Check::Wait {
            until_ms: now + 500,
        };
        assert_eq!(b.check(*t, now), wait, "{i}");
    }
    assert_eq!(b.snapshot().state, "closed");
    // But attempts started after that answer are judged again.
    let t = green(&mut b, Stream, 7_100);
    green(&mut b, Stream, 7_200);
    green(&mut b, Stream, 7_300);
    assert!(matches!(b.check(t, 11_300), Check::Abandon(_)));
}

/// Drives a green that answers each attempt after `green_ms(ticket)`, with a new green request
/// every `every_ms` for ten minutes, asking about every waiting attempt each time; returns the
/// ejections.
fn steady(b: &mut Breaker, mode: Mode, every_ms: u64, green_ms: impl Fn(u64) -> u64) -> u64 {
    let mut pending: Vec<(u64, Ticket)> = vec![];
    let mut now = 0;
    while now < 600_000 {
        pending.sort_by_key(|p| std::cmp::Reverse(p.0));
        while pending.last().is_some_and(|p| p.0 <= now) {
            let (at, t) = pending.pop().unwrap();
            b.attempt_finished(t, Ok, at);
        }
        match b.admit_green(mode, now) {
            Admit::Green(t) | Admit::Probe(t) => {
                pending.push((now + green_ms(t.0), t));
                assert!(!matches!(b.check(t, now), Check::Abandon(_)));
            }
            Admit::Shed(_) => {}
        }
        for &(_, t) in &pending {
            assert!(!matches!(b.check(t, now), Check::Abandon(_)));
        }
        now += every_ms;
    }
    b.snapshot().counts.ejections
}

#[test]
fn a_slower_green_that_answers_is_never_ejected() {
    // Blue's p90 is 500 ms; green takes 3.5 s, seven times as long but under the 4 s floor.
    let mut b = breaker();
    blue(&mut b, Stream, 500, 64, 0);
    assert_eq!(steady(&mut b, Stream, 100, |_| 3_500), 0);
    // Blue's non-streamed answers take 2 s (deadline 10 s); green's take 8 s, from the start.
    let mut b = breaker();
    blue(&mut b, Whole, 2_000, 64, 0);
    assert_eq!(steady(&mut b, Whole, 250, |_| 8_000), 0);
    // A heavy tail: one green answer in ten takes 60 s; the others keep coming back.
    let mut b = breaker();
    blue(&mut b, Whole, 800, 64, 0);
    let tail = |ticket: u64| if ticket % 10 == 0 { 60_000 } else { 1_200 };
    assert_eq!(steady(&mut b, Whole, 100, tail), 0);
}

#[test]
fn each_mode_is_measured_against_blue_in_the_same_mode() {
    let mut b = breaker();
    blue(&mut b, Stream, 300, 20, 0);
    blue(&mut b, Whole, 6_000, 20, 0);
    // Stream: max(5 × 300, 4 000) = 4 000. Whole: 5 × 6 000 = 30 000.
    assert_eq!(b.hang_deadline_ms(Stream), 4_000);
    assert_eq!(b.hang_deadline_ms(Whole), 30_000);
    // Long non-streamed answers in flight are not a hang (asked again after the floor, as
    // the deadline may move) …
    let whole: Vec<_> = (0..3).map(|i| green(&mut b, Whole, i)).collect();
    for t in &whole {
        assert_eq!(b.check(*t, 25_000), Check::Wait { until_ms: 29_000 });
    }
    for (i, t) in whole.iter().enumerate() {
        let until_ms = 30_000 + i as u64;
        assert_eq!(b.check(*t, 29_000), Check::Wait { until_ms });
    }
    // … while streams silent for 4 s are, whichever mode the attempts that trip it are in.
    let mut b = breaker();
    blue(&mut b, Stream, 300, 20, 0);
    blue(&mut b, Whole, 6_000, 20, 0);
    green(&mut b, Whole, 0);
    let s = green(&mut b, Stream, 0);
    green(&mut b, Stream, 10);
    green(&mut b, Stream, 20);
    assert!(matches!(b.check(s, 4_020), Check::Abandon(_)));
}

#[test]
fn an_attempt_sent_before_blue_answered_learns_the_deadline_in_time() {
    // A cold isolate: the deadline is the cap until blue answers, so the attempt is told to
    // ask again after the floor, not at the cap.
    let mut b = breaker();
    let ts: Vec<_> = (0..3).map(|i| green(&mut b, Stream, i)).collect();
    assert_eq!(b.check(ts[0], 2), Check::Wait { until_ms: 4_002 });
    blue(&mut b, Stream, 600, 10, 700);
    assert!(matches!(b.check(ts[0], 4_000), Check::Wait { .. }));
    // Due at 4 000, 4 001, 4 002: hung at 4 002.
    assert!(matches!(b.check(ts[2], 4_002), Check::Abandon(_)));
    assert!(matches!(b.check(ts[0], 4_002), Check::Abandon(_)));
}

#[test]
fn without_blue_answers_the_deadline_is_lenient() {
    let mut b = breaker();
    assert_eq!(b.hang_deadline_ms(Stream), 120_000);
    assert_eq!(b.hang_deadline_ms(Whole), 120_000);
    // A stream borrows the non-streamed reference (longer, so more lenient) …
    blue(&mut b, Whole, 2_000, 10, 0);
    assert_eq!(b.hang_deadline_ms(Stream), 10_000);
    // … but not the other way round.
    let mut b = breaker();
    blue(&mut b, Stream, 200, 10, 0);
    assert_eq!(b.hang_deadline_ms(Whole), 120_000);
}

#[test]
fn blues_reference_ignores_a_few_outliers_and_forgets_old_answers() {
    let mut b = breaker();
    blue(&mut b, Whole, 1_000, 58, 0);
    blue(&mut b, Whole, 600_000, 6, 0);
    // p90 of 64 is the 58th smallest: still 1 000, so 5 000.
    assert_eq!(b.hang_deadline_ms(Whole), 5_000);
    b.blue_answered(Whole, u64::MAX, 0);
    assert_eq!(b.hang_deadline_ms(Whole), 120_000, "seven of 64: the cap");
    blue(&mut b, Whole, 900, 64, 0);
    assert_eq!(
        b.hang_deadline_ms(Whole),
        4_500,
        "the window is the last 64"
    );
    // Fewer than ten answers: the p90 is the largest.
    let mut b = breaker();
    blue(&mut b, Whole, 1_000, 8, 0);
    b.blue_answered(Whole, 2_000, 0);
    assert_eq!(b.hang_deadline_ms(Whole), 10_000);
    b.blue_answered(Whole, 1_000, 0);
    assert_eq!(b.hang_deadline_ms(Whole), 5_000);
}

#[test]
fn failures_of_attempts_from_before_the_breaker_closed_do_not_count() {
    let mut b = breaker();
    let old: Vec<_> = (0..5).map(|i| green(&mut b, Whole, i)).collect();
    fail(&mut b, 5, 10); // ejected at 55
    let p = probe(&mut b, Whole, 30_055);
    b.attempt_finished(p, Ok, 30_100);
    // The five old attempts time out now, at the shell's 30 s: they belong to the outage.
    for t in old {
        b.attempt_finished(t, NoAnswer, 30_200);
    }
    assert_eq!(b.snapshot().consecutive_failures, 0);
    green(&mut b, Whole, 30_201);
}

#[test]
fn a_cancelled_probe_lets_the_next_request_probe() {
    let mut b = ejected();
    let p = probe(&mut b, Whole, 30_045);
    b.attempt_cancelled(p, 30_050);
    let p = probe(&mut b, Whole, 30_051);
    b.attempt_finished(p, Ok, 30_060);
    assert_eq!(b.snapshot().state, "closed");
    // A cancelled attempt is not a failure either.
    let mut b = breaker();
    for i in 0..10 {
        let t = green(&mut b, Whole, i);
        b.attempt_cancelled(t, i);
    }
    assert_eq!(b.snapshot().consecutive_failures, 0);
}

#[test]
fn switched_off_it_sends_everything_to_green_and_keeps_nothing() {
    let mut b = Breaker::new(Settings {
        enabled: false,
        ..Settings::default()
    });
    for i in 0..1_000 {
        let t = green(&mut b, Stream, i);
        b.attempt_finished(t, Error, i);
        assert_eq!(b.check(t, i + 100_000), Check::Untracked);
    }
    assert_eq!(b.snapshot().in_flight, 0);
    assert_eq!(b.poll_event(), None);
}

#[test]
fn the_attempt_table_and_the_event_queue_are_bounded() {
    let mut b = breaker();
    let first = green(&mut b, Whole, 0);
    for _ in 0..10_000 {
        green(&mut b, Whole, 0);
    }
    assert_eq!(b.snapshot().in_flight, MAX_IN_FLIGHT);
    assert_eq!(
        b.check(first, 1),
        Check::Untracked,
        "the oldest is forgotten"
    );
    b.attempt_finished(first, Error, 1); // and its end ignored
    assert_eq!(b.snapshot().consecutive_failures, 0);
    let mut b = ejected();
    let mut now = 30_045;
    for _ in 0..100 {
        let p = probe(&mut b, Whole, now);
        b.attempt_finished(p, Error, now);
        now += 300_000;
    }
    assert_eq!(events(&mut b).len(), MAX_EVENTS);
}

#[test]
fn settings_out_of_range_are_brought_into_it() {
    let b = Breaker::new(Settings {
        enabled: true,
        consecutive_failures: 0,
        base_ejection_ms: 0,
        max_ejection_ms: 0,
        hang_factor: 0,
        hang_floor_ms: u64::MAX,
        hang_cap_ms: 0,
        hung_attempts: 1_000,
    });
    let s = b.settings();
    assert_eq!(
        (
            s.consecutive_failures,
            s.base_ejection_ms,
            s.max_ejection_ms,
            s.hang_factor
        ),
        (1, 1, 1, 1)
    );
    assert_eq!((s.hang_floor_ms, s.hang_cap_ms), (MAX_MS, MAX_MS));
    assert_eq!(s.hung_attempts, 16);
}

#[test]
fn a_clock_that_runs_backwards_is_read_as_standing_still() {
    let mut b = ejected(); // until 30 045
    assert_eq!(shed(&mut b, 10).cause, Cause::Failures { attempts: 5 });
    let p = probe(&mut b, Whole, 30_045);
    assert_eq!(shed(&mut b, 0).reason, ShedReason::Ejected);
    b.attempt_finished(p, Ok, 5);
    assert_eq!(events(&mut b), [Event::Closed { at_ms: 30_045 }]);
    blue(&mut b, Stream, 500, 10, 0);
    let t = green(&mut b, Stream, 1);
    assert_eq!(b.check(t, 2), Check::Wait { until_ms: 34_045 });
}

#[test]
fn extreme_times_do_not_panic() {
    let mut b = breaker();
    blue(&mut b, Stream, u64::MAX, 3, u64::MAX - 10);
    let t = green(&mut b, Stream, u64::MAX - 5);
    assert_eq!(b.check(t, 0), Check::Wait { until_ms: u64::MAX });
    // Ejected until the end of time, which does come.
    fail(&mut b, 5, u64::MAX - 100);
    assert_eq!(b.snapshot().ejected_until_ms, Some(u64::MAX));
    shed(&mut b, 5);
    // There every deadline has passed: a probe is given up at once, and the next one probes.
    let p = probe(&mut b, Whole, u64::MAX);
    assert!(matches!(b.check(p, u64::MAX), Check::Abandon(_)));
    let p = probe(&mut b, Whole, u64::MAX);
    b.attempt_finished(p, Ok, 0);
    assert!(matches!(
        b.check(t, u64::MAX),
        Check::Abandon(_) | Check::Wait { .. }
    ));
    b.attempt_finished(t, NoAnswer, u64::MAX);
    let snap = b.snapshot();
    assert!(snap.in_flight <= 1 && snap.strikes <= MAX_STRIKES);
}
