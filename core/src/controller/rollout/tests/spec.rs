//! Reading `POST /admin/rollouts` bodies.

use serde_json::{json, Value};

use super::*;

#[test]
fn spec_from_json() {
    let s = RolloutSpec::from_json(&json!({"green_model": "g"})).unwrap();
    assert_eq!(s.steps, default_steps());
    assert_eq!(s.steps.iter().map(|s| s.hold_seconds).sum::<u64>(), 27_000);
    let s = RolloutSpec::from_json(&json!({
        "green_model": "g",
        "steps": [{"green_percent": 20, "hold_seconds": 2}, {"green_percent": 60, "hold_seconds": 0}],
        "health": {"min_requests": 3}
    }))
    .unwrap();
    assert_eq!(s.steps[1].green_percent, 60.0);
    assert_eq!(s.health.min_requests, 3);
}

#[test]
fn spec_refusals_name_the_field() {
    let step = |green_percent: Value, hold_seconds: Value| json!({"green_percent": green_percent, "hold_seconds": hold_seconds});
    // (body, the field the refusal names)
    let cases: [(Value, &str); 12] = [
        (json!({}), "green_model"),
        (json!({"green_model": ""}), "green_model"),
        (json!({"green_model": 5}), "green_model"),
        (json!({"green_model": "g", "steps": []}), "steps"),
        (json!({"green_model": "g", "steps": {}}), "steps"),
        // Completion is the move to 100%: no step may ask for it.
        (
            json!({"green_model": "g", "steps": [step(json!(100), json!(1))]}),
            "steps[0].green_percent",
        ),
        (
            json!({"green_model": "g", "steps": [{"green_percent": 10}]}),
            "steps[0].hold_seconds",
        ),
        // Each step above the one before.
        (
            json!({"green_model": "g", "steps": [step(json!(30), json!(1)), step(json!(20), json!(1))]}),
            "steps[1].green_percent",
        ),
        (
            json!({"green_model": "g", "steps": [step(json!(10), json!(-1))]}),
            "steps[0].hold_seconds",
        ),
        (json!({"green_model": "g", "extra": 1}), "extra"),
        (
            json!({"green_model": "g", "health": {"min_requests": 0}}),
            "health.min_requests",
        ),
        (json!([1]), "body"),
    ];
    for (body, field) in cases {
        let err = RolloutSpec::from_json(&body).unwrap_err();
        assert_eq!(err.field, field, "{body}");
    }
}

#[test]
fn green_model_must_be_a_valid_header_value() {
    // (name, what the refusal says)
    let cases = [
        ("gem\u{7}ini".to_string(), "character 4 is '\\u{7}'"),
        ("mod\u{e8}le".to_string(), "character 4 is 'è'"),
        ("a\tb".to_string(), "visible ASCII"),
        ("m".repeat(257), "at most 256 characters"),
    ];
    for (name, rule) in cases {
        let err = RolloutSpec::from_json(&json!({ "green_model": name })).unwrap_err();
        assert_eq!(err.field, "green_model", "{name:?}");
        assert!(err.rule.contains(rule), "{name:?}: {}", err.rule);
    }
    // As before, the name is trimmed; 256 characters are fine.
    let s = RolloutSpec::from_json(&json!({"green_model": "  org/model v2  "})).unwrap();
    assert_eq!(s.green_model, "org/model v2");
    assert!(RolloutSpec::from_json(&json!({"green_model": "m".repeat(256)})).is_ok());
}
