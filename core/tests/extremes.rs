//! Property test: whatever traffic a tick sees, everything the controller stores loads again.
//!
//! The controller stores its state, its stats windows and every event as JSON, and JSON has no
//! infinity or NaN (serde writes them as `null`, which then fails to load, and a controller
//! that cannot load its state answers nothing). So this drives the state machine as the
//! controller does (`Scopes::add`, `Scopes::tick`, `apply`, `Scopes::after`) through extreme
//! ticks — 0 to 10⁹ requests per environment, and counts that saturate, none or all failing, latencies from 1 ms to
//! `u64::MAX`, absurd token counts at the highest price — with operator commands in between,
//! under each verdict method, and checks after every transition that the state, the windows
//! and each new event survive a write and a read unchanged. Fixed seeds: a failure replays.

use bluegreen_core::api::usage::Usage;
use bluegreen_core::controller::rollout::{
    apply, Command, Effect, Event, Phase, RolloutSpec, State, Step,
};
use bluegreen_core::controller::windows::Scopes;
use bluegreen_core::request::outcome::{Outcome, StatusClass};
use bluegreen_core::request::routing::RoutingDoc;
use bluegreen_core::request::split::Basis;
use bluegreen_core::stats::{EnvStats, Prices, MAX_PRICE};
use bluegreen_core::verdict::health::{HealthPolicy, Method};
use bluegreen_core::Environment;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::de::DeserializeOwned;
use serde::Serialize;

const REQUESTS: [u64; 7] = [0, 1, 7, 1_000, 1_000_000, 1_000_000_000, u64::MAX / 3];
const LATENCIES_MS: [u64; 6] = [1, 120, 60_000, 3_600_000, 1 << 40, u64::MAX];

fn round_trips<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(what: &str, v: &T) {
    let json = serde_json::to_string(v).expect("serializes");
    let back: T = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{what} reloads: {e}"));
    assert_eq!(&back, v, "{what} changed through JSON: {json}");
}

fn routing() -> RoutingDoc {
    RoutingDoc {
        blue_model: "blue-m".into(),
        green_model: "green-m".into(),
        green_percent: 0.0,
        shadow_percent: 0.0,
        sticky: true,
        version: 1,
        updated_at: None,
        judge: None,
    }
}

/// One environment's stats for a tick: `n` requests, a share of them failed and a share of the
/// rest defective, all at one
/// latency, with `tokens` each priced at the highest price.
fn env_tick(rng: &mut SmallRng, prices: &Prices) -> EnvStats {
    let n = REQUESTS[rng.random_range(0..REQUESTS.len())];
    let ms = LATENCIES_MS[rng.random_range(0..LATENCIES_MS.len())];
    let failed = match rng.random_range(0..3) {
        0 => 0,
        1 => n,
        _ => n / 2,
    };
    let mut s = EnvStats {
        requests: n,
        ..EnvStats::default()
    };
    s.errors.server_error = failed;
    // None, every answer, or half of them unusable.
    s.defects.invalid_json = match rng.random_range(0..3) {
        0 => 0,
        1 => n - failed,
        _ => (n - failed) / 2,
    };
    s.total.record_n(ms, n);
    s.first_byte.record_n(ms / 2, n);
    if n > 0 && rng.random_bool(0.5) {
        // One outcome with a huge usage: its cost at the highest price must stay finite.
        let o = Outcome {
            request_id: "r".into(),
            at_ms: 0,
            route: "default".into(),
            api: bluegreen_core::api::Api::Chat,
            environment: Environment::Green,
            model: "m".into(),
            basis: Basis::Random,
            routing_version: 0,
            stream: false,
            status: 200,
            class: StatusClass::Ok,
            fallback: None,
            first_byte_ms: Some(ms),
            total_ms: ms,
            usage: Some(Usage {
                prompt_tokens: u64::MAX / 4,
                completion_tokens: u64::MAX / 4,
            }),
            interrupted: false,
            defect: None,
            vector_length: None,
            client_gone: false,
        };
        s.record(&o, prices);
    }
    s
}

fn spec(method: Method, advance_early: bool) -> RolloutSpec {
    RolloutSpec {
        green_model: "green-m".into(),
        steps: [(1.0, 60), (30.0, 0), (99.99, 120)]
            .into_iter()
            .map(|(green_percent, hold_seconds)| Step::live(green_percent, hold_seconds))
            .collect(),
        health: HealthPolicy {
            method,
            advance_early,
            min_requests: 1,
            ..HealthPolicy::default()
        },
    }
}

/// A command an operator might send now; most of the time, the cron's tick.
fn command(rng: &mut SmallRng, state: &State, scopes: &Scopes, method: Method) -> Command {
    match rng.random_range(0..20) {
        0 => Command::Pause,
        1 => Command::Resume,
        2 => Command::SetSplit {
            green_percent: rng.random_range(0.0..=100.0),
        },
        3 => Command::Rollback,
        4 => Command::Promote,
        5 => Command::Start {
            spec: spec(method, rng.random_bool(0.5)),
            routing: state.routing_doc(0),
        },
        _ => scopes.tick(),
    }
}

#[test]
fn extreme_ticks_never_store_what_cannot_be_read() {
    let prices = Prices::parse(&format!(
        r#"{{"m": {{"input": {MAX_PRICE}, "output": {MAX_PRICE}}}}}"#
    ))
    .expect("the highest price is accepted");
    let mut events = 0;
    for (seed, (method, advance_early)) in [
        (Method::Sequential, false),
        (Method::Sequential, true),
        (Method::Threshold, false),
    ]
    .into_iter()
    .enumerate()
    .flat_map(|(i, m)| (0..40u64).map(move |r| (i as u64 * 1000 + r, m)))
    {
        let mut rng = SmallRng::seed_from_u64(0xe7_0000 + seed);
        let start = Command::Start {
            spec: spec(method, advance_early),
            routing: routing(),
        };
        let mut state = apply(&State::initial(&routing()), start, 0)
            .expect("starts")
            .state;
        let mut scopes = Scopes::default();
        for minute in 1..=60u64 {
            // Requests routed under the split in force, or (late batches, isolates a minute
            // behind) under one of the two before it.
            for env in [Environment::Blue, Environment::Green] {
                let version = state.version().saturating_sub(rng.random_range(0..3));
                scopes.add_routed(env, &env_tick(&mut rng, &prices), version);
            }
            let cmd = command(&mut rng, &state, &scopes, method);
            let Ok(t) = apply(&state, cmd, minute * 60_000) else {
                continue; // refused: nothing changes
            };
            scopes = scopes.after(&t.effects, t.state.version());
            state = t.state;
            round_trips("state", &state);
            round_trips("stats windows", &scopes);
            for e in &t.effects {
                if let Effect::Record(event) = e {
                    round_trips::<Event>("event", event);
                    events += 1;
                }
            }
        }
    }
    assert!(events > 500, "the test made {events} events");
}

#[test]
fn a_green_failing_every_request_at_volume_is_rolled_back_and_stays_readable() {
    // The case that once stored an infinite guard evidence as `null`: every one of 10⁹ green
    // requests fails in one tick.
    let start = Command::Start {
        spec: spec(Method::Sequential, false),
        routing: routing(),
    };
    let state = apply(&State::initial(&routing()), start, 0).unwrap().state;
    let mut scopes = Scopes::default();
    let mut green = EnvStats {
        requests: 1_000_000_000,
        ..EnvStats::default()
    };
    green.errors.server_error = 1_000_000_000;
    green.total.record_n(100, 1_000_000_000);
    let mut blue = green.clone();
    blue.errors.server_error = 0;
    scopes.add(Environment::Green, &green);
    scopes.add(Environment::Blue, &blue);
    let t = apply(&state, scopes.tick(), 60_000).unwrap();
    assert_eq!(t.state.phase(), Phase::RolledBack);
    round_trips("state", &t.state);
    let verdict = t.state.verdict().expect("a verdict").verdict.clone();
    let report = verdict.evidence.expect("sequential evidence");
    assert!(report.guard_log_evidence.is_finite() && report.guard_log_evidence > 1e6);
    assert_eq!(report.guard_evidence, 1e300, "the ratio saturates");
    assert!(
        verdict.reasons.iter().any(|r| r.contains(">1e300:1")),
        "{:?}",
        verdict.reasons
    );
}
