//! Property test: whatever the request path tells the breaker, in whatever order and at
//! whatever times — a clock that jumps back, stands still or sits at `u64::MAX`, tickets that
//! were never issued or already ended, absurd answer times and settings at their extremes — it
//! never panics, keeps its tables bounded, sends at most one probe at a time, and every time it
//! names is one the caller can wait for. Fixed seeds: a failure replays.

use bluegreen_core::request::breaker::{
    Admit, Breaker, Check, Event, Finish, Mode, Settings, Ticket, MAX_IN_FLIGHT,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const TIMES: [u64; 6] = [0, 1, 4_000, u64::MAX / 2, u64::MAX - 1, u64::MAX];
const ANSWERS_MS: [u64; 6] = [0, 1, 450, 30_000, 1 << 40, u64::MAX];

fn settings(rng: &mut SmallRng) -> Settings {
    let pick = |rng: &mut SmallRng, xs: &[u64]| xs[rng.random_range(0..xs.len())];
    if rng.random_bool(0.3) {
        return Settings::default();
    }
    Settings {
        enabled: rng.random_bool(0.9),
        consecutive_failures: rng.random_range(0..=200),
        base_ejection_ms: pick(rng, &[0, 1, 1_000, 30_000, u64::MAX]),
        max_ejection_ms: pick(rng, &[0, 1, 300_000, u64::MAX]),
        hang_factor: rng.random_range(0..=1_000),
        hang_floor_ms: pick(rng, &[0, 1, 4_000, u64::MAX]),
        hang_cap_ms: pick(rng, &[0, 1, 120_000, u64::MAX]),
        hung_attempts: rng.random_range(0..=100),
    }
}

fn mode(rng: &mut SmallRng) -> Mode {
    if rng.random_bool(0.5) {
        Mode::Stream
    } else {
        Mode::Whole
    }
}

/// Mostly forward in small steps; sometimes back, sometimes to an extreme.
fn next_time(rng: &mut SmallRng, now: u64) -> u64 {
    match rng.random_range(0..20) {
        0 => TIMES[rng.random_range(0..TIMES.len())],
        1 => now.saturating_sub(rng.random_range(0..60_000)),
        _ => now.saturating_add(rng.random_range(0..3_000)),
    }
}

#[test]
fn any_sequence_of_calls_keeps_the_breaker_sound() {
    let mut probes = 0;
    let mut ejections = 0;
    let mut abandons = 0;
    for seed in 0..120u64 {
        let mut rng = SmallRng::seed_from_u64(0xb4_0000 + seed);
        let mut b = Breaker::new(settings(&mut rng));
        let s = *b.settings();
        let mut tickets: Vec<Ticket> = vec![];
        let mut last_probe: Option<Ticket> = None;
        let mut now = rng.random_range(0..1_000_000);
        // The clock as the breaker reads it: the latest time it was given.
        let mut seen = 0u64;
        for _ in 0..1_000 {
            now = next_time(&mut rng, now);
            seen = seen.max(now);
            let before = b.snapshot().state;
            match rng.random_range(0..10) {
                0..=2 => match b.admit_green(mode(&mut rng), now) {
                    Admit::Green(t) => {
                        assert_eq!(b.snapshot().state, "closed");
                        tickets.push(t);
                    }
                    Admit::Probe(t) => {
                        // (At u64::MAX a cool-down lasts no time: an ejection is probed at once.)
                        assert!(
                            before != "closed" || now == u64::MAX,
                            "a probe only after an ejection, at {now}"
                        );
                        assert_eq!(b.snapshot().state, "probing");
                        // One probe at a time: the last one ended, or the breaker found it
                        // hung (then it is given up like any overdue attempt).
                        if let Some(i) =
                            last_probe.and_then(|p| tickets.iter().position(|t| *t == p))
                        {
                            let old = tickets.swap_remove(i);
                            assert!(
                                matches!(b.check(old, now), Check::Abandon(_) | Check::Untracked),
                                "two probes out"
                            );
                        }
                        last_probe = Some(t);
                        probes += 1;
                        tickets.push(t);
                    }
                    Admit::Shed(_) => assert_ne!(b.snapshot().state, "closed"),
                },
                3..=4 if !tickets.is_empty() => {
                    let t = tickets.swap_remove(rng.random_range(0..tickets.len()));
                    let finish =
                        [Finish::Ok, Finish::Error, Finish::NoAnswer][rng.random_range(0..3)];
                    if rng.random_bool(0.1) {
                        b.attempt_cancelled(t, now);
                    } else {
                        b.attempt_finished(t, finish, now);
                    }
                    // Reporting it twice changes nothing that could break.
                    if rng.random_bool(0.05) {
                        b.attempt_finished(t, finish, now);
                    }
                }
                5..=6 if !tickets.is_empty() => {
                    let i = rng.random_range(0..tickets.len());
                    match b.check(tickets[i], now) {
                        Check::Wait { until_ms } => assert!(until_ms > seen || seen == u64::MAX),
                        Check::Abandon(_) => {
                            abandons += 1;
                            assert_ne!(b.snapshot().state, "closed");
                            let t = tickets.swap_remove(i);
                            assert_eq!(b.check(t, now), Check::Untracked);
                        }
                        Check::Untracked => {}
                    }
                }
                _ => {
                    let ms = ANSWERS_MS[rng.random_range(0..ANSWERS_MS.len())];
                    b.blue_answered(mode(&mut rng), ms, now);
                }
            }
            let snap = b.snapshot();
            assert!(snap.in_flight <= MAX_IN_FLIGHT);
            assert!(snap.strikes <= 1_000);
            for d in [snap.hang_deadline_stream_ms, snap.hang_deadline_whole_ms] {
                assert!((s.hang_floor_ms..=s.hang_cap_ms).contains(&d), "{d} {s:?}");
            }
            if let Some(until) = snap.ejected_until_ms {
                assert!(until.saturating_sub(seen) <= s.max_ejection_ms);
            }
            while let Some(e) = b.poll_event() {
                if let Event::Ejected {
                    at_ms, until_ms, ..
                } = e
                {
                    ejections += 1;
                    assert!(at_ms <= seen);
                    assert!(until_ms - at_ms <= s.max_ejection_ms);
                }
            }
            serde_json::to_string(&snap).expect("the snapshot serializes");
            // A ticket the breaker never issued is no trouble either.
            if rng.random_bool(0.01) {
                let stranger = match b.admit_green(Mode::Whole, now) {
                    Admit::Green(t) | Admit::Probe(t) => t,
                    Admit::Shed(_) => continue,
                };
                b.attempt_cancelled(stranger, now);
                assert_eq!(b.check(stranger, now), Check::Untracked);
            }
        }
    }
    // The runs did reach every part of the machine.
    println!("{probes} probes, {ejections} ejections, {abandons} attempts given up");
    assert!(
        probes > 100 && ejections > 100 && abandons > 100,
        "{probes} {ejections} {abandons}"
    );
}
