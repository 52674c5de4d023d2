//! Which pairs of answers the isolates send the grader ([`crate::judge`]): the health policy's
//! `judge`, which the routing document carries to the request path while a rollout runs.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::fields::{FieldError, Obj};
use crate::request::model::{check_name, MAX_NAME_LEN};

/// The share of decisive pairs green may lose before it is rolled back, by default.
pub const DEFAULT_TOLERANCE: f64 = 0.55;
/// Longest `instructions`, in characters: they are sent with every pair.
pub const MAX_INSTRUCTIONS_CHARS: usize = 4000;
/// Most pairs an isolate may send the grader a minute.
pub const MAX_PER_MINUTE: u64 = 600;

/// The grader a rollout's health policy names: `"judge": {"model": …, "sample_percent": …,
/// "max_per_minute": …, "instructions"?: …, "both_orders"?: …, "tolerance"?: …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgePolicy {
    /// The grader model, called through the same upstream and key.
    pub model: String,
    /// The share of pairs judged, in percent: of green's answers on a live step (each judged one
    /// costs a reference copy to blue), of the copies' pairs on a shadow step.
    pub sample_percent: f64,
    /// Most pairs one isolate sends the grader a minute (each costs one grader call, two with
    /// `both_orders`, plus a reference copy on a live step).
    pub max_per_minute: u32,
    /// Instructions replacing the default ones ([`crate::judge::prompt::DEFAULT_INSTRUCTIONS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Judge every pair in both orders and count only verdicts that agree: a grader's position
    /// bias is then left out, at twice the grader's cost.
    #[serde(default)]
    pub both_orders: bool,
    /// The share of decisive pairs green may lose [0.55].
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

fn default_tolerance() -> f64 {
    DEFAULT_TOLERANCE
}

impl JudgePolicy {
    /// Reads the `judge` object of a health policy; `null` is no grader.
    pub fn from_json(v: &Value, path: &str) -> Result<JudgePolicy, FieldError> {
        let o = Obj::new(v, path)?;
        o.only(&[
            "model",
            "sample_percent",
            "max_per_minute",
            "instructions",
            "both_orders",
            "tolerance",
        ])?;
        let model = o
            .string("model", MAX_NAME_LEN)?
            .ok_or_else(|| FieldError::new(o.path("model"), "is required: the grader model"))?;
        check_name(&model).map_err(|e| FieldError::new(o.path("model"), e.to_string()))?;
        let sample_percent = o.number("sample_percent", 0.0, 100.0)?.ok_or_else(|| {
            FieldError::new(
                o.path("sample_percent"),
                "is required: the share of pairs judged, in percent",
            )
        })?;
        if sample_percent <= 0.0 {
            return Err(FieldError::new(
                o.path("sample_percent"),
                "must be above 0 (leave \"judge\" out for no grader)",
            ));
        }
        let max_per_minute = o
            .whole("max_per_minute", 1, MAX_PER_MINUTE)?
            .ok_or_else(|| {
                FieldError::new(
                    o.path("max_per_minute"),
                    "is required: most pairs an isolate judges a minute",
                )
            })?;
        Ok(JudgePolicy {
            model,
            sample_percent,
            max_per_minute: max_per_minute as u32,
            instructions: o.string("instructions", MAX_INSTRUCTIONS_CHARS)?,
            both_orders: o.boolean("both_orders")?.unwrap_or(false),
            tolerance: o
                .number("tolerance", 0.5, 0.95)?
                .unwrap_or(DEFAULT_TOLERANCE),
        })
    }

    /// Checks a policy read from storage (a routing document) against the rules an admin
    /// request's is read with ([`JudgePolicy::from_json`]'s ranges).
    pub fn check(&self, path: &str) -> Result<(), FieldError> {
        let field = |key: &str, rule: &str| Err(FieldError::new(format!("{path}.{key}"), rule));
        if let Err(e) = check_name(&self.model) {
            return field("model", &e.to_string());
        }
        if !(self.sample_percent > 0.0 && self.sample_percent <= 100.0) {
            return field("sample_percent", "must be above 0 and at most 100");
        }
        if !(1..=MAX_PER_MINUTE).contains(&u64::from(self.max_per_minute)) {
            return field("max_per_minute", "must be a whole number from 1 to 600");
        }
        if !(0.5..=0.95).contains(&self.tolerance) {
            return field("tolerance", "must be a number from 0.5 to 0.95");
        }
        match &self.instructions {
            Some(i) if i.trim().is_empty() || i.chars().count() > MAX_INSTRUCTIONS_CHARS => field(
                "instructions",
                "must be a non-empty string of at most 4000 characters",
            ),
            _ => Ok(()),
        }
    }

    /// Grader calls one judged pair takes.
    pub fn calls_per_pair(&self) -> u32 {
        if self.both_orders {
            2
        } else {
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(v: Value) -> Result<JudgePolicy, FieldError> {
        JudgePolicy::from_json(&v, "health.judge")
    }

    #[test]
    fn a_policy_reads_with_defaults() {
        let p =
            read(json!({"model": "judge-m", "sample_percent": 25, "max_per_minute": 30})).unwrap();
        assert_eq!(p.model, "judge-m");
        assert_eq!((p.sample_percent, p.max_per_minute), (25.0, 30));
        assert_eq!(p.tolerance, 0.55);
        assert!(!p.both_orders);
        assert!(p.instructions.is_none());
        assert_eq!(p.calls_per_pair(), 1);
    }

    #[test]
    fn bad_fields_are_named() {
        for (v, field) in [
            (
                json!({"sample_percent": 5, "max_per_minute": 3}),
                "health.judge.model",
            ),
            (
                json!({"model": "m", "max_per_minute": 3}),
                "health.judge.sample_percent",
            ),
            (
                json!({"model": "m", "sample_percent": 0, "max_per_minute": 3}),
                "health.judge.sample_percent",
            ),
            (
                json!({"model": "m", "sample_percent": 101, "max_per_minute": 3}),
                "health.judge.sample_percent",
            ),
            (
                json!({"model": "m", "sample_percent": 5}),
                "health.judge.max_per_minute",
            ),
            (
                json!({"model": "m", "sample_percent": 5, "max_per_minute": 601}),
                "health.judge.max_per_minute",
            ),
            (
                json!({"model": "m", "sample_percent": 5, "max_per_minute": 3, "tolerance": 0.4}),
                "health.judge.tolerance",
            ),
            (
                json!({"model": "m", "sample_percent": 5, "max_per_minute": 3, "both_orders": "yes"}),
                "health.judge.both_orders",
            ),
            (
                json!({"model": "m", "sample_percent": 5, "max_per_minute": 3, "instructions": ""}),
                "health.judge.instructions",
            ),
            (
                json!({"model": "modèle", "sample_percent": 5, "max_per_minute": 3}),
                "health.judge.model",
            ),
            (
                json!({"model": "m", "sample_percent": 5, "max_per_minute": 3, "modle": 1}),
                "health.judge.modle",
            ),
            (json!("judge-m"), "health.judge"),
        ] {
            let e = read(v.clone()).unwrap_err();
            assert_eq!(e.field, field, "{v}: {e:?}");
        }
    }

    /// A stored policy is checked with the admin API's rules: `check` agrees with reading
    /// its JSON through `from_json`, over values inside and outside every range.
    #[test]
    fn check_agrees_with_the_admin_rules() {
        let base = read(json!({"model": "m", "sample_percent": 5, "max_per_minute": 3})).unwrap();
        let mut cases = Vec::new();
        for sample_percent in [0.0, 0.004, 0.01, 50.0, 100.0, 100.5, -1.0] {
            cases.push(JudgePolicy {
                sample_percent,
                ..base.clone()
            });
        }
        for max_per_minute in [0, 1, 600, 601, u32::MAX] {
            cases.push(JudgePolicy {
                max_per_minute,
                ..base.clone()
            });
        }
        for tolerance in [0.49, 0.5, 0.7, 0.95, 0.951] {
            cases.push(JudgePolicy {
                tolerance,
                ..base.clone()
            });
        }
        for instructions in ["", "  ", "x", &"y".repeat(4000), &"z".repeat(4001)] {
            cases.push(JudgePolicy {
                instructions: Some(instructions.to_string()),
                ..base.clone()
            });
        }
        for model in ["", "a\nb", "gpt-4.1", &"m".repeat(257)] {
            cases.push(JudgePolicy {
                model: model.to_string(),
                ..base.clone()
            });
        }
        for p in cases {
            let by_admin = JudgePolicy::from_json(&serde_json::to_value(&p).unwrap(), "judge");
            assert_eq!(
                p.check("judge").is_ok(),
                by_admin.is_ok(),
                "{p:?}: {by_admin:?}"
            );
            if let (Err(a), Err(b)) = (p.check("judge"), by_admin) {
                assert_eq!(a.field, b.field);
            }
        }
    }
}
