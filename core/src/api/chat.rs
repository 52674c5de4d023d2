//! OpenAI wire shapes: reading and rewriting a chat completion request, and the token usage of
//! a non-streamed response. (The error body every refusal carries is [`crate::error`].)
//!
//! The request is rewritten without re-encoding it: every top-level field but `model` is copied
//! as the exact bytes the client sent (serde_json's `RawValue`), so tools, `response_format`,
//! `stream_options`, number formatting and fields we have never heard of reach the upstream
//! untouched.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::ApiError;

/// A parsed `POST /v1/chat/completions` body: its top-level fields, each kept as raw JSON.
#[derive(Debug)]
pub struct ChatRequest<'a> {
    fields: Vec<(String, &'a RawValue)>,
    /// `"stream": true`.
    pub stream: bool,
    /// The OpenAI `user` field, used as the sticky key when no header gives one.
    pub user: Option<String>,
    /// The `model` the client asked for: the route it goes to.
    pub model: Option<String>,
}

struct Fields<'a>(Vec<(String, &'a RawValue)>);

/// Most top-level fields a request body may have. OpenAI's chat completion takes about 40
/// parameters and its Responses API about 30; a body of hundreds of thousands of tiny fields
/// (10 MiB of `"f1":0,`) would otherwise cost every request a key and an entry each, read and
/// written back (300 ms of CPU in local workerd, against 44 ms for 10 MiB of plain text).
pub const MAX_FIELDS: usize = 256;

/// What the field visitor says when a body has more than [`MAX_FIELDS`].
const TOO_MANY_FIELDS: &str = "bluegreen: too many top-level fields";

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8).min(64));
                while let Some(key) = map.next_key::<String>()? {
                    if fields.len() == MAX_FIELDS {
                        return Err(serde::de::Error::custom(TOO_MANY_FIELDS));
                    }
                    fields.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(V)
    }
}

fn first_byte(raw: &RawValue) -> u8 {
    // RawValue holds exactly one JSON value with surrounding whitespace trimmed.
    raw.get().as_bytes()[0]
}

impl<'a> ChatRequest<'a> {
    /// Parses and checks a chat completion body. Refuses malformed JSON, a body that is not an
    /// object, a missing or non-array `messages`, a non-string `model` and a non-boolean
    /// `stream`; everything else is left to the upstream to judge.
    pub fn parse(body: &'a [u8]) -> Result<ChatRequest<'a>, ApiError> {
        let Fields(fields) = serde_json::from_slice(body).map_err(|e| {
            if e.to_string().starts_with(TOO_MANY_FIELDS) {
                ApiError::too_many_fields(MAX_FIELDS)
            } else if e.classify() == serde_json::error::Category::Data {
                ApiError::not_an_object()
            } else {
                ApiError::invalid_json(&e.to_string())
            }
        })?;
        let get = |name: &str| fields.iter().rev().find(|(k, _)| k == name).map(|f| f.1);
        match get("messages") {
            None => return Err(ApiError::invalid_field("messages", "is required")),
            Some(m) if first_byte(m) != b'[' => {
                return Err(ApiError::invalid_field("messages", "must be an array"))
            }
            Some(_) => {}
        }
        let model = match get("model") {
            Some(m) if first_byte(m) != b'"' => {
                return Err(ApiError::invalid_field("model", "must be a string"))
            }
            Some(m) => serde_json::from_str::<String>(m.get()).ok(),
            None => None,
        };
        let stream = match get("stream").map(RawValue::get) {
            None | Some("null") | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(ApiError::invalid_field("stream", "must be a boolean")),
        };
        let user = get("user").and_then(|u| serde_json::from_str::<String>(u.get()).ok());
        Ok(ChatRequest {
            fields,
            stream,
            user,
            model,
        })
    }

    /// The raw JSON of a top-level field (the last one, when the client sent it twice, as
    /// JSON parsers do).
    pub fn field(&self, name: &str) -> Option<&'a RawValue> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|f| f.1)
    }

    /// The body to send upstream: the client's fields, in the client's order and bytes, with
    /// `model` set to `model` (added first when the client sent none).
    pub fn with_model(&self, model: &str) -> Vec<u8> {
        // A string always serializes (and the wasm then carries no formatting of serde's error).
        let model_json = serde_json::to_string(model).unwrap_or_default();
        let size: usize = self
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum();
        let mut out = String::with_capacity(size + model_json.len() + 12);
        out.push('{');
        if !self.fields.iter().any(|(k, _)| k == "model") {
            out.push_str("\"model\":");
            out.push_str(&model_json);
            if !self.fields.is_empty() {
                out.push(',');
            }
        }
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(key).unwrap_or_default());
            out.push(':');
            out.push_str(if key == "model" {
                &model_json
            } else {
                value.get()
            });
        }
        out.push('}');
        out.into_bytes()
    }
}

/// Token counts reported by the upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default)]
    pub completion_tokens: u64,
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<Usage>,
}

/// The `usage` object of a chat completion (or a streamed chunk), when there is one.
/// Anything unparseable yields `None`: usage is informative, never a reason to fail.
pub fn usage_of(json: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<WithUsage>(json).ok()?.usage
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn rewrites_only_the_model_and_keeps_every_other_byte() {
        let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi \u00e9"}],
            "temperature":0.70000000000000001,"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],
            "response_format":{"type":"json_object"},"stream_options":{"include_usage":true},
            "x_unknown":{"nested":[1,2.50,null]}}"#;
        let req = ChatRequest::parse(body).unwrap();
        let out = String::from_utf8(req.with_model("deepseek-v3")).unwrap();
        assert!(out.starts_with(
            r#"{"model":"deepseek-v3","messages":[{"role":"user","content":"hi \u00e9"}],"#
        ));
        assert!(out.contains(r#""temperature":0.70000000000000001,"#));
        assert!(out.contains(r#""x_unknown":{"nested":[1,2.50,null]}"#));
        assert!(out.contains(r#""stream_options":{"include_usage":true}"#));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["tools"][0]["function"]["name"], "f");
        assert_eq!(v.as_object().unwrap().len(), 7);
    }

    #[test]
    fn a_body_of_more_top_level_fields_than_any_api_has_is_refused() {
        let body = |n: usize| {
            let mut fields: Vec<String> = (1..n).map(|i| format!(r#""f{i}":0"#)).collect();
            fields.push(r#""messages":[]"#.into());
            format!("{{{}}}", fields.join(","))
        };
        assert!(ChatRequest::parse(body(MAX_FIELDS).as_bytes()).is_ok());
        let e = ChatRequest::parse(body(MAX_FIELDS + 1).as_bytes()).unwrap_err();
        assert_eq!((e.status, e.code), (400, "invalid_body"));
        assert!(e.message.contains("256"), "{}", e.message);
        // Still one error for a body that is not an object, and one for bad JSON.
        assert_eq!(ChatRequest::parse(b"[1]").unwrap_err().code, "invalid_body");
        assert_eq!(ChatRequest::parse(b"{").unwrap_err().code, "invalid_json");
    }

    #[test]
    fn adds_a_model_when_the_client_sent_none() {
        let req = ChatRequest::parse(br#"{"messages":[]}"#).unwrap();
        assert_eq!(
            req.with_model("m\"x"),
            br#"{"model":"m\"x","messages":[]}"#.to_vec()
        );
    }

    #[test]
    fn reads_stream_and_user() {
        let req = ChatRequest::parse(br#"{"messages":[],"stream":true,"user":"u-1"}"#).unwrap();
        assert!(req.stream);
        assert_eq!(req.user.as_deref(), Some("u-1"));
        let req = ChatRequest::parse(br#"{"messages":[],"stream":null,"user":5}"#).unwrap();
        assert!(!req.stream);
        assert_eq!(req.user, None);
    }

    #[test]
    fn refuses_bad_bodies_with_the_field_named() {
        let cases: [(&[u8], &str, Option<&str>); 9] = [
            (b"{not json", "invalid_json", None),
            (b"", "invalid_json", None),
            (b"{\"messages\":[]} trailing", "invalid_json", None),
            (b"[1,2]", "invalid_body", None),
            (b"\"text\"", "invalid_body", None),
            (b"{}", "invalid_type", Some("messages")),
            (br#"{"messages":"hi"}"#, "invalid_type", Some("messages")),
            (
                br#"{"messages":[],"model":42}"#,
                "invalid_type",
                Some("model"),
            ),
            (
                br#"{"messages":[],"stream":"yes"}"#,
                "invalid_type",
                Some("stream"),
            ),
        ];
        for (body, code, param) in cases {
            let err = ChatRequest::parse(body).unwrap_err();
            assert_eq!(err.status, 400, "{}", String::from_utf8_lossy(body));
            assert_eq!(err.code, code, "{}", String::from_utf8_lossy(body));
            assert_eq!(
                err.param.as_deref(),
                param,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn extracts_usage() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],
                        "usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
        assert_eq!(
            usage_of(body),
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 3
            })
        );
        assert_eq!(usage_of(br#"{"usage":null}"#), None);
        assert_eq!(usage_of(b"<html>"), None);
    }
}
