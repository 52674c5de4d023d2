//! Reading admin request bodies field by field, so that a refusal names the field at fault
//! (`steps[1].hold_seconds`) and the rule it broke, rather than serde's "invalid type at line 1
//! column 40". Unknown fields are refused too: a misspelt `failure_limt` must not be ignored.

use serde_json::{Map, Value};

/// Largest admin request body, in bytes: the Worker reads at most this much, and the controller
/// too.
pub const MAX_ADMIN_BODY: usize = 64 * 1024;

/// A field that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `health.min_requests`; empty for the body itself.
    pub field: String,
    /// What it must be, e.g. `must be a whole number from 1 to 1000000`.
    pub rule: String,
}

impl FieldError {
    /// A rule broken by `field`.
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

/// A JSON object being read, with the path it sits at.
pub struct Obj<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
}

impl<'a> Obj<'a> {
    /// `value` as an object found at `path` (empty for the body).
    pub fn new(value: &'a Value, path: &str) -> Result<Obj<'a>, FieldError> {
        match value {
            Value::Object(map) => Ok(Obj {
                map,
                prefix: path.to_string(),
            }),
            _ => Err(FieldError::new(
                if path.is_empty() { "body" } else { path },
                "must be a JSON object",
            )),
        }
    }

    /// The full path of `key`.
    pub fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// Refuses any key not in `known`.
    pub fn only(&self, known: &[&str]) -> Result<(), FieldError> {
        match self.map.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(FieldError::new(
                self.path(k),
                format!("is not a known field (known: {})", known.join(", ")),
            )),
            None => Ok(()),
        }
    }

    /// The value at `key`, `None` when absent or `null`.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A non-blank string of at most `max_chars` characters, trimmed.
    pub fn string(&self, key: &str, max_chars: usize) -> Result<Option<String>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= max_chars => {
                Ok(Some(s.trim().to_string()))
            }
            Some(_) => Err(FieldError::new(
                self.path(key),
                format!("must be a non-empty string of at most {max_chars} characters"),
            )),
        }
    }

    /// A finite number in `[min, max]`.
    pub fn number(&self, key: &str, min: f64, max: f64) -> Result<Option<f64>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|n| n.is_finite() && (min..=max).contains(n))
                .map(Some)
                .ok_or_else(|| {
                    FieldError::new(
                        self.path(key),
                        format!("must be a number from {min} to {max}"),
                    )
                }),
        }
    }

    /// A whole number in `[min, max]`.
    pub fn whole(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| {
                    // 30.0 is a whole number too; 30.5 is not.
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                        .map(|f| f as u64)
                })
                .filter(|n| (min..=max).contains(n))
                .map(Some)
                .ok_or_else(|| {
                    FieldError::new(
                        self.path(key),
                        format!("must be a whole number from {min} to {max}"),
                    )
                }),
        }
    }

    /// A boolean.
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(FieldError::new(self.path(key), "must be true or false")),
        }
    }

    /// An array.
    pub fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(FieldError::new(self.path(key), "must be an array")),
        }
    }
}

/// Parses a request body as JSON; an empty body is `{}`.
pub fn parse_body(bytes: &[u8]) -> Result<Value, FieldError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    crate::util::json::from_slice(bytes)
        .map_err(|e| FieldError::new("body", format!("must be valid JSON ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_the_field_and_rule() {
        let v = json!({"a": "x", "n": 1.5, "w": 30.0, "nested": {"k": -1}, "z": null});
        let o = Obj::new(&v, "").unwrap();
        assert_eq!(o.string("a", 1).unwrap().as_deref(), Some("x"));
        assert!(o
            .string("a", 0)
            .unwrap_err()
            .rule
            .contains("at most 0 characters"));
        assert_eq!(o.whole("w", 0, 100).unwrap(), Some(30));
        assert_eq!(o.whole("z", 0, 100).unwrap(), None);
        let e = o.whole("n", 0, 100).unwrap_err();
        assert_eq!(e.field, "n");
        assert!(e.rule.contains("whole number from 0 to 100"));
        let inner = Obj::new(o.get("nested").unwrap(), "nested").unwrap();
        let e = inner.number("k", 0.0, 1.0).unwrap_err();
        assert_eq!(e.field, "nested.k");
        let e = o.only(&["a", "n", "w", "nested"]).unwrap_err();
        assert_eq!(e.field, "z");
        assert!(Obj::new(&json!([1]), "steps[0]").is_err());
    }

    #[test]
    fn bodies() {
        assert_eq!(parse_body(b"  ").unwrap(), json!({}));
        assert_eq!(parse_body(b"{not json").unwrap_err().field, "body");
    }
}
