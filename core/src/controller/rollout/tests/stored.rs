//! The state as stored: the first release's JSON shape, every field of it written again, and documents
//! whose phase and rollout disagree refused at load.

use serde_json::{json, Value};

use super::*;

#[test]
fn state_round_trips_through_json() {
    for phase in [
        Phase::Idle,
        Phase::Progressing,
        Phase::Paused,
        Phase::Completed,
        Phase::RolledBack,
    ] {
        let s = in_phase(phase);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            crate::util::json::parse::<State>(&json).unwrap(),
            s,
            "{phase:?}"
        );
    }
}

/// The v1 fixtures of `tests/stored_formats.rs`, by name.
fn v1(name: &str) -> Value {
    let text = match name {
        "idle" => include_str!("../../../../tests/fixtures/v1/state-idle.json"),
        "progressing" => {
            include_str!("../../../../tests/fixtures/v1/state-progressing-sequential.json")
        }
        "paused" => include_str!("../../../../tests/fixtures/v1/state-paused-sequential.json"),
        "completed" => include_str!("../../../../tests/fixtures/v1/state-completed-threshold.json"),
        "rolled_back" => {
            include_str!("../../../../tests/fixtures/v1/state-rolled-back-sequential.json")
        }
        _ => unreachable!("no fixture {name}"),
    };
    serde_json::from_str(text).unwrap()
}

/// Every field of `old` is in `new` with the same value; `new` may add fields (later versions
/// store more, such as the evidence's logs, and still write everything v1 wrote).
fn assert_keeps(old: &Value, new: &Value, path: &str) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, v) in o {
                let field = format!("{path}.{k}");
                let got = n
                    .get(k)
                    .unwrap_or_else(|| panic!("{field} is no longer written"));
                assert_keeps(v, got, &field);
            }
        }
        (Value::Array(o), Value::Array(n)) => {
            assert_eq!(o.len(), n.len(), "{path}");
            for (i, (a, b)) in o.iter().zip(n).enumerate() {
                assert_keeps(a, b, &format!("{path}[{i}]"));
            }
        }
        // A ratio is now derived from its stored log: equal to the last digits or so.
        (Value::Number(o), Value::Number(n)) if o.is_f64() => {
            let (o, n) = (o.as_f64().unwrap(), n.as_f64().unwrap());
            assert!(
                (o - n).abs() <= 1e-12 * o.abs().max(1.0),
                "{path}: {o} vs {n}"
            );
        }
        _ => assert_eq!(old, new, "{path}"),
    }
}

#[test]
fn v1_documents_are_written_back_with_every_field_they_had() {
    for name in ["idle", "progressing", "paused", "completed", "rolled_back"] {
        let stored = v1(name);
        let s: State = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(s.phase().name(), name);
        assert_keeps(&stored, &serde_json::to_value(&s).unwrap(), name);
    }
}

#[test]
fn documents_whose_phase_and_rollout_disagree_do_not_load() {
    let rollout = v1("progressing")["rollout"].clone();
    let verdict = v1("progressing")["verdict"].clone();
    // (fixture, fields changed, what the error says)
    let cases: [(&str, Value, &str); 10] = [
        (
            "idle",
            json!({"rollout": rollout}),
            "idle state stores a rollout",
        ),
        (
            "idle",
            json!({"verdict": verdict}),
            "idle state stores a rollout or a verdict",
        ),
        (
            "progressing",
            json!({"rollout": null}),
            "progressing state stores no rollout",
        ),
        (
            "paused",
            json!({"rollout": null}),
            "paused state stores no rollout",
        ),
        (
            "completed",
            json!({"rollout": null}),
            "completed state stores no rollout",
        ),
        (
            "progressing",
            json!({"phase": "paused"}),
            "paused rollout's paused_at_ms",
        ),
        (
            "paused",
            json!({"phase": "progressing"}),
            "progressing rollout's paused_at_ms",
        ),
        (
            "paused",
            json!({"phase": "rolled_back"}),
            "rolled_back rollout's paused_at_ms",
        ),
        (
            "completed",
            json!({"phase": "progressing"}),
            "progressing rollout's paused_at_ms",
        ),
        (
            "progressing",
            json!({"rollout": {"step_index": 3}}),
            "step_index 3 is outside a ladder of 3",
        ),
    ];
    for (name, change, says) in cases {
        let mut doc = v1(name);
        merge(&mut doc, &change);
        let err = serde_json::from_value::<State>(doc)
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{name} with {change}: {err}");
    }
}

/// Overwrites `doc`'s fields with `change`'s, recursively into objects (`null` included).
fn merge(doc: &mut Value, change: &Value) {
    match (doc, change) {
        (Value::Object(d), Value::Object(c)) => {
            for (k, v) in c {
                match d.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (d, c) => *d = c.clone(),
    }
}

#[test]
fn a_verdict_record_reads_its_flattened_fields_and_ignores_others() {
    // As serde's `flatten` read it: the verdict's fields beside the record's, evidence
    // optional, a field no version writes ignored.
    let text = r#"{"status": "fail", "reasons": ["green errors"], "at_ms": 7,
        "consecutive_failures": 2, "step": 3, "later": {"x": 1}}"#;
    let read: VerdictRecord = crate::util::json::parse(text).unwrap();
    assert_eq!(read.verdict.status, VerdictStatus::Fail);
    assert_eq!(read.verdict.reasons, ["green errors"]);
    assert_eq!(read.verdict.evidence, None);
    assert_eq!(
        (read.at_ms, read.consecutive_failures, read.step),
        (7, 2, 3)
    );
    assert_eq!(
        serde_json::to_string(&read).unwrap(),
        r#"{"status":"fail","reasons":["green errors"],"at_ms":7,"consecutive_failures":2,"step":3}"#
    );
    let written = serde_json::to_value(&read).unwrap();
    assert_eq!(
        written,
        json!({"status": "fail", "reasons": ["green errors"], "at_ms": 7,
            "consecutive_failures": 2, "step": 3})
    );
    let missing = r#"{"status": "pass", "reasons": [], "at_ms": 7, "step": 3}"#;
    assert!(crate::util::json::parse::<VerdictRecord>(missing).is_err());
}
