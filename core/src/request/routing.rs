//! The routing document: the split that the request path obeys.
//!
//! It lives as JSON under the key `routing` in Workers KV. This module parses and validates
//! it; it does not read KV (the shell does) or decide how often to ([`crate::request::routing_cache`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::environment::Environment;
use crate::request::judging::JudgePolicy;
use crate::request::model::{check_name, NameError};
use crate::util::json;
use crate::util::time::is_rfc3339;

/// The KV key that holds the document.
pub const ROUTING_KEY: &str = "routing";

/// Which models serve blue and green, and how much traffic green gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingDoc {
    /// Model name sent upstream for blue requests.
    pub blue_model: String,
    /// Model name sent upstream for green requests.
    pub green_model: String,
    /// Share of traffic for green, 0–100; decimals allowed (resolution 0.01).
    pub green_percent: f64,
    /// Share of blue's requests also sent to green in the background (a shadow step), 0–100;
    /// 0 and absent otherwise, so that a live step's document is the one earlier releases
    /// wrote. Their isolates ignore the field (unknown fields are ignored) and shadow nothing.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shadow_percent: f64,
    /// Whether a sticky key pins a user to one environment.
    #[serde(default = "default_sticky")]
    pub sticky: bool,
    /// Incremented by whoever writes the document; shown in `/healthz`.
    #[serde(default)]
    pub version: u64,
    /// When the document was written (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// The grader of the rollout under way ([`crate::judge`]): which pairs isolates send it.
    /// Absent without one, so that a document without a grader is the one earlier releases
    /// wrote (their isolates ignore the field and judge nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<Box<JudgePolicy>>,
}

fn default_sticky() -> bool {
    true
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// Why a routing document was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum RoutingError {
    /// Not JSON, or fields of the wrong type or missing (serde's message).
    Json(String),
    /// `blue_model` or `green_model` is empty or blank.
    EmptyModel(&'static str),
    /// `blue_model` or `green_model` is not a valid model name ([`crate::request::model`]): the field,
    /// and why.
    BadModel(&'static str, NameError),
    /// `green_percent` is outside 0–100.
    PercentOutOfRange(f64),
    /// `shadow_percent` is outside 0–100.
    ShadowOutOfRange(f64),
    /// `updated_at` is not an RFC 3339 date-time.
    BadTimestamp(String),
    /// `judge` breaks a rule of the health policy's `judge` (the field, and the rule).
    BadJudge(String, String),
}

impl fmt::Display for RoutingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoutingError::Json(e) => write!(f, "not a valid routing document: {e}"),
            RoutingError::EmptyModel(field) => write!(f, "`{field}` must be a non-empty string"),
            RoutingError::BadModel(field, e) => write!(f, "`{field}` {e}"),
            RoutingError::PercentOutOfRange(p) => {
                write!(f, "`green_percent` must be between 0 and 100, got {p}")
            }
            RoutingError::ShadowOutOfRange(p) => {
                write!(f, "`shadow_percent` must be between 0 and 100, got {p}")
            }
            RoutingError::BadTimestamp(s) => {
                write!(f, "`updated_at` must be an RFC 3339 date-time, got {s:?}")
            }
            RoutingError::BadJudge(field, rule) => write!(f, "`{field}` {rule}"),
        }
    }
}

impl RoutingDoc {
    /// Parses and validates a document read from KV.
    pub fn parse(text: &str) -> Result<RoutingDoc, RoutingError> {
        let doc: RoutingDoc = json::parse(text).map_err(|e| RoutingError::Json(e.to_string()))?;
        doc.validate()?;
        Ok(doc)
    }

    /// Checks the rules the request path relies on.
    pub fn validate(&self) -> Result<(), RoutingError> {
        if self.blue_model.trim().is_empty() {
            return Err(RoutingError::EmptyModel("blue_model"));
        }
        if self.green_model.trim().is_empty() {
            return Err(RoutingError::EmptyModel("green_model"));
        }
        for (field, name) in [
            ("blue_model", &self.blue_model),
            ("green_model", &self.green_model),
        ] {
            check_name(name).map_err(|e| RoutingError::BadModel(field, e))?;
        }
        if !(0.0..=100.0).contains(&self.green_percent) {
            return Err(RoutingError::PercentOutOfRange(self.green_percent));
        }
        if !(0.0..=100.0).contains(&self.shadow_percent) {
            return Err(RoutingError::ShadowOutOfRange(self.shadow_percent));
        }
        if let Some(ts) = &self.updated_at {
            if !is_rfc3339(ts) {
                return Err(RoutingError::BadTimestamp(ts.clone()));
            }
        }
        if let Some(j) = &self.judge {
            j.check("judge")
                .map_err(|e| RoutingError::BadJudge(e.field, e.rule))?;
        }
        Ok(())
    }

    /// The model that serves `environment`.
    pub fn model_for(&self, environment: Environment) -> &str {
        match environment {
            Environment::Blue => &self.blue_model,
            Environment::Green => &self.green_model,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let doc = RoutingDoc::parse(
            r#"{"blue_model": "deepseek-v3", "green_model": "gemini-2.5-flash",
                "green_percent": 30.0, "sticky": true, "version": 7,
                "updated_at": "2026-11-26T10:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(doc.blue_model, "deepseek-v3");
        assert_eq!(doc.green_percent, 30.0);
        assert_eq!(doc.version, 7);
        assert_eq!(doc.model_for(Environment::Green), "gemini-2.5-flash");
    }

    #[test]
    fn optional_fields_default_and_unknown_fields_are_ignored() {
        let doc =
            RoutingDoc::parse(r#"{"blue_model":"a","green_model":"b","green_percent":12.5,"x":1}"#)
                .unwrap();
        assert!(doc.sticky);
        assert_eq!(doc.version, 0);
        assert_eq!(doc.updated_at, None);
    }

    #[test]
    fn the_grader_is_read_checked_and_left_out_without_one() {
        let doc = RoutingDoc::parse(
            r#"{"blue_model":"a","green_model":"b","green_percent":10,"judge":{"model":"j","sample_percent":20,"max_per_minute":5}}"#,
        )
        .unwrap();
        let j = doc.judge.as_ref().unwrap();
        assert_eq!(
            (j.model.as_str(), j.sample_percent, j.tolerance),
            ("j", 20.0, 0.55)
        );
        let plain = RoutingDoc { judge: None, ..doc };
        assert!(!serde_json::to_string(&plain).unwrap().contains("judge"));
        for (bad, field) in [
            (
                r#"{"model":"j","sample_percent":0,"max_per_minute":5}"#,
                "judge.sample_percent",
            ),
            (
                r#"{"model":"j","sample_percent":5,"max_per_minute":5000}"#,
                "judge.max_per_minute",
            ),
            (
                r#"{"model":"j\u0000","sample_percent":5,"max_per_minute":5}"#,
                "judge.model",
            ),
        ] {
            let text = format!(
                r#"{{"blue_model":"a","green_model":"b","green_percent":0,"judge":{bad}}}"#
            );
            let err = RoutingDoc::parse(&text).unwrap_err().to_string();
            assert!(err.starts_with(&format!("`{field}`")), "{err}");
        }
    }

    #[test]
    fn the_shadow_share_is_read_and_left_out_when_zero() {
        let doc = RoutingDoc::parse(
            r#"{"blue_model":"a","green_model":"b","green_percent":0,"shadow_percent":20}"#,
        )
        .unwrap();
        assert_eq!(doc.shadow_percent, 20.0);
        assert!(serde_json::to_string(&doc)
            .unwrap()
            .contains("\"shadow_percent\":20.0"));
        // A live step's document is the one earlier releases wrote and read.
        let live = RoutingDoc {
            shadow_percent: 0.0,
            ..doc
        };
        assert!(!serde_json::to_string(&live).unwrap().contains("shadow"));
        for bad in ["-1", "100.5"] {
            let text = format!(
                r#"{{"blue_model":"a","green_model":"b","green_percent":0,"shadow_percent":{bad}}}"#
            );
            let err = RoutingDoc::parse(&text).unwrap_err().to_string();
            assert!(
                err.contains("`shadow_percent` must be between 0 and 100"),
                "{err}"
            );
        }
    }

    #[test]
    fn refuses_invalid_documents_with_a_reason() {
        let cases = [
            ("not json", "not a valid routing document"),
            ("[]", "not a valid routing document"),
            (
                r#"{"blue_model":"a","green_model":"b"}"#,
                "missing field `green_percent`",
            ),
            (
                r#"{"blue_model":"a","green_model":"b","green_percent":"30"}"#,
                "invalid type",
            ),
            (
                r#"{"blue_model":" ","green_model":"b","green_percent":1}"#,
                "`blue_model` must be a non-empty string",
            ),
            (
                r#"{"blue_model":"a","green_model":"","green_percent":1}"#,
                "`green_model` must be a non-empty string",
            ),
            (
                r#"{"blue_model":"a","green_model":"g\u0007","green_percent":1}"#,
                "`green_model` must hold only visible ASCII",
            ),
            (
                r#"{"blue_model":"mod\u00e8le","green_model":"b","green_percent":1}"#,
                "`blue_model` must hold only visible ASCII",
            ),
            (
                r#"{"blue_model":"a ","green_model":"b","green_percent":1}"#,
                "`blue_model` must not start or end with a space",
            ),
            (
                r#"{"blue_model":"a","green_model":"b","green_percent":100.5}"#,
                "between 0 and 100",
            ),
            (
                r#"{"blue_model":"a","green_model":"b","green_percent":-1}"#,
                "between 0 and 100",
            ),
            (
                r#"{"blue_model":"a","green_model":"b","green_percent":1,"version":-2}"#,
                "invalid value",
            ),
            (
                r#"{"blue_model":"a","green_model":"b","green_percent":1,"updated_at":"now"}"#,
                "RFC 3339",
            ),
        ];
        for (text, reason) in cases {
            let err = RoutingDoc::parse(text).unwrap_err().to_string();
            assert!(err.contains(reason), "{text}: {err}");
        }
    }
}
